"""The CLI as people and scripts expect it: help with examples and no Python types, output
that survives pipes, commands to copy never wrapped, one JSON vocabulary, nothing-to-do said
plainly, the cost preview and the question before a large run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, TEST_KEY, Cli, json_lines, scenario_simulator
from procs import Proc, child_env, query, wait_until
from rich.cells import cell_len
from rich.console import Console

from imagelingo_cli import events as ev
from imagelingo_cli.cli.records import ATTEMPT_FIELDS, VARIATION_FIELDS
from imagelingo_cli.cli.reporters import command_lines, render_failure_panel, report_hint
from imagelingo_cli.simulator import Simulator
from imagelingo_cli.states import RunStatus

KEY_ENV = {"GEMINI_API_KEY": TEST_KEY}
COMMANDS = [
    ["process"],
    ["retry-failed"],
    ["history"],
    ["show"],
    ["stats"],
    ["abandon"],
    ["settings", "show"],
    ["settings", "set"],
    ["settings", "unset"],
    ["settings", "path"],
    ["simulator", "serve"],
    ["report"],
    ["batch", "list"],
    ["batch", "status"],
    ["batch", "collect"],
    ["batch", "cancel"],
    ["db", "info"],
    ["db", "vacuum"],
]
PYTHON_TYPES = re.compile(r"<(int|str|float|bool|path|text)>|list\[|\{[a-z_]+\}\.\.\.|Path\]")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_an_example_and_no_python_type_names(cli: Cli, command: list[str]) -> None:
    """`-h` works, shows an example of the command itself, and names values in words."""
    result = cli(*command, "-h", env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"imagelingo {' '.join(command)}" in result.output.split("Example", 1)[1]
    assert not PYTHON_TYPES.search(result.output), PYTHON_TYPES.search(result.output)


def test_help_shows_defaults_in_effect_and_where_they_come_from(cli: Cli) -> None:
    """--to, --model and -c show the value a run would use now, and its source."""
    assert cli("settings", "set", "language", "pt-BR").exit_code == 0
    out = cli("process", "-h", env={"IMAGELINGO_CONCURRENCY": "9"}).output
    out = " ".join(re.sub(r"-\n\s+", "-", out).split())  # help is wrapped at 80 columns
    assert "[default: (pt-BR, settings file)]" in out
    assert "[default: (9, IMAGELINGO_CONCURRENCY)]" in out
    assert "[default: (gemini-2.5-flash-image, built-in)]" in out
    assert " -n, --limit" not in cli("history", "-h").output  # -n is --variations only


@pytest.fixture
def recorded(cli: Cli, images: Path, tmp_path: Path) -> list[dict[str, object]]:
    """A run with long names and long messages: two variations fail, four complete."""
    long_name = images / ("a-very-long-file-name-for-a-menu-board-" * 2 + ".png")
    shutil.copy(SAMPLES / "tea-label.png", long_name)
    rules = [{"image": f"imgs/{long_name.name}", "responses": [], "then": "overloaded"}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        result = cli("process", str(images), "-n", "2", "--base-url", sim.base_url, env=KEY_ENV)
    assert result.exit_code == 1, result.output
    return query(cli.db_path, "SELECT * FROM generations")


@pytest.mark.parametrize("columns", ["40", "80"])
def test_piped_tables_print_one_line_per_record_at_any_width(
    cli: Cli, recorded: list[dict[str, object]], columns: str
) -> None:
    """history, history --errors, retry-failed --dry-run and settings show, piped into a
    narrow reader: each record is one line, words and names never split."""
    env = {"COLUMNS": columns}
    out = cli("history", env=env).output
    assert sum(1 for line in out.splitlines() if re.match(r"^01", line)) == len(recorded)
    errors = cli("history", "--errors", env=env).output
    failed = [line for line in errors.splitlines() if re.match(r"^01", line)]
    assert len(failed) == 2 and all("The model is overloaded." in line for line in failed)
    assert all("a-very-long-file-name-for-a-menu-board-a-very" in line for line in failed)
    dry = cli("retry-failed", "--dry-run", env=env).output
    assert len([line for line in dry.splitlines() if line.startswith("send ")]) == 2
    shown = cli("settings", "show", env=env).output
    assert re.search(r"^auto_retry_codes\s+RATE_LIMIT,TIMEOUT\s", shown, re.M), shown


@pytest.mark.parametrize("width", [80, 56])
def test_commands_to_copy_are_never_cut_by_wrapping(width: int) -> None:
    """A failure panel at 80 and 56 columns: every suggested command stands whole on one
    line (under the box when it would not fit in it)."""
    info = ev.ErrorInfo("SERVER_ERROR", "Server Error", "The model is overloaded. " * 5, True)
    ids = ["01m8q0vkd0jzzqztxg0bdw8p1d", "01m8q0vkd1b5x0r8f8n3t9ss5k"]
    failures = [
        ev.Failure(ev.VariationRef(gid, f"menus/board-{n}.png", 1, "es"), info, 3)
        for n, gid in enumerate(ids)
    ]
    summary = ev.Summary("run", RunStatus.FAILED, 2, 0, 2, 0, 0, 6, 0, 1.0, failures)
    console = Console(width=width, record=True, color_system=None)
    console.print(render_failure_panel(summary, width=width), crop=False)  # as report_outcome
    lines = console.export_text().splitlines()
    for gid in ids:
        assert any(f"imagelingo retry-failed {gid}" in line for line in lines), lines
    assert any(line.strip(" │").endswith("imagelingo retry-failed") for line in lines)
    assert all(cell_len(line) <= width for line in lines), lines  # no line the terminal wraps


def test_the_report_command_stands_whole_on_a_narrow_terminal() -> None:
    """The report hint after a run: one line where it fits, else its words, then the whole
    command on the next line; never split in a pipe (one record per line)."""
    summary = ev.Summary(
        "01m8q0vkd0jzzqztxg0bdw8p1d", RunStatus.COMPLETED, 1, 1, 0, 0, 0, 1, 1, 1.0
    )
    hint = report_hint(summary)
    assert hint is not None
    command = "imagelingo report --run 01m8q0vkd0jzzqztxg0bdw8p1d --open"
    wide = [line.plain for line in command_lines(*hint, width=120)]
    assert wide == [f"See the results side by side: {command}"]
    narrow = [line.plain for line in command_lines(*hint, width=60)]
    assert narrow == ["See the results side by side:", command]
    assert [line.plain for line in command_lines(*hint, width=None)] == wide


_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_the_end_of_a_run_on_a_narrow_terminal_is_wrapped_between_words(tmp_path: Path) -> None:
    """At 60 columns, what a run prints after its live table (the failure panel, the commands,
    the summary) is laid out by imagelingo between words: no line is wider than the terminal,
    so the terminal never cuts one mid-word."""
    args = ["process", str(SAMPLES), "-n", "2", "--simulate", "flaky", "--out", str(tmp_path)]
    proc = Proc(args, env=child_env(COLUMNS="60", LINES="40"), cwd=tmp_path, terminal=True)
    assert proc.wait(timeout=120) == 1, proc.text()
    text = _ESCAPE.sub("", proc.stdout.decode()).replace("\r", "")
    end = text[text.rindex("╭─") :].splitlines()
    assert any(line.startswith("8 completed, 2 failed") for line in end), end
    assert all(cell_len(line) <= 60 for line in end), end


def test_json_outputs_parse_and_speak_one_vocabulary(
    cli: Cli, recorded: list[dict[str, object]]
) -> None:
    """history/show/stats/settings JSON parse; variations and attempts carry exactly the
    documented fields; event lines carry an event name and a UTC time, never a clock number."""
    history = json.loads(cli("history", "--format", "json").output)
    assert history and all(list(record) == list(VARIATION_FIELDS) for record in history)
    assert json.loads(cli("history", "--json").output) == history
    failed = next(r for r in history if r["status"] == "failed")
    shown = json.loads(cli("show", str(failed["id"]), "--json").output)
    assert [k for k in shown if k != "attempts"] == list(VARIATION_FIELDS)
    assert all(list(a) == list(ATTEMPT_FIELDS) for a in shown["attempts"])
    assert shown["attempts"][0]["duration_s"] is not None
    assert json.loads(cli("stats", "--json").output)["by_code"][0]["code"] == "SERVER_ERROR"
    assert json.loads(cli("settings", "show", "--json").output)["settings"]
    tsv = cli("history", "--format", "tsv").output.splitlines()
    assert tsv[0].split("\t") == list(VARIATION_FIELDS) and len(tsv) == 1 + len(history)
    csv = cli("stats", "--format", "csv").output.splitlines()
    assert csv[0].startswith("code,failed_attempts") and csv[1].startswith("SERVER_ERROR,")
    dry = json_lines(cli("retry-failed", "--dry-run", "--json").output)
    assert [d["event"] for d in dry] == ["dry_run"] and dry[0]["requests"] == 2


def test_event_lines_use_utc_times_and_seconds(cli: Cli, images: Path, tmp_path: Path) -> None:
    """process --json: one object per line, each with `event` and `at`; a planned retry has
    `retry_in_s` and a UTC `retry_at`; variations are named as everywhere else."""
    rules = [{"image": "imgs/cafe-menu.jpg", "responses": ["deadline"]}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        result = cli("process", str(images), "--json", "--base-url", sim.base_url, env=KEY_ENV)
    lines = json_lines(result.output)
    stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    assert all(stamp.match(line["at"]) for line in lines)
    failed = next(line for line in lines if line["event"] == "attempt_failed")
    assert stamp.match(failed["retry_at"]) and 2.0 <= failed["retry_in_s"] <= 2.4
    assert set(failed["variation"]) == {"id", "image", "variation", "language"}
    assert failed["error"]["retry_after_s"] is None
    finished = lines[-1]
    assert finished["event"] == "batch_finished" and "elapsed_s" in finished


def test_a_folder_without_images_says_so_and_records_no_run(cli: Cli, tmp_path: Path) -> None:
    """An empty folder, then one holding only other files: one sentence, exit 0, no run."""
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("process", str(empty), env=KEY_ENV)
    assert result.exit_code == 0
    assert result.output.strip() == f"No images found under {empty}."
    (empty / "notes.txt").write_text("menu prices")
    (empty / ".hidden").mkdir()
    result = cli("process", str(empty), env=KEY_ENV)
    assert result.output.strip() == (
        f"No images found under {empty} (skipped: 1 hidden, 1 not an image)."
    )
    line = json_lines(cli("process", str(empty), "--json", env=KEY_ENV).output)
    assert line[0]["event"] == "nothing_to_do"
    assert line[0]["files_skipped"] == {"not an image": 1, "hidden": 1}
    assert query(cli.db_path, "SELECT id FROM runs") == []
    nothing = json_lines(cli("retry-failed", "--json").output)
    assert [n["event"] for n in nothing] == ["nothing_to_do"]


def test_the_cost_preview_counts_what_resume_skips(cli: Cli, images: Path, tmp_path: Path) -> None:
    """--dry-run: 3 images × 2 variations = 6 requests at $0.039; after one image is done,
    4 requests and 2 skipped. Nothing is sent or recorded by a dry run."""
    with Simulator("ok") as sim:
        args = ["process", str(images), "-n", "2", "--base-url", sim.base_url]
        before = cli(*args, "--dry-run", env=KEY_ENV)
        assert before.exit_code == 0, before.output
        assert "Would send 6 requests, about $0.23 at list price" in before.output
        assert sim.stats()["requests"] == 0 and query(cli.db_path, "SELECT id FROM runs") == []
        cli(
            "process",
            str(images / "shop-sign.png"),
            "-n",
            "2",
            "--base-url",
            sim.base_url,
            env=KEY_ENV,
        )
        after = json_lines(cli(*args, "--dry-run", "--json", env=KEY_ENV).output)[0]
    assert after["requests"] == 4 and after["estimated_usd"] == pytest.approx(0.156)
    assert {s["reason"] for s in after["would_skip"]} == {"completed"}
    assert len(after["would_skip"]) == 2


def test_a_large_run_asks_first_on_a_terminal(cli: Cli, images: Path, tmp_path: Path) -> None:
    """Above `confirm_above` requests, on a terminal: the question, and "n" sends nothing."""
    assert cli("settings", "set", "confirm_above", "2").exit_code == 0
    with Simulator("ok") as sim:
        asked = Proc(
            ["process", str(images), "--base-url", sim.base_url],
            env=child_env(**KEY_ENV),
            cwd=tmp_path,
            terminal=True,
        )
        wait_until(lambda: b"Send up to 3 requests" in asked.stdout, 30, "the question")
        assert b"about $0.12 at list price" in asked.stdout
        asked.type("n\n")
        assert asked.wait(timeout=30) == 0
        assert b"Nothing sent." in asked.stdout and sim.stats()["requests"] == 0


def test_retry_failed_previews_the_batch_price_and_asks_before_a_large_retry(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """retry-failed --dry-run --batch prices at the Batch rate; a retry above confirm_above
    asks first on a terminal like process, and "n" sends nothing."""
    rules = [{"responses": [], "then": "no_image"}]
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        failed = cli("process", str(images), "--base-url", sim.base_url, env=KEY_ENV)
        assert failed.exit_code == 1, failed.output
        sent = sim.stats()["requests"]
        preview = json_lines(cli("retry-failed", "--dry-run", "--batch", "--json").output)[-1]
        assert preview["requests"] == 3
        assert preview["estimated_usd"] == pytest.approx(3 * 0.039 / 2)
        assert "(Batch API: half price)" in cli("retry-failed", "--dry-run", "--batch").output
        assert cli("settings", "set", "confirm_above", "2").exit_code == 0
        asked = Proc(
            ["retry-failed", "--base-url", sim.base_url],
            env=child_env(**KEY_ENV),
            cwd=tmp_path,
            terminal=True,
        )
        wait_until(lambda: b"Send up to 3 requests" in asked.stdout, 30, "the question")
        asked.type("n\n")
        assert asked.wait(timeout=30) == 0
        assert b"Nothing sent." in asked.stdout and sim.stats()["requests"] == sent


def test_a_piped_table_is_aligned_by_screen_width_and_says_nothing_more(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Piped, a table is plain columns two spaces apart, aligned by the width a character
    takes on screen (a CJK name takes two columns a character), with no trailing spaces."""
    from imagelingo_cli.cli.text_output import PipedText

    PipedText().table(
        ("ID", "Image", "Status"),
        [("01m8q0v2", "菜单.png", "Completed"), ("01m8q0w7", "menu-board.png", "Failed")],
        no_wrap=("ID",),
    )
    assert capsys.readouterr().out.splitlines() == [
        "ID        Image           Status",
        "01m8q0v2  菜单.png        Completed",
        "01m8q0w7  menu-board.png  Failed",
    ]
