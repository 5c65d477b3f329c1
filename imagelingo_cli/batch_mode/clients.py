"""The Batch API client each job talks to, opened once per connection for a whole command and
closed with it: Gemini with the present key, or the simulator a job was made with."""

from __future__ import annotations

from contextlib import AsyncExitStack
from types import TracebackType

from imagelingo_cli.gemini_batch import BatchClient
from imagelingo_cli.runner import DEMO_SEED, Connection, endpoint, recorded_connection


class BatchClients:
    """`async with BatchClients(present) as clients: await clients.get(backend, base_url)`.

    `present` is the connection of the command's flags and environment: its key and base URL
    win over what a job recorded, as for `retry-failed`. A simulator backend is started in
    this process (a job made by another process's simulator is gone with it)."""

    def __init__(self, present: Connection, *, seed: int = DEMO_SEED) -> None:
        self.present = present
        self.seed = seed
        self._stack = AsyncExitStack()
        self._open: dict[tuple[str, str | None], BatchClient] = {}

    async def get(self, backend: str, base_url: str | None) -> BatchClient:
        """SetupError when it cannot be reached at all (no key, a bad base URL)."""
        connection = recorded_connection(backend, base_url, self.present, seed=self.seed)
        key = (backend, None if connection.simulate else connection.base_url)
        if key not in self._open:
            api_key, url = await self._stack.enter_async_context(endpoint(connection))
            client = BatchClient(api_key, base_url=url, timeout=connection.timeout)
            self._stack.push_async_callback(client.aclose)
            self._open[key] = client
        return self._open[key]

    async def __aenter__(self) -> BatchClients:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)
