"""A fake ModelsLab on loopback: records every call and answers with scripted faults (design §8)."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from aiohttp import web

from tests.fakes.base import FakeServer

__all__ = [
    "Call",
    "FakeModelsLab",
    "Reply",
    "drip",
    "error",
    "framework_404",
    "hang",
    "html",
    "json_404",
    "ok",
    "rate_limited",
    "reset",
    "route_404_html",
    "server_error",
    "truncated_json",
    "unauthorized",
    "v6_finished",
    "v6_not_found",
    "v6_stopped",
]

V3 = "/api/v3"
V6 = "/api/v6"
SPELLINGS = ("cancle_training", "cancel_training")

Mode = Literal["answer", "hang", "drip", "reset"]
T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    mode: Mode = "answer"
    interval: float = 0.5


@dataclass
class Call:
    """One request the fake received."""

    path: str
    json: Any
    headers: dict[str, str]
    at: float

    @property
    def training_id(self) -> str | None:
        """The id from the path (v3) or the body (v6 stop)."""
        if self.path == f"{V6}/trainer/stop":
            value = self.json.get("training_id") if isinstance(self.json, dict) else None
            return value if isinstance(value, str) else None
        return self.path.rsplit("/", 1)[-1] if self.path.count("/") >= 4 else None

    @property
    def key(self) -> str | None:
        """The key the client sent in the body."""
        value = self.json.get("key") if isinstance(self.json, dict) else None
        return value if isinstance(value, str) else None


# --- reply helpers -----------------------------------------------------------------------


def _json(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status=status, body=json.dumps(payload).encode(), headers=dict(headers or {}))


def ok(messege: Any = "Training cancelled successfully", *, field: str = "messege") -> Reply:
    """200 success envelope (``field="message"`` for the other spelling)."""
    return _json({"status": "success", field: messege})


def error(messege: Any, status: int = 200, *, field: str = "messege") -> Reply:
    """Error envelope, by default with HTTP 200 as ModelsLab often sends it."""
    return _json({"status": "error", field: messege}, status)


def json_404(messege: str = "Training not found") -> Reply:
    """ModelsLab's own 404: the training does not exist."""
    return _json({"status": "error", "messege": messege, "code": 404}, 404)


def route_404_html() -> Reply:
    """nginx's 404 for a route the server does not have."""
    body = (
        b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
        b"<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n"
        b"</body>\r\n</html>\r\n"
    )
    return Reply(status=404, body=body, content_type="text/html")


def framework_404() -> Reply:
    """A web framework's JSON 404 for a missing route (not ModelsLab's envelope)."""
    return _json({"detail": "Not Found"}, 404)


def unauthorized() -> Reply:
    """401 for a bad key."""
    return _json({"status": "error", "messege": "Invalid Api Key"}, 401)


def rate_limited(retry_after: float = 30, *, header: bool = True, body: bool = True) -> Reply:
    """429 with the delay in a Retry-After header and/or ``retry_after`` in the body."""
    payload: dict[str, Any] = {"status": "error", "messege": "Too many requests, slow down"}
    if body:
        payload["retry_after"] = retry_after
    headers = {"Retry-After": f"{retry_after:g}"} if header else {}
    return _json(payload, 429, headers)


def server_error(code: int = 500) -> Reply:
    """A 5xx page as a proxy serves it."""
    body = f"<html><body><h1>{code} Server Error</h1></body></html>".encode()
    return Reply(status=code, body=body, content_type="text/html")


def html(status: int = 200) -> Reply:
    """An HTML page (a captive portal or a CDN challenge)."""
    body = b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body></body></html>"
    return Reply(status=status, body=body, content_type="text/html")


def truncated_json() -> Reply:
    """A complete HTTP answer whose JSON body is cut short."""
    return Reply(body=b'{"status": "success", "messe')


def hang() -> Reply:
    """Never answer (until the fake stops)."""
    return Reply(mode="hang")


def drip(interval: float = 0.5) -> Reply:
    """Send the headers, then one byte every ``interval`` seconds, forever."""
    return Reply(mode="drip", interval=interval)


def reset() -> Reply:
    """Close the connection abruptly without answering."""
    return Reply(mode="reset")


def v6_stopped() -> Reply:
    """v6 stop succeeded."""
    return _json({"status": "success", "message": "training stopped"})


def v6_not_found() -> Reply:
    """v6 stop for an unknown id."""
    return _json({"status": "error", "message": "Training request not found."})


def v6_finished() -> Reply:
    """v6 stop for a training that already ended."""
    return _json({"status": "error", "message": "Training has already finished."})


def _default_status() -> Reply:
    return _json({"status": "success", "messege": "training_started", "data": "ETA : 10 minutes"})


# --- the server --------------------------------------------------------------------------


class FakeModelsLab(FakeServer):
    """ModelsLab's v3 and v6 training endpoints as an aiohttp app on 127.0.0.1, port 0."""

    def __init__(
        self,
        *,
        routes: Iterable[str] = SPELLINGS,
        missing_route: Reply | None = None,
        valid_keys: Iterable[str] = ("good-key",),
        delay: float = 0.0,
    ) -> None:
        super().__init__()
        self.routes = frozenset(routes)
        self.missing_route = missing_route or route_404_html()
        self.valid_keys: set[str] = set(valid_keys)
        self.delay = delay
        self.calls: list[Call] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._status_scripts: dict[str, list[Reply]] = {}
        self._changed = asyncio.Condition()

    # --- lifecycle -----------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """ModelsLab's routes; anything else is a 404 recorded as a call."""
        app.router.add_post(
            V3 + "/{spelling:cancle_training|cancel_training}/{tid}", self._v3_cancel
        )
        app.router.add_post(V6 + "/trainer/stop", self._v6_stop)
        app.router.add_post(V3 + "/finetune_list", self._finetune_list)
        app.router.add_post(V3 + "/fine_tune_status/{tid}", self._status)
        app.router.add_post(V6 + "/trainer/status/{tid}", self._status)
        app.router.add_route("*", "/{tail:.*}", self._unknown)

    @property
    def base_url(self) -> str:
        """The v3 base URL, as MODELSLAB_API_URL."""
        return self.root_url + V3

    @property
    def v6_url(self) -> str:
        """The v6 base URL."""
        return self.root_url + V6

    # --- scripting and inspection --------------------------------------------------------

    def script(self, training_id: str, *replies: Reply) -> None:
        """Answer cancel/stop calls for ``training_id`` with these replies in order; the last repeats."""
        self._scripts[training_id] = list(replies)

    def script_status(self, training_id: str, *replies: Reply) -> None:
        """Answer status calls for ``training_id`` with these replies in order; the last repeats."""
        self._status_scripts[training_id] = list(replies)

    def cancel_calls(self, training_id: str | None = None) -> list[Call]:
        """Calls to either v3 cancel spelling or the v6 stop, optionally for one id."""
        found = []
        for call in self.calls:
            is_cancel = call.path == f"{V6}/trainer/stop" or any(
                call.path.startswith(f"{V3}/{s}/") for s in SPELLINGS
            )
            if is_cancel and (training_id is None or call.training_id == training_id):
                found.append(call)
        return found

    async def wait_for_calls(self, n: int, timeout: float = 5.0) -> list[Call]:
        """Wait until at least ``n`` cancel calls have arrived; return them."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.cancel_calls()) >= n), timeout
            )
        return self.cancel_calls()

    # --- handlers ------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.calls.append(Call(request.path, body, dict(request.headers), time.monotonic()))
        async with self._changed:
            self._changed.notify_all()
        return body

    def _key_refused(self, body: Any) -> Reply | None:
        key = body.get("key") if isinstance(body, dict) else None
        return None if key in self.valid_keys else unauthorized()

    @staticmethod
    def _next(scripts: dict[str, list[Reply]], training_id: str) -> Reply | None:
        replies = scripts.get(training_id)
        if not replies:
            return None
        return replies.pop(0) if len(replies) > 1 else replies[0]

    async def _v3_cancel(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if request.match_info["spelling"] not in self.routes:
            return await self._answer(request, self.missing_route)
        reply = (
            self._key_refused(body) or self._next(self._scripts, request.match_info["tid"]) or ok()
        )
        return await self._answer(request, reply)

    async def _v6_stop(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        training_id = body.get("training_id") if isinstance(body, dict) else None
        if not isinstance(training_id, str):
            reply = _json({"status": "error", "message": "The training id field is required."}, 422)
        else:
            reply = (
                self._key_refused(body) or self._next(self._scripts, training_id) or v6_stopped()
            )
        return await self._answer(request, reply)

    async def _finetune_list(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        reply = self._key_refused(body) or _json(
            {"status": "success", "messege": "Fine tune list", "data": []}
        )
        return await self._answer(request, reply)

    async def _status(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        tid = request.match_info["tid"]
        reply = (
            self._key_refused(body) or self._next(self._status_scripts, tid) or _default_status()
        )
        return await self._answer(request, reply)

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        return await self._answer(request, route_404_html())

    async def _answer(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if self.delay:
            await asyncio.sleep(self.delay)
        if reply.mode == "hang":
            await self._hold(asyncio.Event().wait())
        if reply.mode == "reset":
            return self._reset(request)
        if reply.mode == "drip":
            return await self._hold(self._drip(request, reply.interval))
        return web.Response(
            status=reply.status,
            body=reply.body,
            headers={"Content-Type": reply.content_type, **reply.headers},
        )

    async def _hold(self, awaitable: Awaitable[T]) -> T:
        """Run a never-ending answer so that stop() can cancel it."""
        task = asyncio.current_task()
        assert task is not None
        self._held.add(task)
        try:
            return await awaitable
        finally:
            self._held.discard(task)

    @staticmethod
    async def _drip(request: web.Request, interval: float) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            while True:
                await response.write(b" ")
                await asyncio.sleep(interval)
        except ConnectionError:
            return response

    @staticmethod
    def _reset(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0 turns the close into a TCP RST, like a crashing proxy.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        # Writing to the aborted transport fails quietly inside aiohttp.
        return web.Response(status=200)
