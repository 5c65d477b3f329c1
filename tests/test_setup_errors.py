"""Bad setup is refused before anything is sent: exit 2, one line saying why, and no run (nor
output folder) left behind."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TEST_KEY, Cli
from procs import Proc, as_ordinary_user, assert_permissions_apply, child_env

from imagelingo_cli.simulator import Simulator
from imagelingo_cli.store import open_store

KEY_ENV = {"GEMINI_API_KEY": TEST_KEY}


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator("ok") as simulator:
        yield simulator


def process(cli: Cli, sim: Simulator, images: Path, *args: str) -> tuple[int, str]:
    result = cli(
        "process", str(images), "--to", "es", "--base-url", sim.base_url, *args, env=KEY_ENV
    )
    return result.exit_code, result.output


def assert_refused(code: int, output: str, *reason: str) -> None:
    """Exit 2 and exactly one line, `Error: …`, holding each part of the reason."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2, output
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    for part in reason:
        assert part in lines[0], (part, lines[0])
    assert "Traceback" not in output


def assert_nothing_done(cli: Cli, sim: Simulator, db: Path | None = None) -> None:
    """Nothing sent, and the database holds no run (or was never created)."""
    assert sim.stats()["requests"] == 0
    db = db or cli.db_path
    if db.exists() and db.stat().st_size:
        conn = sqlite3.connect(db)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            if "runs" in tables:
                assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
        finally:
            conn.close()


# --- the output folder ----------------------------------------------------------------------


def test_output_folder_under_a_regular_file_is_refused(
    cli: Cli, sim: Simulator, images: Path, tmp_path: Path
) -> None:
    """--out below a regular file: mkdir fails; exit 2 "cannot create the output folder"."""
    (tmp_path / "a-file").write_text("not a folder")
    code, output = process(cli, sim, images, "--out", str(tmp_path / "a-file" / "out"))
    assert_refused(code, output, "cannot create the output folder", "a-file")
    assert_nothing_done(cli, sim)


def test_output_folder_without_write_permission_is_refused(
    cli: Cli, sim: Simulator, images: Path, tmp_path: Path
) -> None:
    """--out an existing folder we may not write to (mode 555, permissions enforced): exit 2."""
    locked = tmp_path / "locked-out"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert_permissions_apply(locked / "probe", "w")
        args = ["process", str(images), "--to", "es", "--base-url", sim.base_url]
        proc = Proc(
            [*args, "--out", str(locked)],
            env=child_env(**KEY_ENV),
            cwd=tmp_path,
            preexec_fn=as_ordinary_user(),
        )
        code = proc.wait(timeout=60)
    finally:
        locked.chmod(0o755)
    assert proc.stdout == b""
    assert_refused(code, proc.stderr.decode(), "is not writable", "locked-out")
    assert_nothing_done(cli, sim)
    assert list(locked.iterdir()) == []


def test_output_folder_equal_to_the_input_folder_is_refused(
    cli: Cli, sim: Simulator, images: Path
) -> None:
    """--out the input folder itself: outputs would be read as input next time; exit 2."""
    code, output = process(cli, sim, images, "--out", str(images))
    assert_refused(code, output, "contains the input", "choose an output folder outside it")
    assert_nothing_done(cli, sim)
    assert sorted(p.name for p in images.iterdir()) == [
        "cafe-menu.jpg",
        "concert-poster.webp",
        "shop-sign.png",
    ]


def test_output_folder_containing_the_input_folder_is_refused(
    cli: Cli, sim: Simulator, images: Path, tmp_path: Path
) -> None:
    """--out a parent of the input folder: exit 2, nothing written."""
    code, output = process(cli, sim, images, "--out", str(tmp_path))
    assert_refused(code, output, "contains the input")
    assert_nothing_done(cli, sim)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "state"]


def test_output_folder_inside_the_input_folder_is_never_read_as_input(
    cli: Cli, sim: Simulator, images: Path
) -> None:
    """--out inside the input folder is accepted; its outputs are never read back as input."""
    inner = images / "translated"
    code, output = process(cli, sim, images, "--out", str(inner))
    assert code == 0, output
    code, output = process(cli, sim, images, "--out", str(inner))
    assert code == 0, output
    assert sim.stats()["requests"] == 3
    assert len(list(inner.iterdir())) == 3 and output.count("already completed") == 3


# --- the database ---------------------------------------------------------------------------


def test_database_path_under_a_regular_file_is_refused(
    cli: Cli, sim: Simulator, images: Path, tmp_path: Path
) -> None:
    """--db below a regular file: exit 2 "cannot create the database", no output folder made."""
    (tmp_path / "a-file").write_text("not a folder")
    db = tmp_path / "a-file" / "imagelingo.db"
    out = tmp_path / "out"
    code, output = process(cli, sim, images, "--db", str(db), "--out", str(out))
    assert_refused(code, output, "cannot create the database", "a-file")
    assert_nothing_done(cli, sim, db)
    assert not out.exists()


def test_database_in_a_folder_without_write_permission_is_refused(
    cli: Cli, sim: Simulator, images: Path, tmp_path: Path
) -> None:
    """--db in a folder we may not write to (mode 555, permissions enforced): exit 2."""
    folder = tmp_path / "locked-db"
    folder.mkdir()
    folder.chmod(0o555)
    out = tmp_path / "out"
    try:
        assert_permissions_apply(folder / "probe", "w")
        args = ["process", str(images), "--to", "es", "--base-url", sim.base_url]
        proc = Proc(
            [*args, "--db", str(folder / "imagelingo.db"), "--out", str(out)],
            env=child_env(**KEY_ENV),
            cwd=tmp_path,
            preexec_fn=as_ordinary_user(),
        )
        code = proc.wait(timeout=60)
    finally:
        folder.chmod(0o755)
    assert_refused(code, proc.stderr.decode(), "database", "locked-db")
    assert_nothing_done(cli, sim, folder / "imagelingo.db")
    assert list(folder.iterdir()) == []
    assert not out.exists()


@pytest.mark.parametrize("command", ["process", "retry-failed"])
def test_a_read_only_database_is_refused_before_anything_is_sent(
    cli: Cli, sim: Simulator, images: Path, tmp_path: Path, command: str
) -> None:
    """A read-only database file: exit 2 "cannot write to the database" before any request."""
    open_store(cli.db_path).close()
    for path in cli.db_path.parent.iterdir():
        path.chmod(0o444)
    out = tmp_path / "out"
    try:
        assert_permissions_apply(cli.db_path, "r+b")
        if command == "process":
            args = ["process", str(images), "--to", "es", "--base-url", sim.base_url]
            args += ["--out", str(out)]
        else:
            args = ["retry-failed"]
        proc = Proc(args, env=child_env(**KEY_ENV), cwd=tmp_path, preexec_fn=as_ordinary_user())
        code = proc.wait(timeout=60)
    finally:
        for path in cli.db_path.parent.iterdir():
            path.chmod(0o644)
    assert_refused(code, proc.stderr.decode(), "cannot write to the database", "read")
    assert_nothing_done(cli, sim)
    assert not out.exists()


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(
    cli: Cli, sim: Simulator, images: Path, tmp_path: Path
) -> None:
    """--db a file of random bytes: exit 2 "not an imagelingo database"; the file is unchanged."""
    db = tmp_path / "notes.db"
    garbage = os.urandom(4096)
    db.write_bytes(garbage)
    out = tmp_path / "out"
    code, output = process(cli, sim, images, "--db", str(db), "--out", str(out))
    assert_refused(code, output, "is not an imagelingo database", "notes.db")
    assert db.read_bytes() == garbage
    assert sim.stats()["requests"] == 0
    assert not out.exists()
    assert not Path(f"{db}-wal").exists()


def test_a_database_from_a_newer_imagelingo_is_refused(
    cli: Cli, sim: Simulator, images: Path, tmp_path: Path
) -> None:
    """A database whose migrations include one this version does not know: exit 2, "upgrade"."""
    open_store(cli.db_path).close()
    conn = sqlite3.connect(cli.db_path)
    with conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at)"
            " VALUES ('imagelingo', 'm999_future', '2030-01-01 00:00:00+00:00')"
        )
    conn.close()
    out = tmp_path / "out"
    code, output = process(cli, sim, images, "--out", str(out))
    assert_refused(code, output, "newer imagelingo", "m999_future", "upgrade")
    assert_nothing_done(cli, sim)
    assert not out.exists()


# --- options --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--model", "gemini 2.5"], ["'gemini 2.5' is not a model name"]),
        (["--model", "models/gemini-2.5-flash-image/extra"], ["is not a model name"]),
        (["--variations", "0"], ["variations must be between 1 and 100 (got 0)"]),
        (["--concurrency", "0"], ["concurrency", "0 is out of range"]),
        (["--to", "klingonish-xx"], ["unknown language 'klingonish-xx'", "BCP-47"]),
        (["--to", "xx-yy"], ["unknown language 'xx-yy'", "BCP-47"]),
        (["--to", ""], ["the target language is empty"]),
    ],
    ids=[
        "model-space",
        "model-slash",
        "variations-0",
        "concurrency-0",
        "language-near-a-name",
        "language-unknown-tag",
        "no-language",
    ],
)
def test_invalid_option_is_refused_before_anything_is_sent(
    cli: Cli, sim: Simulator, images: Path, tmp_path: Path, args: list[str], reason: list[str]
) -> None:
    """An invalid option value: exit 2 with one line naming what was not understood."""
    out = tmp_path / "out"
    code, output = process(cli, sim, images, *args, "--out", str(out))
    assert_refused(code, output, *reason)
    assert_nothing_done(cli, sim)
    assert not out.exists() and not cli.db_path.exists()


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("localhost:8080", "'localhost:8080' is not an http:// or https:// address"),
        ("ftp://example.com", "'ftp://example.com' is not an http:// or https:// address"),
        ("http://[::1", "Invalid port"),
    ],
)
def test_a_base_url_no_request_can_go_to_is_refused_before_anything_is_sent(
    cli: Cli, sim: Simulator, images: Path, tmp_path: Path, base_url: str, reason: str
) -> None:
    """A --base-url httpx2 could not send to (no scheme, another scheme, unparsable): exit 2
    with one line, no run, no output folder."""
    out = tmp_path / "out"
    code, output = process(cli, sim, images, "--base-url", base_url, "--out", str(out))
    assert_refused(code, output, "the API base URL cannot be used", reason)
    assert_nothing_done(cli, sim)
    assert not out.exists()


@pytest.mark.parametrize(
    ("language", "tag"),
    [("pt-BR", "pt-BR"), ("pt-br", "pt-BR"), ("Spanish", "es"), ("zh-Hant", "zh-Hant")],
)
def test_language_accepts_bcp47_tags_and_common_names(
    cli: Cli, sim: Simulator, images: Path, language: str, tag: str
) -> None:
    """`--to` takes a BCP-47 tag (any case) or an English name, recorded as the canonical tag."""
    result = cli(
        "process",
        str(images / "shop-sign.png"),
        "--to",
        language,
        "--base-url",
        sim.base_url,
        env=KEY_ENV,
    )
    assert result.exit_code == 0, result.output
    (row,) = cli.rows("SELECT target_language, output_path FROM generations")
    assert row["target_language"] == tag and f".{tag}.v1." in row["output_path"]
