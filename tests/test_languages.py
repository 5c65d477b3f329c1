"""Several target languages in one run: images × languages × variations, each image read once,
resume, one credit each, a failure retried in its language alone, the footer per language."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from conftest import TEST_KEY, Cli, scenario_simulator
from procs import Proc, child_env, query
from rich.console import Console

from imagelingo_cli import events as ev
from imagelingo_cli.cli.progress import ProgressState, render_table

KEY_ENV = {"GEMINI_API_KEY": TEST_KEY}

# In the child: count the times each input file is opened, and say so on stderr at exit.
COUNT_OPENS = """
import atexit, json, sys
_opens = {{}}
def _count_opens(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith({folder!r}):
        _opens[args[0]] = _opens.get(args[0], 0) + 1
sys.addaudithook(_count_opens)
atexit.register(lambda: print("OPENS " + json.dumps(_opens), file=sys.stderr))
"""


def test_three_languages_two_variations_resume_and_retry_one_language(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """--to es,fr,pt-BR -n 2 over 3 images: 18 outputs named by language, one credit each,
    each image read once; a rerun sends nothing; the French failure is retried alone."""
    rules = [
        {"image": "imgs/cafe-menu.jpg", "language": "fr", "variation": 2, "responses": [],
         "then": "overloaded"},
    ]  # fmt: skip
    with scenario_simulator(tmp_path, {"rules": rules}) as sim:
        args = ["process", str(images), "--to", "es,fr", "--to", "Brazilian Portuguese", "-n", "2"]
        run = Proc(
            [*args, "--base-url", sim.base_url],
            env=child_env(**KEY_ENV),
            cwd=tmp_path,
            bootstrap=COUNT_OPENS.format(folder=str(images)),
        )
        assert run.wait(timeout=120) == 1, run.text()
        opens = json.loads(run.stderr.decode().split("OPENS ", 1)[1])
        assert sorted(opens.values()) == [1, 1, 1], opens  # read once for 6 variations
        outputs = sorted(p.name for p in (tmp_path / "imagelingo-out").iterdir())
        assert len(outputs) == 17 and "cafe-menu.fr.v2.jpg" not in outputs
        assert {name.split(".")[1] for name in outputs} == {"es", "fr", "pt-BR"}
        rows = query(
            cli.db_path, "SELECT target_language, status, credits_charged FROM generations"
        )
        assert Counter(r["target_language"] for r in rows) == {"es": 6, "fr": 6, "pt-BR": 6}
        assert sum(r["credits_charged"] for r in rows) == 17
        (run_row,) = query(cli.db_path, "SELECT target_language FROM runs")
        assert run_row["target_language"] == "es,fr,pt-BR"

        sent = sim.stats()["requests"]
        again = cli(*args, "--base-url", sim.base_url, env=KEY_ENV)
        assert sim.stats()["requests"] == sent + 1  # only the failed one is sent again
        assert again.output.count("already completed") == 17

        sim.reset_stats()
        none = cli("retry-failed", "--to", "es", env=KEY_ENV)
        assert "Nothing to retry" in none.output and sim.stats()["requests"] == 0
        retried = cli("retry-failed", "--to", "French", "--dry-run", env=KEY_ENV)
        assert "cafe-menu.jpg v2 fr" in retried.output and " es " not in retried.output
    history = cli("history", "--to", "fr", "--errors", "--format", "json").output
    assert [(r["image"], r["language"]) for r in json.loads(history)] == [("cafe-menu.jpg", "fr")]
    assert "of 6" in cli("history", "--to", "fr", "--limit", "2", env={"COLUMNS": "200"}).output

    french = json.loads(cli("stats", "--to", "fr", "--json").output)
    assert french["variations"]["variations"] == 6 and french["variations"]["failed"] == 1
    assert [row["code"] for row in french["by_code"]] == ["SERVER_ERROR"]
    assert french["scope"]["languages"] == ["fr"]
    every = json.loads(cli("stats", "--json").output)
    assert [(r["language"], r["variations"], r["failed"]) for r in every["by_language"]] == [
        ("es", 6, 0),
        ("fr", 6, 1),
        ("pt-BR", 6, 0),
    ]
    table = cli("stats", env={"COLUMNS": "120"}).output
    assert "By language" in table and "pt-BR" in table


def test_an_unknown_language_among_valid_ones_refuses_the_whole_command(
    cli: Cli, images: Path, tmp_path: Path
) -> None:
    """--to es,klingonish-xx,fr: exit 2 naming it, nothing sent, nothing recorded."""
    with scenario_simulator(tmp_path, {"rules": []}) as sim:
        result = cli(
            "process", str(images), "--to", "es,klingonish-xx,fr", "--base-url", sim.base_url,
            env=KEY_ENV,
        )  # fmt: skip
        assert sim.stats()["requests"] == 0
    assert result.exit_code == 2 and "klingonish-xx" in result.output and "--to" in result.output
    assert query(cli.db_path, "SELECT id FROM runs") == []


def test_settings_take_a_list_of_languages(cli: Cli) -> None:
    """`settings set language es,fr` stores both; `settings show` says so."""
    assert cli("settings", "set", "language", "es, French").exit_code == 0
    shown = json.loads(cli("settings", "show", "--json").output)["settings"]["language"]
    assert shown["value"] == ["es", "fr"] and shown["source"] == "settings file"


def test_the_footer_counts_each_language_when_there_are_several() -> None:
    """Two languages: the footer adds `es 1/2 · fr 0/2 (1 failed)`."""

    def ref(n: int, language: str) -> ev.VariationRef:
        return ev.VariationRef(f"g{n}{language}", "a.png", n, language)

    state = ProgressState(lambda: 0.0)
    state.apply(ev.BatchStarted("run", "process", 4, 2, 3))
    state.apply(ev.VariationCompleted(ref(1, "es"), 1, 3, "out/a.es.v1.png"))
    state.apply(ev.VariationQueued(ref(2, "es")))
    info = ev.ErrorInfo("NO_IMAGE", "No Image", "STOP", False)
    state.apply(ev.VariationFailed(ref(1, "fr"), 1, info, sent=True))
    state.apply(ev.VariationQueued(ref(2, "fr")))
    console = Console(width=120, record=True, color_system=None)
    console.print(render_table(state, max_rows=10))
    assert "es 1/2 · fr 0/2 (1 failed)" in console.export_text()
