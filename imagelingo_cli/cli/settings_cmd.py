"""`imagelingo settings show|set|path`: user defaults in a TOML file."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import typer

from imagelingo_cli.cli.common import fail_setup
from imagelingo_cli.errors import SetupError
from imagelingo_cli.settings import KEYS, resolve, set_value, settings_path

if TYPE_CHECKING:
    pass

app = typer.Typer(
    help="Defaults for language, model, concurrency, auto-retry and rpm (a TOML file).",
    no_args_is_help=True,
)


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


@app.command()
def show(
    json_output: bool = typer.Option(
        False, "--json", help="One JSON object on stdout, nothing else."
    ),
) -> None:
    """Each setting, its effective value and where it comes from (environment, file, default)."""
    from rich.console import Console
    from rich.table import Table

    try:
        settings = resolve()
    except SetupError as exc:
        fail_setup(str(exc))
    values = {name: getattr(settings, name) for name in KEYS}
    if json_output:
        payload = {
            "path": str(settings_path()),
            "settings": {
                name: {
                    "value": list(value) if isinstance(value, tuple) else value,
                    "source": settings.sources[name],
                    "environment_variable": f"IMAGELINGO_{name.upper()}",
                }
                for name, value in values.items()
            },
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    console = Console(highlight=False)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("Key", "Value", "From", "What"):
        table.add_column(column, overflow="fold")
    for name, value in values.items():
        table.add_row(name, _shown(value), settings.sources[name], KEYS[name].help)
    console.print(table)
    console.print(f"Settings file: {settings_path()}")
    console.print("Change one: imagelingo settings set KEY VALUE (environment: IMAGELINGO_<KEY>)")


@app.command("set")
def set_(
    key: str = typer.Argument(..., help=f"One of: {', '.join(KEYS)}."),
    value: str = typer.Argument(..., help="The new value (codes: comma-separated)."),
) -> None:
    """Store a default in the settings file (created with mode 0600)."""
    from rich.console import Console

    name = key.strip().lower()
    try:
        stored = set_value(name, value)
    except (ValueError, SetupError) as exc:
        fail_setup(f"invalid {name}: {exc}" if name in KEYS else str(exc))
    console = Console(highlight=False)
    console.print(f"{name} = {_shown(stored)} (saved in {settings_path()})")
    env_name = f"IMAGELINGO_{name.upper()}"
    if os.environ.get(env_name):
        console.print(f"Note: {env_name} is set in the environment and takes precedence.")


@app.command()
def path() -> None:
    """Print the settings file's path (IMAGELINGO_CONFIG overrides it)."""
    typer.echo(str(settings_path()))
