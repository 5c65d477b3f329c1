"""Outputs land inside --out whatever the inputs are called, and never silently replace a file
that is not our own earlier output (unless --force, and never another variation's output)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest
from conftest import SAMPLES, TEST_KEY, Cli, json_lines
from procs import opens_as_image

from imagelingo_cli.outputs import output_path
from imagelingo_cli.simulator import Simulator

KEY_ENV = {"GEMINI_API_KEY": TEST_KEY}
UNRELATED = b"my own notes, not an imagelingo output\n"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator("ok") as simulator:
        yield simulator


def process(cli: Cli, sim: Simulator, *args: str | Path) -> tuple[int, str]:
    result = cli(
        "process",
        *(str(a) for a in args),
        "--to",
        "es",
        "--base-url",
        sim.base_url,
        env=KEY_ENV,
    )
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def inside(path: Path, folder: Path) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([real, root]) == root and real != root


# --- names that would escape ----------------------------------------------------------------


@pytest.mark.parametrize(
    "relative",
    ["../escape.png", "a/../../escape.png", "/etc/escape.png", "..", ".", "a/..", ""],
)
def test_output_path_refuses_names_that_would_leave_the_output_folder(
    tmp_path: Path, relative: str
) -> None:
    """`..`, absolute, `.` and empty relative names raise ValueError instead of a path outside."""
    with pytest.raises(ValueError):
        output_path(tmp_path / "out", PurePosixPath(relative), "es", 1, "image/png")


@pytest.mark.parametrize("language", ["../es", "es/../../x", "", "e s"])
def test_output_path_refuses_a_language_that_is_not_a_plain_tag(
    tmp_path: Path, language: str
) -> None:
    """The language part of the name cannot smuggle a path either."""
    with pytest.raises(ValueError):
        output_path(tmp_path / "out", PurePosixPath("a.png"), language, 1, "image/png")


def test_output_path_keeps_odd_but_harmless_names_inside(tmp_path: Path) -> None:
    """Names with dots, spaces and `..` inside a word stay in the folder, below their sub-folder."""
    out = tmp_path / "out"
    for relative in ("..menu.png", "a..b/c...png", "sub dir/ménu ..png"):
        path = output_path(out, PurePosixPath(relative), "pt-BR", 2, "image/jpeg")
        assert inside(path, out) and path.name.endswith(".pt-BR.v2.jpg"), path


def test_symlinked_input_folders_write_inside_the_output_folder(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    """Symlinked input folders: every output lands below --out, nothing where links point."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "deep").mkdir(parents=True)
    shutil.copy(SAMPLES / "tea-label.png", elsewhere / "deep" / "far.png")
    real = tmp_path / "real-imgs"
    real.mkdir()
    shutil.copy(SAMPLES / "shop-sign.png", real / "near.png")
    (real / "linked").symlink_to(elsewhere, target_is_directory=True)
    given = tmp_path / "imgs-link"
    given.symlink_to(real, target_is_directory=True)
    before = sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*"))
    out = tmp_path / "out"
    code, output = process(cli, sim, given, "--out", out)
    assert code == 0, output
    rows = cli.rows("SELECT output_path FROM generations")
    assert len(rows) == 2
    for row in rows:
        assert inside(Path(row["output_path"]), out) and opens_as_image(Path(row["output_path"]))
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.png")) == [
        "linked/deep/far.es.v1.png",
        "near.es.v1.png",
    ]
    assert sorted(p.relative_to(elsewhere) for p in elsewhere.rglob("*")) == before


# --- existing files at the output path ------------------------------------------------------


def test_an_unrelated_file_at_the_output_path_is_kept_and_the_output_goes_to_dash_2(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    """An unrelated file at the output path is kept; the output goes to and is recorded at -2."""
    shutil.copy(SAMPLES / "shop-sign.png", tmp_path / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.es.v1.png").write_bytes(UNRELATED)
    code, output = process(cli, sim, tmp_path / "x.png", "--out", out)
    assert code == 0, output
    assert (out / "x.es.v1.png").read_bytes() == UNRELATED
    (row,) = cli.rows("SELECT output_path FROM generations")
    assert row["output_path"] == str(out / "x.es.v1-2.png")
    assert opens_as_image(out / "x.es.v1-2.png")
    assert "x.es.v1-2.png" in output


def test_resume_after_a_dash_2_output_points_at_our_file_not_the_unrelated_one(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    """Resuming after a -2 output sends nothing and names our -2 file, not the unrelated one."""
    shutil.copy(SAMPLES / "shop-sign.png", tmp_path / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.es.v1.png").write_bytes(UNRELATED)
    code, output = process(cli, sim, tmp_path / "x.png", "--out", out)
    assert code == 0, output
    code, output = process(cli, sim, tmp_path / "x.png", "--out", out, "--json")
    assert code == 0 and sim.stats()["requests"] == 1, output
    (skipped,) = [e for e in json_lines(output) if e["event"] == "variation_skipped"]
    assert (out / "x.es.v1.png").read_bytes() == UNRELATED
    assert skipped["output_path"] == str(out / "x.es.v1-2.png")


def test_force_overwrites_an_unrelated_file_at_the_output_path(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    """With --force the unrelated file at `x.es.v1.png` is replaced by the translation."""
    shutil.copy(SAMPLES / "shop-sign.png", tmp_path / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "x.es.v1.png").write_bytes(UNRELATED)
    code, output = process(cli, sim, tmp_path / "x.png", "--out", out, "--force")
    assert code == 0, output
    assert opens_as_image(out / "x.es.v1.png") and not (out / "x.es.v1-2.png").exists()


def test_force_redo_overwrites_our_own_earlier_output_in_place(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    """A --force redo of a completed variation replaces its own output (no `-2` copy)."""
    shutil.copy(SAMPLES / "shop-sign.png", tmp_path / "x.png")
    out = tmp_path / "out"
    code, output = process(cli, sim, tmp_path / "x.png", "--out", out, "--variations", "2")
    assert code == 0, output
    first = {p.name: p.stat().st_ino for p in out.iterdir()}
    code, output = process(
        cli, sim, tmp_path / "x.png", "--out", out, "--variations", "2", "--force"
    )
    assert code == 0, output
    assert sim.stats()["requests"] == 4
    after = {p.name: p.stat().st_ino for p in out.iterdir()}
    assert sorted(after) == ["x.es.v1.png", "x.es.v2.png"]
    assert all(after[name] != first[name] for name in after)  # rewritten (atomic replace)


def test_same_name_from_two_folders_never_overwrites_the_other(
    cli: Cli, sim: Simulator, tmp_path: Path
) -> None:
    """a/x.png then b/x.png: both outputs kept (x and x-2), even with --force."""
    for folder, sample in (("a", "shop-sign.png"), ("b", "tea-label.png")):
        (tmp_path / folder).mkdir()
        shutil.copy(SAMPLES / sample, tmp_path / folder / "x.png")
    out = tmp_path / "out"
    for extra in ([], ["--force"]):
        code, output = process(
            cli, sim, tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "--out", out,
            "--concurrency", "1", *extra,
        )  # fmt: skip
        assert code == 0, output
        rows = cli.rows("SELECT output_path FROM generations ORDER BY source_path")
        assert [Path(r["output_path"]).name for r in rows] == ["x.es.v1.png", "x.es.v1-2.png"]
        assert sorted(p.name for p in out.iterdir()) == ["x.es.v1-2.png", "x.es.v1.png"]


def test_same_name_from_two_folders_finishing_together_keeps_both(cli: Cli, tmp_path: Path) -> None:
    """a/x.png and b/x.png finishing at the same moment: four distinct outputs, none lost."""
    for folder, sample in (("a", "shop-sign.png"), ("b", "tea-label.png")):
        (tmp_path / folder).mkdir()
        shutil.copy(SAMPLES / sample, tmp_path / folder / "x.png")
    out = tmp_path / "out"
    with Simulator("ok", latency=0.2) as slow:
        code, output = process(
            cli, slow, tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "--out", out,
            "--variations", "2",
        )  # fmt: skip
    assert code == 0, output
    rows = cli.rows("SELECT output_path FROM generations")
    paths = [r["output_path"] for r in rows]
    assert len(set(paths)) == 4, paths
    assert sorted(p.name for p in out.iterdir()) == [
        "x.es.v1-2.png",
        "x.es.v1.png",
        "x.es.v2-2.png",
        "x.es.v2.png",
    ]
