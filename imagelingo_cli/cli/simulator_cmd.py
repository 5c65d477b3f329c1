"""`imagelingo simulator serve`: the built-in Gemini stand-in, as a long-running server.

The first stdout line is ``Listening on http://HOST:PORT`` (flushed at once, so scripts and
tests can read the port when ``--port 0`` picks one); a one-line summary of the profile goes
to stderr. It serves until Ctrl-C or SIGTERM and then exits 0. A scenario file that does not
load is reported on stderr with exit code 2.
"""

from __future__ import annotations

import signal
import threading
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from imagelingo_cli.cli.options import PlainHelp

if TYPE_CHECKING:
    pass


app = typer.Typer(help="The built-in Gemini-compatible simulator.", no_args_is_help=True)


class Profile(StrEnum):
    """The simulator's built-in behaviours (`imagelingo_cli.simulator.PROFILES`)."""

    ok = "ok"
    flaky = "flaky"
    rate_limited = "rate-limited"
    outage = "outage"


@app.command(cls=PlainHelp)
def serve(
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Interface to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", metavar="PORT", min=0, max=65535, help="Port; 0 picks a free one."),
    ] = 0,
    profile: Annotated[
        Profile,
        typer.Option(
            "--profile",
            metavar="PROFILE",
            help="ok: all succeed; flaky: seeded 429/504/503/no-image mix; "
            "rate-limited: --rpm budget; outage: 503s.",
        ),
    ] = Profile.ok,
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", help="Seed for flaky and outage.")
    ] = 0,
    latency: Annotated[
        float,
        typer.Option(
            "--latency", metavar="SECONDS", min=0.0, help="Seconds to wait before every answer."
        ),
    ] = 0.0,
    rpm: Annotated[
        int | None,
        typer.Option(
            "--rpm", metavar="N", min=1, help="Requests per minute (rate-limited: default 60)."
        ),
    ] = None,
    scenario: Annotated[
        Path | None,
        typer.Option(
            "--scenario", metavar="FILE", help="JSON file scripting answers per image/variation."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", metavar="KEY", help="Accept only this key (default: any non-empty key)."
        ),
    ] = None,
    batch_pending: Annotated[
        float | None,
        typer.Option(
            "--batch-pending",
            metavar="SECONDS",
            min=0.0,
            help="Seconds a batch job stays PENDING (1).",
        ),
    ] = None,
    batch_running: Annotated[
        float | None,
        typer.Option(
            "--batch-running", metavar="SECONDS", min=0.0, help="Seconds it then stays RUNNING (3)."
        ),
    ] = None,
) -> None:
    """Serve the Gemini generateContent protocol (and the Batch and Files APIs) until Ctrl-C.

    \b
    Examples:
      imagelingo simulator serve --profile flaky --port 8765
      imagelingo simulator serve --profile rate-limited --rpm 30
      GEMINI_API_KEY=any imagelingo process ./imgs --base-url http://127.0.0.1:8765
    """
    from imagelingo_cli.simulator import Simulator, load_scenario

    try:
        loaded = load_scenario(scenario) if scenario is not None else None
        simulator = Simulator(
            profile.value,
            seed=seed,
            latency=latency,
            rpm=rpm,
            scenario=loaded,
            host=host,
            port=port,
            api_key=api_key,
            batch_pending=batch_pending,
            batch_running=batch_running,
        )
    except ValueError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        base_url = simulator.start()
    except OSError as exc:
        typer.echo(f"Error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"Listening on {base_url}", flush=True)
        typer.echo(f"{simulator.describe()}. Ctrl-C to stop.", err=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        simulator.stop()
    stats = simulator.stats()
    typer.echo(f"Stopped after {stats['requests']} request(s).", err=True)
