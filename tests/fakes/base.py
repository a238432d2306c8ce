"""What every loopback server in the tests shares: an aiohttp app on 127.0.0.1, port 0."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web

_Server = TypeVar("_Server", bound="FakeServer")


async def serve_on_loopback(app: web.Application, **runner: Any) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on a free 127.0.0.1 port; return its runner (to clean up) and the port."""
    started = web.AppRunner(app, **runner)
    await started.setup()
    await web.TCPSite(started, "127.0.0.1", 0).start()
    return started, int(started.addresses[0][1])


class FakeServer:
    """A fake's lifecycle: ``async with`` starts it on a free port and stops it, held requests too.

    Subclasses add their routes in ``add_routes`` and put handler tasks that may outlive a test
    (hangs, drips, long polls) in ``_held``, so stopping never waits out the shutdown timeout.
    """

    shutdown_timeout = 1.0

    def __init__(self) -> None:
        self._held: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def add_routes(self, app: web.Application) -> None:
        """Route the fake's endpoints on ``app``."""
        raise NotImplementedError

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        self.add_routes(app)
        self._runner, self._port = await serve_on_loopback(
            app, access_log=None, shutdown_timeout=self.shutdown_timeout
        )

    async def closing(self) -> None:
        """Say goodbye to long-lived connections before the requests in flight are ended."""

    async def stop(self) -> None:
        """Stop listening and end every request still in flight."""
        await self.closing()
        # Hanging and dripping handlers would hold the shutdown for its whole timeout.
        for task in list(self._held):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self: _Server) -> _Server:
        """Start the fake."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the fake; if the test passed so far, fail it on what the fake should not have seen."""
        await self.stop()
        if exc_type is None:
            self.verify()

    def verify(self) -> None:
        """Raise if the fake saw something the real service would refuse (nothing, by default)."""

    @property
    def port(self) -> int:
        """The port the fake listens on."""
        assert self._port is not None, "start() the fake first"
        return self._port

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"
