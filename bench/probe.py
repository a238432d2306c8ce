"""``python -m bench.probe serve …``: ``python -m bot serve …`` with timing probes on the ack path.

Used by ``python -m bench --scenarios trace`` to show where the milliseconds of one ack go. The
probes are installed from outside (nothing in ``bot/`` knows about them): an aiohttp middleware in
front of ``POST /slack/events`` starts a record per request, and wrappers around Bolt's dispatch
and ``ack()``, the listener runner, the access policy, the key lookup, the cancellation service,
``respond()`` and every public coroutine of ``bot.store.Store`` and of its table families add
marks and timed calls to it while that request's context is active (Bolt's listener task inherits
it). One JSON line per request goes to ``$BENCH_PROBE_OUT``. The wrappers cost a few microseconds
per call, so a probed server is slightly slower than the measured one; use the probed run for
proportions only.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
import os
import sys
import time
import typing
from collections.abc import Awaitable, Callable
from typing import Any

TRACE: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "bench_probe", default=None
)


def _mark(name: str) -> None:
    record = TRACE.get()
    if record is not None and name not in record["marks"]:
        record["marks"][name] = time.perf_counter() - record["t0"]


def _timed(name: str, func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        record = TRACE.get()
        if record is None:
            return await func(*args, **kwargs)
        started = time.perf_counter()
        try:
            return await func(*args, **kwargs)
        finally:
            now = time.perf_counter()
            record["calls"].append([name, started - record["t0"], now - started])

    return wrapper


def _marking(name: str, func: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        _mark(name)
        try:
            return await func(*args, **kwargs)
        finally:
            _mark(name + "_end")

    return wrapper


def install(out_path: str) -> None:
    """Patch the probes in before the bot builds its application."""
    from aiohttp import web
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.context.ack.async_ack import AsyncAck
    from slack_bolt.context.respond.async_respond import AsyncRespond
    from slack_bolt.listener.async_listener import AsyncCustomListener

    import bot.runtime as server
    from bot.service.access import AccessPolicy
    from bot.service.cancellation import CancellationService
    from bot.service.workspaces import Workspaces
    from bot.store import Store

    out = open(out_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    @web.middleware
    async def probe(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/slack/events":
            return await handler(request)
        record: dict[str, Any] = {"t0": time.perf_counter(), "marks": {}, "calls": []}
        token = TRACE.set(record)
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            record["end"] = time.perf_counter() - record["t0"]
            TRACE.reset(token)
            out.write(json.dumps(record) + "\n")

    original = server.create_web_app

    def create_web_app(*args: Any, **kwargs: Any) -> web.Application:
        app = original(*args, **kwargs)
        app.middlewares.insert(0, probe)
        return app

    server.create_web_app = create_web_app  # type: ignore[assignment]

    AsyncApp.async_dispatch = _marking("dispatch", AsyncApp.async_dispatch)  # type: ignore[method-assign]
    AsyncCustomListener.run_ack_function = _marking(  # type: ignore[method-assign]
        "listener", AsyncCustomListener.run_ack_function
    )
    AsyncAck.__call__ = _marking("ack", AsyncAck.__call__)  # type: ignore[method-assign]
    AsyncRespond.__call__ = _timed("respond()", AsyncRespond.__call__)  # type: ignore[method-assign]
    AccessPolicy.check = _timed("AccessPolicy.check", AccessPolicy.check)  # type: ignore[method-assign]
    Workspaces.key_for = _timed("Workspaces.key_for", Workspaces.key_for)  # type: ignore[method-assign]
    CancellationService.request = _timed(  # type: ignore[method-assign]
        "CancellationService.request", CancellationService.request
    )
    families = [("store", Store)]
    families += [(f"store.{name}", cls) for name, cls in typing.get_type_hints(Store).items()]
    for label, cls in families:
        for name, func in inspect.getmembers(cls, inspect.iscoroutinefunction):
            if not name.startswith("_"):
                setattr(cls, name, _timed(f"{label}.{name}", func))


def main() -> int:
    out_path = os.environ.get("BENCH_PROBE_OUT")
    if out_path:
        install(out_path)
    from bot.cli import main as bot_main

    return bot_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
