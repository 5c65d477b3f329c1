"""The HTTP side: a threaded stdlib server speaking Gemini's ``generateContent`` over HTTP/1.1.

`Simulator` owns one `ThreadingHTTPServer` on a daemon thread (one handler thread per
connection, keep-alive like Google's front end). Per request: read the body, apply the API's
own checks (key, ``X-Server-Timeout``, model, body — `request.py`), let the `Decider` pick an
answer (scenario rule, token bucket, profile — `profiles.py`), sleep the latency, then send
the canned body (`faults.py`) or the marked image (`marking.py`), or reset/drop the
connection. Control routes, never counted: ``GET /_simulator/stats`` and
``POST /_simulator/reset``. `stop()` wakes sleeping handlers and shuts every open connection,
so it returns promptly even with stalled requests in flight.

The Batch and Files API routes (`batch_routes`) are answered from a `BatchBook` and a
`FileStore`; each line of a batch job gets its answer from the same decision and rendering as
an interactive request (`Simulator._answer_line`), minus the per-minute pacing.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from imagelingo_cli.simulator import faults
from imagelingo_cli.simulator.batch_routes import BatchRoutes, Delivery
from imagelingo_cli.simulator.batch_script import BatchScript
from imagelingo_cli.simulator.batches import BatchBook
from imagelingo_cli.simulator.faults import format_duration
from imagelingo_cli.simulator.files import FileStore, Storage
from imagelingo_cli.simulator.marking import Rendering
from imagelingo_cli.simulator.profiles import Decider, Decision, describe
from imagelingo_cli.simulator.request import (
    GenerateRequest,
    Rejected,
    Route,
    check_headers,
    is_known_model,
    parse_body,
    parse_request,
    parse_route,
)
from imagelingo_cli.simulator.scenario import Scenario, load_scenario
from imagelingo_cli.simulator.timeline import Timeline

__all__ = ["Simulator"]

_IDLE_TIMEOUT = 120.0  # seconds a keep-alive connection may sit idle
_STREAM_CHUNK = 1 << 20
_BATCH_PENDING = 1.0  # default seconds a batch job stays PENDING
_BATCH_RUNNING = 3.0  # ... and then RUNNING
_REDACTED_HEADERS = frozenset({"x-goog-api-key", "authorization"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (timeouts, resets) are normal here; only report real bugs."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_TIMEOUT
    server: _Server
    started: float = 0.0

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without this, Nagle's algorithm meets the
        # client's delayed ACK and every answer waits ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return "scaffolding on HTTPServer2"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the simulator reports through stats(), not a log."""

    def do_POST(self) -> None:
        self.server.simulator._handle(self, "POST")

    def do_GET(self) -> None:
        self.server.simulator._handle(self, "GET")

    def do_PUT(self) -> None:
        self.server.simulator._handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.simulator._handle(self, "DELETE")

    def do_PATCH(self) -> None:
        self.server.simulator._handle(self, "PATCH")


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, by Content-Length or chunked transfer coding."""
    length = handler.headers.get("Content-Length")
    if length is not None:
        return handler.rfile.read(int(length)) if int(length) > 0 else b""
    if "chunked" not in (handler.headers.get("Transfer-Encoding") or "").lower():
        return b""
    chunks: list[bytes] = []
    while True:
        size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(chunks)
        chunks.append(handler.rfile.read(size))
        handler.rfile.readline()


def _redact_path(path: str) -> str:
    parts = urlsplit(path)
    if "key=" not in parts.query:
        return path
    query = "&".join(
        f"key=<redacted, {len(p) - 4} chars>" if p.startswith("key=") else p
        for p in parts.query.split("&")
    )
    return parts._replace(query=query).geturl()


class Simulator:
    """A local Gemini ``generateContent`` endpoint with scripted faults.

    ``with Simulator("flaky", seed=1) as sim: client = genai.Client(..., base_url=sim.base_url)``

    `profile` is one of `PROFILES`; `seed` drives flaky/outage; `latency` (seconds) is slept
    before every answer; `rpm` enables the token bucket (default 60 for ``rate-limited``),
    which runs on `clock` (a test may share its virtual clock with the client);
    `scenario` is a JSON file path or dict (format: `imagelingo_cli.simulator.scenario`);
    `api_key`, when given, is the only key accepted (400 API_KEY_INVALID otherwise), else any
    non-empty key is; a missing key is always 403. Batch jobs spend `batch_pending` seconds
    (default 1) PENDING and `batch_running` seconds (default 3) RUNNING (a scenario's ``batch``
    section may say otherwise); `clock` (monotonic seconds) drives them and the rpm bucket, so
    a test can inject one and never sleep. Raises ValueError for a bad profile, rpm, latency,
    batch timing or scenario.
    """

    def __init__(
        self,
        profile: str = "ok",
        *,
        seed: int = 0,
        latency: float = 0.0,
        rpm: int | None = None,
        scenario: Path | str | dict[str, Any] | Scenario | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        batch_pending: float | None = None,
        batch_running: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {latency}")
        batch_pending = _BATCH_PENDING if batch_pending is None else batch_pending
        batch_running = _BATCH_RUNNING if batch_running is None else batch_running
        if batch_pending < 0 or batch_running < 0:
            raise ValueError(
                f"batch timing must be >= 0 seconds, got pending {batch_pending}, "
                f"running {batch_running}"
            )
        self.profile = profile
        self.seed = seed
        self.latency = latency
        self.host = host
        self.port = port
        self.api_key = api_key
        self.scenario = load_scenario(scenario) if scenario is not None else None
        self._decider = Decider(profile, seed=seed, rpm=rpm, scenario=self.scenario, clock=clock)
        self.batch_pending = batch_pending
        self.batch_running = batch_running
        self._storage = Storage()
        timeline = Timeline(clock)
        self._files = FileStore(self._storage, timeline)
        self._script = self.scenario.batch if self.scenario is not None else BatchScript()
        self._batches = BatchBook(
            answer_line=self._answer_line,
            files=self._files,
            storage=self._storage,
            timeline=timeline,
            script=self._script,
            pending=batch_pending,
            running=batch_running,
        )
        self._batch_routes = BatchRoutes(self._batches, self._files, api_key)
        self._files.drop_status_headers(self._script.upload_status_missing)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._base_url: str | None = None
        self._sequence = 0
        self._in_flight = 0
        self._reset_counters()

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> str:
        """Bind, listen and serve on a daemon thread; returns the base URL once listening."""
        if self._server is not None:
            raise RuntimeError("this simulator was already started")
        self._server = _Server((self.host, self.port), self)
        port = self._server.server_address[1]
        self._base_url = f"http://{self.host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"imagelingo-simulator-{port}",
            daemon=True,
        )
        self._thread.start()
        return self._base_url

    def stop(self) -> None:
        """Stop listening, wake stalled handlers and close open connections. Idempotent."""
        server = self._server
        if server is None or self._stopping.is_set():
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._storage.close()

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (only once started)."""
        if self._base_url is None:
            raise RuntimeError("the simulator is not started; call start() first")
        return self._base_url

    def describe(self) -> str:
        """One line for humans: the profile and its options."""
        timing = (
            f"batch jobs pending {format_duration(self.batch_pending)}, "
            f"running {format_duration(self.batch_running)}"
        )
        return f"{describe(self._decider, self.latency)}; {timing}"

    # --- stats ------------------------------------------------------------------------------

    def _reset_counters(self) -> None:
        self._requests = 0
        self._max_in_flight = self._in_flight
        self._by_key: dict[str, int] = {}
        self._outcomes: dict[str, int] = {}
        self._last_request: dict[str, Any] | None = None

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last reset, as plain JSON-able data.

        ``requests``: API requests received (control routes excluded); ``in_flight`` and
        ``max_in_flight``: requests being handled now / at most at once; ``by_key``: requests
        per ``"<sha256 of the sent image>:<variation>"`` (valid requests only); ``outcomes``:
        answers by name — a fault name (``ok``, ``rate_limit``, ``stall``…) or a protocol
        refusal (``unregistered_caller``, ``bad_key``, ``deadline_too_short``,
        ``model_not_found``, ``invalid_image``, ``unsupported_mime``, ``invalid_payload``,
        ``not_found``); ``last_request``: ``path``, ``method``, ``headers`` (lower-cased, the
        key replaced by ``<redacted, N chars>``), ``model``, ``language`` (tag),
        ``language_name``, ``variation``, ``mime_type``, ``image_bytes``, ``text``, ``key``, and
        for valid requests ``answer`` (the fault spec) and ``answered_by`` (``scenario.rules[i]``,
        ``rpm`` or the profile), or None before the first request. ``by_key`` also counts the
        lines of batch jobs, which are answered like requests.

        ``batch``: ``creates`` (create requests seen, refused ones included), ``jobs_created``,
        ``jobs`` (jobs not deleted, by state: ``{"BATCH_STATE_RUNNING": 1}``), ``lines``
        (requests answered inside jobs), ``line_outcomes`` (by answer name, as ``outcomes``),
        ``files`` (stored files by source: ``UPLOADED``, ``GENERATED``), ``uploads_started``.
        """
        batch = {
            **self._batches.stats(),
            "files": self._files.counts(),
            "uploads_started": self._files.uploads_started,
        }
        with self._lock:
            return {
                "requests": self._requests,
                "in_flight": self._in_flight,
                "max_in_flight": self._max_in_flight,
                "by_key": dict(self._by_key),
                "outcomes": dict(self._outcomes),
                "last_request": copy.deepcopy(self._last_request),
                "batch": batch,
            }

    def reset_stats(self) -> None:
        """Zero the counters and forget per-key history, scenario progress and bucket state.

        Batch jobs and files stay (they are at Google); their counters are zeroed.
        """
        with self._lock:
            self._reset_counters()
            self._decider.reset()
        self._batches.reset_counters()
        self._files.drop_status_headers(self._script.upload_status_missing)

    # --- request handling -------------------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        handler.started = time.monotonic()
        try:
            body = _read_body(handler)
        except (OSError, ValueError):
            handler.close_connection = True
            return
        if urlsplit(handler.path).path.startswith("/_simulator/"):
            self._control(handler, method)
            return
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            self._serve_api(handler, method, body)
        except Exception:  # a simulator bug: answer like Google's 500, and say why on stderr
            traceback.print_exc()
            self._send(handler, faults.fault_reply(faults.FaultSpec("internal"), faults.Context()))
        finally:
            with self._lock:
                self._in_flight -= 1

    def _control(self, handler: _Handler, method: str) -> None:
        path = urlsplit(handler.path).path
        if path == "/_simulator/stats" and method == "GET":
            self._send(handler, faults.json_reply(200, self.stats()))
        elif path == "/_simulator/reset" and method == "POST":
            self.reset_stats()
            self._send(handler, faults.json_reply(200, self.stats()))
        else:
            self._send(handler, faults.path_not_found(path))

    def _serve_api(self, handler: _Handler, method: str, body: bytes) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        seen: dict[str, Any] = {
            "path": _redact_path(handler.path),
            "method": method,
            "headers": {
                name: f"<redacted, {len(value)} chars>" if name in _REDACTED_HEADERS else value
                for name, value in headers.items()
            },
            "model": None,
            "language": None,
            "language_name": None,
            "variation": None,
            "mime_type": None,
            "image_bytes": None,
            "text": None,
            "key": None,
        }
        if self._batch_routes.serves(handler.path):
            self._serve_batch(handler, method, headers, body, seen)
            return
        request: GenerateRequest | None = None
        try:
            route = parse_route(handler.path)
            if route is None or method != "POST" or route.method != "generateContent":
                raise Rejected(faults.path_not_found(urlsplit(handler.path).path), "not_found")
            seen["model"] = route.model
            check_headers(headers, route, self.api_key)
            if not is_known_model(route.model):
                reply = faults.model_not_found(route.model, route.api_version)
                raise Rejected(reply, "model_not_found")
            request = parse_body(body, route)
        except Rejected as rejected:
            seen.update(rejected.seen)
            self._record(seen, rejected.outcome)
            self._pause(self.latency)
            self._send(handler, rejected.reply)
            return
        seen.update(
            language=request.language_tag,
            language_name=request.language_name,
            variation=request.variation,
            mime_type=request.mime_type,
            image_bytes=request.image_bytes,
            text=request.text,
            key=request.key,
        )
        decision, sequence = self._decide(request, paced=True)
        seen["answer"] = decision.fault.to_json()
        seen["answered_by"] = decision.source
        self._record(seen, decision.fault.name)
        self._pause(self.latency)
        self._send(handler, self._render(request, decision.fault, sequence))

    def _serve_batch(
        self,
        handler: _Handler,
        method: str,
        headers: dict[str, str],
        body: bytes,
        seen: dict[str, Any],
    ) -> None:
        try:
            delivery = self._batch_routes.serve(method, handler.path, headers, body)
        except Rejected as rejected:
            self._record(seen, rejected.outcome)
            delivery = Delivery(rejected.reply)
        else:
            self._record(seen, None)
        self._pause(self.latency)
        self._send(handler, delivery.reply, delivery.headers, delivery.body_file)

    def _decide(self, request: GenerateRequest, *, paced: bool) -> tuple[Decision, int]:
        """Count the request against its key and choose its answer; also its sequence number."""
        with self._lock:
            n = self._by_key.get(request.key, 0)
            self._by_key[request.key] = n + 1
            decision = self._decider.decide(request, n, paced=paced)
            self._sequence += 1
            return decision, self._sequence

    def _answer_line(self, payload: Any, model: str, api_version: str) -> tuple[str, faults.Reply]:
        """What an interactive request with this body would get, for one line of a batch job.

        A stall is not waited out: inside a job it is the backend giving up, a disconnect.
        """
        try:
            request = parse_request(payload, Route(api_version, model, "generateContent", {}))
        except Rejected as rejected:
            return rejected.outcome, rejected.reply
        decision, sequence = self._decide(request, paced=False)
        if decision.fault.name == "stall":
            return "stall", faults.Reply(action="disconnect")
        return decision.fault.name, self._render(request, decision.fault, sequence)

    def _record(self, seen: dict[str, Any], outcome: str | None) -> None:
        """Keep `seen` as the last request; count `outcome` (None: a batch or file call)."""
        with self._lock:
            if outcome is not None:
                self._outcomes[outcome] = self._outcomes.get(outcome, 0) + 1
            self._last_request = seen

    def _pause(self, seconds: float) -> bool:
        """Sleep, cut short by stop(); True if the simulator is stopping."""
        if seconds > 0:
            return self._stopping.wait(seconds)
        return self._stopping.is_set()

    def _render(self, request: GenerateRequest, fault: faults.FaultSpec, seq: int) -> faults.Reply:
        digest = hashlib.sha256(f"{self.seed}:{request.key}:{seq}".encode()).digest()
        context = faults.Context(
            model=request.model,
            api_version=request.api_version,
            language_tag=request.language_tag,
            language_name=request.language_name,
            variation=request.variation,
            prompt_text=request.text,
            response_id=base64.urlsafe_b64encode(digest[:16]).decode("ascii").rstrip("="),
        )
        if fault.name == "stall" and self._pause(fault.param("seconds")):
            return faults.Reply(action="disconnect")
        if fault.name in faults.IMAGE_ANSWERS:
            rendering = Rendering(
                request.image, request.language_tag, request.language_name, request.variation
            )
            return faults.image_reply(fault, context, rendering, with_text=request.wants_text)
        return faults.fault_reply(fault, context)

    def _send(
        self,
        handler: _Handler,
        reply: faults.Reply,
        headers: tuple[tuple[str, str], ...] = (),
        body_file: Path | None = None,
    ) -> None:
        """Send `reply` (with extra `headers`); `body_file`, when given, streams as the body."""
        try:
            if reply.action == "reset":
                handler.close_connection = True
                connection = handler.connection
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                handler.rfile.close()  # drop the makefile() reference so close() is real
                connection.close()
                return
            if reply.action == "disconnect":
                handler.close_connection = True
                return
            handler.send_response(reply.status)
            if reply.content_type is not None:
                handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Vary", "Origin")
            handler.send_header("Vary", "X-Origin")
            handler.send_header("Vary", "Referer")
            handler.send_header("X-XSS-Protection", "0")
            handler.send_header("X-Frame-Options", "SAMEORIGIN")
            handler.send_header("X-Content-Type-Options", "nosniff")
            elapsed_ms = int((time.monotonic() - handler.started) * 1000)
            handler.send_header("Server-Timing", f"gfet4t7; dur={elapsed_ms}")
            for name, value in headers:
                handler.send_header(name, value)
            length = body_file.stat().st_size if body_file is not None else len(reply.body)
            handler.send_header("Content-Length", str(length))
            if self._stopping.is_set():
                handler.close_connection = True
                handler.send_header("Connection", "close")
            handler.end_headers()
            if body_file is None:
                handler.wfile.write(reply.body)
                return
            with body_file.open("rb") as source:
                for block in iter(lambda: source.read(_STREAM_CHUNK), b""):
                    handler.wfile.write(block)
        except OSError:
            handler.close_connection = True
