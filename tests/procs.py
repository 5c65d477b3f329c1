"""Real `imagelingo` subprocesses for the reliability tests: start one (on pipes or a pseudo
terminal), wait on a condition with a deadline, and inspect the database it leaves behind."""

from __future__ import annotations

import ctypes
import fcntl
import io
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

T = TypeVar("T")

POLL_S = 0.01


def wait_until(condition: Callable[[], T], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_S)  # ok-sleep: the poll interval of a bounded wait


def pause_until(moment: float) -> None:
    """Let time pass until `moment` (time.monotonic()): a deliberate offset, polled."""
    while time.monotonic() < moment:
        time.sleep(min(POLL_S, max(0.0, moment - time.monotonic())))  # ok-sleep: timed offset


class Proc:
    """`python -m imagelingo_cli ARGS` with its output collected by reader threads, so the
    child never blocks on a full pipe. With `terminal=True` stdout and stderr are one pseudo
    terminal (the live table runs), else two pipes."""

    def __init__(
        self,
        args: Iterable[str],
        *,
        env: dict[str, str],
        cwd: Path,
        terminal: bool = False,
        preexec_fn: Callable[[], None] | None = None,
        bootstrap: str | None = None,
    ) -> None:
        # `bootstrap`: Python run in the child before imagelingo starts (e.g. an audit hook
        # that stops the process at an exact moment), without touching imagelingo's code.
        if bootstrap is None:
            command = [sys.executable, "-m", "imagelingo_cli", *args]
        else:
            start = "import runpy; runpy.run_module('imagelingo_cli', run_name='__main__')"
            command = [sys.executable, "-c", f"{bootstrap}\n{start}", *args]
        self._stdout = bytearray()
        self._stderr = bytearray()
        self._terminal: int | None = None
        self._readers: list[threading.Thread] = []
        self.started = time.monotonic()
        self._hung_up = threading.Event()
        if terminal:
            master, slave = pty.openpty()
            self.popen = subprocess.Popen(
                command,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_controlled_by_stdin(preexec_fn),
            )
            os.close(slave)
            self._terminal = master
            self._read_fd(master, self._stdout)
        else:
            self.popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
                preexec_fn=preexec_fn,
            )
            assert self.popen.stdout is not None and self.popen.stderr is not None
            self._read_stream(self.popen.stdout, self._stdout)
            self._read_stream(self.popen.stderr, self._stderr)

    def _read_stream(self, stream: io.BufferedReader | Any, sink: bytearray) -> None:
        def pump() -> None:
            for chunk in iter(lambda: stream.read1(65536), b""):
                sink.extend(chunk)

        self._start(pump)

    def _read_fd(self, fd: int, sink: bytearray) -> None:
        def pump() -> None:
            try:
                while not self._hung_up.is_set():
                    if not select.select([fd], [], [], 0.05)[0]:
                        continue
                    try:
                        chunk = os.read(fd, 65536)
                    except OSError:  # EIO: the child closed the terminal
                        return
                    if not chunk:
                        return
                    sink.extend(chunk)
            finally:
                os.close(fd)

        self._start(pump)

    def _start(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._readers.append(thread)

    def type(self, text: str) -> None:
        """Keys typed at the pseudo terminal (terminal=True only)."""
        assert self._terminal is not None, "not started on a terminal"
        os.write(self._terminal, text.encode())

    def hang_up(self) -> None:
        """Close the terminal window (terminal=True only): the last handle on the pseudo
        terminal's master goes, so the kernel sends SIGHUP and the child's writes fail."""
        assert self._terminal is not None, "not started on a terminal"
        self._hung_up.set()
        self._join()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        self.popen.send_signal(signum)

    def kill(self) -> bool:
        """SIGKILL; True if the process was still running when it was sent."""
        alive = self.alive()
        if alive:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._join()
        return alive

    def wait(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
            raise AssertionError(
                f"imagelingo did not exit within {timeout:g} s\n{self.text()}"
            ) from None
        self._join()
        return code

    def _join(self) -> None:
        for thread in self._readers:
            thread.join(timeout=5)

    @property
    def stdout(self) -> bytes:
        return bytes(self._stdout)

    @property
    def stderr(self) -> bytes:
        return bytes(self._stderr)

    def text(self) -> str:
        return (self.stdout + b"\n" + self.stderr).decode("utf-8", errors="replace")


def _controlled_by_stdin(then: Callable[[], None] | None) -> Callable[[], None]:
    """In the child, after its new session starts: the terminal on stdin becomes the
    session's controlling terminal, as a terminal window's shell has it."""

    def preexec() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        if then is not None:
            then()

    return preexec


def _drop_permission_override() -> None:
    """In the child, before exec: remove CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the
    bounding set, so that root obeys file permissions like any user (and keeps its own files)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop = 24
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(pr_capbset_drop, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def as_ordinary_user() -> Callable[[], None] | None:
    """A preexec_fn under which file permissions apply: None for a normal user; as root, one
    that drops root's permission-bypassing capabilities (chmod alone stops nothing for root)."""
    return _drop_permission_override if os.geteuid() == 0 else None


def assert_permissions_apply(path: Path, mode: str) -> None:
    """Check that a child started with `as_ordinary_user()` really cannot open `path`."""
    probe = subprocess.run(
        [sys.executable, "-c", f"open({str(path)!r}, {mode!r})"],
        preexec_fn=as_ordinary_user(),
        capture_output=True,
    )
    assert probe.returncode != 0 and b"Error" in probe.stderr, f"{path} is still usable"


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment (isolated by conftest: database, settings, NO_COLOR) plus `extra`."""
    env = dict(os.environ)
    env.pop("IMAGELINGO_DEBUG", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Rows from the database, read-only; [] while it does not exist or cannot be read yet."""
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return []
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def integrity(db: Path) -> tuple[str, list[Any]]:
    """PRAGMA integrity_check and foreign_key_check, on a read-write connection (as the next
    run would open it, recovering the WAL)."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        (check,) = conn.execute("PRAGMA integrity_check").fetchone()
        foreign = conn.execute("PRAGMA foreign_key_check").fetchall()
    finally:
        conn.close()
    return str(check), foreign


def opens_as_image(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
    except Exception:
        return False
    return True


def temp_files(folder: Path) -> list[Path]:
    """Files named like write_atomic's temp files (`.<name>.<hex>.tmp`) anywhere below `folder`."""
    return [p for p in folder.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]
