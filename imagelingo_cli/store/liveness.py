"""Whether the run that holds a variation is still working on it: a heartbeat lease.

A running batch renews `runs.heartbeat_at` every `HEARTBEAT_S`; a run whose heartbeat is older
than `LEASE_S` is dead wherever it ran (another host, a container that is gone, a renamed
machine), and its variations are taken over. On the same host a run whose process no longer
exists is dead at once. A pid alone proves nothing elsewhere: hosts and pid namespaces differ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from imagelingo_cli.states import RunStatus

__all__ = ["HEARTBEAT_S", "LEASE_S", "run_alive"]

HEARTBEAT_S = 15.0
LEASE_S = 60.0


def run_alive(run: Mapping[str, Any] | None, *, now: datetime | None = None) -> bool:
    """`run` is a `runs` row (status, pid, host, started_at, heartbeat_at)."""
    if run is None or run.get("status") != RunStatus.RUNNING:
        return False
    import socket  # here, not at the top: the read commands never get this far

    pid, host = run.get("pid"), run.get("host")
    if pid == os.getpid() and host == socket.gethostname():
        return True
    if host == socket.gethostname() and isinstance(pid, int) and not _process_exists(pid):
        return False
    renewed = run.get("heartbeat_at") or run.get("started_at")
    if not renewed:
        return False
    moment = datetime.fromisoformat(str(renewed).replace("Z", "+00:00"))
    return (now or datetime.now(UTC)) - moment < timedelta(seconds=LEASE_S)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
