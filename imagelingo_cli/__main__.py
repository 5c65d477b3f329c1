from imagelingo_cli.cli import main

main()
