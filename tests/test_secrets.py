"""The API key is never written anywhere: not in the database, outputs, settings, stdout, stderr
or --json; and the database and settings files are readable by their owner only."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SAMPLES, Cli
from procs import Proc, child_env, query

from imagelingo_cli.simulator import Simulator

KEY = "FAKEKEY-imagelingo-secret-1234567890"  # recognisable, and not shaped like a real key
# Pieces of the key that would still give it away if it were cut, quoted or re-encoded.
FRAGMENTS = (KEY, KEY[:20], "imagelingo-secret-1234567890", KEY.encode().hex())


def key_bytes_in(data: bytes) -> int:
    """How many bytes of the key (or a telling piece of it) `data` holds."""
    found = 0
    for fragment in FRAGMENTS:
        for encoded in {fragment.encode(), fragment.encode("utf-16-le")}:
            found += data.count(encoded) * len(encoded)
    return found


class Run:
    """Every command of the scenario as a real subprocess; all they print is kept."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.db = tmp_path / "state" / "imagelingo.db"
        self.settings = tmp_path / "state" / "settings.toml"
        self.printed: list[bytes] = []
        self.codes: list[int] = []

    def __call__(self, *args: str, key: str = KEY) -> Proc:
        proc = Proc(
            args,
            env=child_env(
                GEMINI_API_KEY=key,
                IMAGELINGO_DB=str(self.db),
                IMAGELINGO_CONFIG=str(self.settings),
            ),
            cwd=self.tmp_path,
        )
        self.codes.append(proc.wait(timeout=60))
        self.printed += [proc.stdout, proc.stderr]
        assert b"Traceback" not in proc.stderr, proc.text()
        return proc


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("shop-sign.png", "cafe-menu.jpg", "tea-label.png", "concert-poster.webp"):
        shutil.copy(SAMPLES / name, folder / name)
    return folder


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    yield Run(tmp_path)


def everything_written(run: Run, images: Path) -> dict[str, bytes]:
    """Every file below the test folder except the input images, plus all that was printed."""
    written = {
        str(path): path.read_bytes()
        for path in run.tmp_path.rglob("*")
        if path.is_file() and images not in path.parents
    }
    written["<printed>"] = b"\n".join(run.printed)
    return written


def test_the_key_is_never_written_anywhere(
    run: Run, cli: Cli, images: Path, tmp_path: Path
) -> None:
    """A batch failing every way: 0 bytes of the key in DB, outputs, settings or output."""
    run("settings", "set", "language", "es")
    out = tmp_path / "out"
    with Simulator("ok", api_key="the-right-key") as strict:  # our key is refused: CONFIG_ERROR
        run("process", str(images), "--out", str(out), "--base-url", strict.base_url, "--json")
        run("process", str(images), "--out", str(out), "--base-url", strict.base_url)
        run("retry-failed", "--json")
        run("retry-failed")
        rejected = strict.stats()["outcomes"].get("bad_key", 0)
    assert rejected >= 3 and set(run.codes) == {0, 1}, run.codes
    rules = [
        {"image": str(images / "shop-sign.png"), "responses": ["internal"]},
        {"image": str(images / "cafe-menu.jpg"), "responses": ["invalid_argument"]},
        {"image": str(images / "tea-label.png"), "responses": ["deadline", "ok"]},
    ]
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"rules": rules}))
    with Simulator("ok", scenario=scenario) as lenient:  # any key: requests go through
        run("process", str(images), "--out", str(out), "--base-url", lenient.base_url, "--json")
        run("retry-failed", "--code", "SERVER_ERROR")
        run("retry-failed", "--json")
        outcomes = lenient.stats()["outcomes"]
    assert {"internal", "invalid_argument", "deadline", "ok"} <= set(outcomes), outcomes
    closed = "http://127.0.0.1:9"  # nothing listens: connection refused, NETWORK_ERROR
    out2 = str(tmp_path / "out2")
    run("process", str(images / "shop-sign.png"), "--out", out2, "--base-url", closed, "--to", "fr")
    failed = query(run.db, "SELECT id FROM generations WHERE status = 'failed'")
    assert failed, "the last run should leave a failure to show"
    for args in (
        ["history", "--errors"],
        ["history", "--json"],
        ["show", failed[0]["id"]],
        ["stats", "--json"],
        ["stats"],
        ["settings", "show", "--json"],
    ):
        result = cli(*args, env={"GEMINI_API_KEY": KEY})
        assert result.exit_code == 0, result.output
        run.printed.append(result.stdout_bytes + result.stderr_bytes)

    completed = query(run.db, "SELECT output_path FROM generations WHERE status = 'completed'")
    assert completed, "some translations were written (their files are searched too)"
    written = everything_written(run, images)
    assert str(run.db) in written and str(run.settings) in written
    leaks = {name: key_bytes_in(data) for name, data in written.items()}
    found = sum(leaks.values())
    print(f"files and streams searched: {len(written)}; bytes of key found: {found}")
    assert found == 0, {name: n for name, n in leaks.items() if n}
    assert b"API key not valid" in written["<printed>"]  # the failure itself was reported


def test_database_and_settings_files_are_readable_by_their_owner_only(
    run: Run, images: Path, tmp_path: Path
) -> None:
    """The database (with its -wal/-shm) and the settings file are created with mode 0600."""
    run("settings", "set", "concurrency", "2")
    with Simulator("ok", latency=0.05) as sim:
        run("process", str(images), "--out", str(tmp_path / "out"), "--base-url", sim.base_url)
    assert run.codes == [0, 0]
    assert stat.S_IMODE(run.settings.stat().st_mode) == 0o600
    database_files = [p for p in run.db.parent.iterdir() if p.name.startswith(run.db.name)]
    assert run.db in database_files
    for path in database_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))
