"""A fake Slack on loopback: the Web API, response_url and Socket Mode (design §5, §8).

One aiohttp app on ``127.0.0.1``, port 0, that answers the Web API methods the bot uses with
Slack's shapes (``/work/shared/slack/payloads.md``), records every call, and can be told to fail
(429 with ``Retry-After``, error codes, 5xx, hangs). ``base_url`` is what slack_sdk's
``AsyncWebClient(base_url=...)`` takes; ``response_url(name)`` gives a ``response_url`` whose posts
are recorded; ``/socket`` is a Socket Mode websocket the test drives envelope by envelope.

The fake is as strict as Slack (design §5, §8): every payload is checked with
``tests/fakes/slack_rules.py`` and one Slack refuses gets Slack's error answer. Every payload that
breaks a rule — refused, or accepted by Slack but misrendered (unescaped text, a broadcast
mention, blocks without a text fallback) — is kept in ``rejections``, and leaving the fake's
``async with`` with rejections the test did not declare (``expect_rejections()``) fails the test
with the problems listed. Trigger ids are issued by the fake and used once within 3 s; a
``response_url`` takes 5 posts within 30 minutes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import secrets
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.base import FakeServer
from tests.fakes.slack_rules import METHODS, ack_problems, error_for, problems_for

__all__ = [
    "ApiCall",
    "FakeSlack",
    "Message",
    "Rejection",
    "Reply",
    "error",
    "hang",
    "rate_limited",
    "server_error",
]

FIRST_TS = 1764201600_000100  # microseconds: "1764201600.000100", the first ts the fake hands out
TS_STEP = 100
TRIGGER_TTL = 3.0  # seconds a trigger_id may be exchanged after it is issued
RESPONSE_URL_POSTS = 5
RESPONSE_URL_TTL = 30 * 60.0
HISTORY_CAP = 15  # items per call for non-Marketplace apps since 2025 (limited_history)
HISTORY_INTERVAL = 60.0  # seconds between two calls of one history method (limited_history)
# Fields Slack takes as JSON; form-encoded callers send them as JSON strings.
JSON_FIELDS = frozenset(
    {"blocks", "attachments", "metadata", "view", "unfurls", "user_auth_blocks"}
)


# --- records -----------------------------------------------------------------------------


@dataclass
class ApiCall:
    """One Web API request the fake received.

    ``args`` merges the query string, form and JSON bodies; JSON-string fields (``blocks``,
    ``metadata``, ``view``, …) are decoded; ``token`` (from ``Authorization: Bearer`` or a
    ``token`` field) is taken out of ``args``. For ``oauth.v2.access`` the Basic-auth credentials
    appear as ``args["client_id"]``/``args["client_secret"]``.
    """

    method: str
    args: dict[str, Any]
    token: str | None
    at: float


@dataclass
class Rejection:
    """A payload that breaks what Slack accepts (design §5).

    ``where``: the method, ``response_url <name>``, ``ack <kind>`` (an HTTP answer the bot gave)
    or ``envelope <kind>`` (a Socket Mode ack). ``answered``: the error the fake answered, or
    ``None`` when Slack accepts the payload and only shows it wrongly.
    """

    where: str
    problems: list[str]
    payload: Any
    answered: str | None

    def describe(self) -> str:
        """The rejection as a few readable lines."""
        answer = f" -> answered {self.answered}" if self.answered else ""
        lines = [f"{self.where}{answer}:"]
        lines += [f"    - {p}" for p in self.problems]
        lines.append(f"    payload: {_short(self.payload, 600)}")
        return "\n".join(lines)


@dataclass
class _Trigger:
    issued: float
    used: bool = False


@dataclass
class _ResponseUrl:
    name: str
    issued: float
    posts: int = 0


@dataclass
class Message:
    """A message in a channel as the fake stores it."""

    channel: str
    ts: str
    text: str
    blocks: list[Any] | None
    thread_ts: str | None
    metadata: dict[str, Any] | None
    user: str | None
    updates: int = 0
    bot_id: str | None = None


@dataclass(frozen=True)
class Reply:
    """One scripted answer that replaces the normal behaviour of a method."""

    status: int = 200
    body: Mapping[str, Any] | None = None
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hang: bool = False


def rate_limited(retry_after: int = 1) -> Reply:
    """HTTP 429 with ``Retry-After`` (seconds) and Slack's ``ratelimited`` body."""
    return Reply(
        status=429,
        body={"ok": False, "error": "ratelimited"},
        headers={"Retry-After": str(retry_after)},
    )


def error(code: str) -> Reply:
    """HTTP 200 ``{"ok": false, "error": code}``."""
    return Reply(body={"ok": False, "error": code})


def server_error(status: int = 500) -> Reply:
    """An HTML 5xx page, as Slack's edge serves it when Slack itself is failing."""
    return Reply(status=status, text=f"<html><body><h1>{status} Server Error</h1></body></html>")


def hang() -> Reply:
    """Never answer (until ``stop()``)."""
    return Reply(hang=True)


@dataclass
class _Socket:
    ws: web.WebSocketResponse
    silent: bool = False


_Handler = Callable[[ApiCall], dict[str, Any]]
HISTORY_METHODS = frozenset({"conversations.history", "conversations.replies"})
_NOT_JSON: dict[str, Any] = {"ok": False, "error": "invalid_payload"}


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


def _ts_window(args: Mapping[str, Any]) -> Callable[[Message], bool]:
    """conversations.history/replies' oldest/latest/inclusive as a predicate on messages."""
    inclusive = _truthy(args.get("inclusive"))
    latest = float(args["latest"]) if args.get("latest") else None
    oldest = float(args["oldest"]) if args.get("oldest") else None

    def in_range(m: Message) -> bool:
        ts = float(m.ts)
        if latest is not None and (ts > latest or (ts == latest and not inclusive)):
            return False
        return oldest is None or ts > oldest or (ts == oldest and inclusive)

    return in_range


def _decode_json_fields(args: dict[str, Any]) -> None:
    for key in JSON_FIELDS & args.keys():
        value = args[key]
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                args[key] = json.loads(value)


def _short(args: Any, limit: int = 160) -> str:
    text = json.dumps(args, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the server --------------------------------------------------------------------------


class FakeSlack(FakeServer):
    """Slack's Web API, response_url and Socket Mode as an aiohttp app on 127.0.0.1, port 0."""

    shutdown_timeout = 0.5

    def __init__(
        self,
        *,
        team_id: str = "T0A1B2C3D",
        bot_user_id: str = "U0BOTUSER",
        bot_token: str = "xoxb-fake-bot-token",
        app_token: str = "xapp-1-fake-app-token",
        bot_id: str = "B0BOT0001",
        app_id: str = "A0APP0001",
        team_name: str = "Acme ML",
        team_domain: str = "acme-ml",
    ) -> None:
        super().__init__()
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_token = bot_token
        self.app_token = app_token
        self.bot_id = bot_id
        self.app_id = app_id
        self.team_name = team_name
        self.team_domain = team_domain

        # What the test configures.
        self.usergroups: dict[str, list[str]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.paid_plan = True
        self.channels_without_bot: set[str] = set()
        self.delay = 0.0
        self.oauth_teams: dict[str, dict[str, Any]] = {}
        self.client_id: str | None = None  # None: any client_id is accepted
        self.client_secret: str | None = None
        self.revoked_tokens: set[str] = set()
        self.usergroup_details: dict[str, dict[str, Any]] = {}  # id -> name/handle overrides
        self.limited_history = False  # Slack's 2025 cap for non-Marketplace apps

        # What the fake records.
        self.calls: list[ApiCall] = []
        self.messages: dict[str, list[Message]] = defaultdict(list)
        self.views: dict[str, dict[str, Any]] = {}
        self.home_tabs: dict[str, dict[str, Any]] = {}
        self.response_posts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.socket_connections = 0
        self.acks: list[dict[str, Any]] = []
        self.rejections: list[Rejection] = []
        self.rejections_expected = False

        self._faults: dict[tuple[str, str | None], list[Reply]] = {}
        self._response_faults: dict[str, list[Reply]] = {}
        self._used_codes: set[str] = set()
        self._next_ts = FIRST_TS
        self._view_counter = 0
        self._clock_offset = 0.0
        self._triggers: dict[str, _Trigger] = {}
        self._trigger_counter = 0
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._history_calls: dict[str, float] = {}
        self._sockets: list[_Socket] = []
        self._changed = asyncio.Condition()
        self._methods: dict[str, _Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.push": self._views_push,
            "oauth.v2.access": self._oauth_v2_access,
            "apps.connections.open": self._apps_connections_open,
        }

    # --- lifecycle -----------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """The Web API, response_urls and the Socket Mode websocket."""
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{name}", self._response)
        app.router.add_post("/response/{name}/{serial}", self._response)
        app.router.add_get("/socket", self._socket)

    async def closing(self) -> None:
        """Close the Socket Mode connections as Slack does when it goes away."""
        for sock in list(self._sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sock.ws.close(code=1001, message=b"server stopping"), 0.5)

    def verify(self) -> None:
        """Fail on payloads Slack refuses or misrenders (unless the test expected them)."""
        self.check_rejections()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/`` for ``AsyncWebClient(base_url=...)``."""
        return f"{self.root_url}/api/"

    @property
    def socket_url(self) -> str:
        """The websocket URL ``apps.connections.open`` hands out."""
        return f"ws://127.0.0.1:{self.port}/socket"

    def response_url(self, name: str = "r1") -> str:
        """A new ``response_url`` whose JSON posts land in ``response_posts[name]``.

        Each call issues another URL, as Slack does per request: each takes
        ``RESPONSE_URL_POSTS`` posts within ``RESPONSE_URL_TTL`` seconds of being issued.
        """
        serial = secrets.token_hex(4)
        self._response_urls[f"{name}/{serial}"] = _ResponseUrl(name, self.now())
        return f"{self.root_url}/response/{name}/{serial}"

    # --- time, triggers, rejections ------------------------------------------------------

    def now(self) -> float:
        """The fake's clock (monotonic seconds, moved on by ``advance``)."""
        return time.monotonic() + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass for trigger ids, response_urls and history rate limits."""
        self._clock_offset += seconds

    def new_trigger_id(self) -> str:
        """Issue a ``trigger_id`` as Slack does with an interaction: usable once, for 3 s."""
        self._trigger_counter += 1
        trigger = f"{int(time.time())}.{self._trigger_counter}.{secrets.token_hex(8)}"
        self._triggers[trigger] = _Trigger(self.now())
        return trigger

    def issue_trigger_id(self, trigger_id: str) -> None:
        """Slack sends a request carrying ``trigger_id`` now: from now it is usable once, for 3 s.

        The harness calls this for every request it sends, as each interaction at Slack comes
        with a trigger of its own (tests may reuse one literal id for several requests).
        """
        self._triggers[trigger_id] = _Trigger(self.now())

    def expect_rejections(self) -> None:
        """This test sends payloads Slack refuses on purpose: ``rejections`` does not fail it."""
        self.rejections_expected = True

    def reject(self, where: str, problems: list[str], payload: Any, answered: str | None) -> None:
        """Record a payload that breaks what Slack accepts (the harness records ack bodies)."""
        self.rejections.append(Rejection(where, list(problems), payload, answered))

    def check_rejections(self) -> None:
        """Fail with every recorded rejection, unless the test declared it expects them."""
        if self.rejections and not self.rejections_expected:
            details = "\n".join(r.describe() for r in self.rejections)
            raise AssertionError(
                f"the fake Slack saw {len(self.rejections)} payload(s) that real Slack refuses "
                f"or misrenders (design §5):\n{details}"
            )

    def _rejections_note(self) -> str:
        if not self.rejections:
            return ""
        return "\nRejected payloads:\n" + "\n".join(r.describe() for r in self.rejections)

    # --- scripting -----------------------------------------------------------------------

    def fail(self, method: str, *replies: Reply, channel: str | None = None) -> None:
        """Answer the next calls of ``method`` (optionally only for ``channel``) with ``replies``.

        Consumed one per call, in order; then the method behaves normally again. Faults for a
        specific channel are used before channel-less ones.
        """
        self._faults.setdefault((method, channel), []).extend(replies)

    def fail_response(self, name: str, *replies: Reply) -> None:
        """Answer the next posts to ``response_url(name)`` with ``replies`` (not recorded as posts)."""
        self._response_faults.setdefault(name, []).extend(replies)

    def revoke(self, token: str) -> None:
        """Every later call with ``token`` answers ``token_revoked``."""
        self.revoked_tokens.add(token)

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        user: str | None = None,
        bot_id: str | None = "B0OTHER01",
        blocks: list[Any] | None = None,
        thread_ts: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        """Seed a message not posted by the bot (an alert from another integration, a person)."""
        message = Message(
            channel=channel,
            ts=self._new_ts(),
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            metadata=metadata,
            user=user,
            bot_id=None if user is not None else bot_id,
        )
        self.messages[channel].append(message)
        return message

    # --- inspection ----------------------------------------------------------------------

    def calls_to(self, method: str) -> list[ApiCall]:
        """The recorded calls of one method, in order."""
        return [call for call in self.calls if call.method == method]

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[ApiCall], bool] | None = None,
    ) -> list[ApiCall]:
        """Wait until ``count`` calls of ``method`` (matching ``where``) arrived; return all that match."""

        def matching() -> list[ApiCall]:
            return [c for c in self.calls_to(method) if where is None or where(c)]

        try:
            await self._wait(lambda: len(matching()) >= count, timeout)
        except asyncio.TimeoutError:
            seen = "\n".join(f"  {c.method} {_short(c.args)}" for c in self.calls) or "  (none)"
            raise AssertionError(
                f"timed out after {timeout}s waiting for {count} {method} call(s)"
                f"{' matching where=' if where else ''}; {len(matching())} arrived. Calls seen:\n{seen}"
                f"{self._rejections_note()}"
            ) from None
        return matching()

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The replies (not the parent) in a thread, oldest first."""
        return [m for m in self.messages.get(channel, []) if m.thread_ts == thread_ts != m.ts]

    def find_message(self, channel: str, ts: str) -> Message | None:
        """The stored message with this ts, if any."""
        return next((m for m in self.messages.get(channel, []) if m.ts == ts), None)

    async def wait_for_response(
        self, name: str, count: int = 1, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` posts reached ``response_url(name)``; return them all."""
        try:
            await self._wait(lambda: len(self.response_posts.get(name, [])) >= count, timeout)
        except asyncio.TimeoutError:
            got = {k: len(v) for k, v in self.response_posts.items()}
            raise AssertionError(
                f"timed out after {timeout}s waiting for {count} post(s) to response_url "
                f"{name!r}; posts so far per name: {got}{self._rejections_note()}"
            ) from None
        return list(self.response_posts[name])

    async def _wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- HTTP plumbing -------------------------------------------------------------------

    def _track(self) -> asyncio.Task[Any]:
        task = asyncio.current_task()
        assert task is not None
        self._held.add(task)
        return task

    async def _parse(self, request: web.Request) -> tuple[str | None, dict[str, Any]]:
        args: dict[str, Any] = dict(request.query)
        raw = await request.read()
        if raw:
            if request.content_type == "application/json":
                with contextlib.suppress(ValueError):
                    body = json.loads(raw)
                    if isinstance(body, dict):
                        args.update(body)
            elif request.content_type in ("application/x-www-form-urlencoded", ""):
                form = await request.post()
                args.update({k: v for k, v in form.items() if isinstance(v, str)})
        _decode_json_fields(args)
        token: str | None = None
        form_token = args.pop("token", None)
        auth = request.headers.get("Authorization", "")
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer" and credentials:
            token = credentials.strip()
        elif scheme.lower() == "basic" and credentials:
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                user, _, password = base64.b64decode(credentials).decode().partition(":")
                args.setdefault("client_id", user)
                args.setdefault("client_secret", password)
        if token is None and isinstance(form_token, str):
            token = form_token
        return token, args

    async def _api(self, request: web.Request) -> web.StreamResponse:
        task = self._track()
        try:
            method = request.match_info["method"]
            token, args = await self._parse(request)
            call = ApiCall(method, args, token, time.monotonic())
            self.calls.append(call)
            await self._notify()
            if self.delay:
                await asyncio.sleep(self.delay)
            fault = self._take_fault(method, args.get("channel"))
            if fault is not None:
                self._check(call, answered=f"scripted HTTP {fault.status}")
                return await self._reply(fault)
            handler = self._methods.get(method)
            if handler is None:
                return web.json_response(self._unknown_method(call))
            if method in METHODS:
                problem = self._token_error(call)
                if problem is None:
                    problem = self._check(call)
                if problem is not None:
                    return web.json_response(problem)
            if self.limited_history and method in HISTORY_METHODS:
                last = self._history_calls.get(method)
                if last is not None and self.now() - last < HISTORY_INTERVAL:
                    return await self._reply(rate_limited(int(HISTORY_INTERVAL)))
                self._history_calls[method] = self.now()
            return web.json_response(handler(call))
        finally:
            self._held.discard(task)

    def _check(self, call: ApiCall, answered: str | None = None) -> dict[str, Any] | None:
        """Slack's answer if it refuses this call's arguments; record every rule it breaks."""
        answer = error_for(call.method, call.args)
        problems = problems_for(call.method, call.args)
        if answer is not None and not problems:
            detail = answer.get("response_metadata", {}).get("messages") or [answer["error"]]
            problems = [str(m) for m in detail]
        if problems:
            code = answered or (str(answer["error"]) if answer is not None else None)
            self.reject(call.method, problems, call.args, code)
        return answer

    def _take_fault(self, method: str, channel: Any) -> Reply | None:
        for key in ((method, channel), (method, None)) if channel else ((method, None),):
            queue = self._faults.get(key)
            if queue:
                return queue.pop(0)
        return None

    async def _reply(self, reply: Reply) -> web.StreamResponse:
        if reply.hang:
            await asyncio.Event().wait()  # until stop() cancels this handler
        if reply.text is not None:
            return web.Response(
                status=reply.status,
                text=reply.text,
                content_type="text/html",
                headers=dict(reply.headers),
            )
        return web.json_response(
            dict(reply.body or {}), status=reply.status, headers=dict(reply.headers)
        )

    async def _response(self, request: web.Request) -> web.StreamResponse:
        task = self._track()
        try:
            name = request.match_info["name"]
            key = f"{name}/{request.match_info.get('serial', '')}"
            raw = await request.read()
            if self.delay:
                await asyncio.sleep(self.delay)
            queue = self._response_faults.get(name)
            if queue:
                return await self._reply(queue.pop(0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"_raw": raw.decode("utf-8", "replace")}
            if not isinstance(body, dict):
                body = {"_raw": body}
            url = self._response_urls.setdefault(key, _ResponseUrl(name, self.now()))
            where = f"response_url {name}"
            if self.now() - url.issued > RESPONSE_URL_TTL:
                self.reject(where, ["the response_url expired (30 minutes)"], body, "expired_url")
                return web.Response(status=404, text="expired_url", content_type="text/plain")
            if url.posts >= RESPONSE_URL_POSTS:
                problem = f"more than {RESPONSE_URL_POSTS} posts to one response_url"
                self.reject(where, [problem], body, "used_url")
                return web.Response(status=404, text="used_url", content_type="text/plain")
            answer = error_for("response_url", body) if "_raw" not in body else _NOT_JSON
            problems = problems_for("response_url", body)
            if answer is not None and not problems:
                problems = [str(answer["error"])]
            if problems:
                code = str(answer["error"]) if answer is not None else None
                self.reject(where, problems, body, code)
            if answer is not None:
                return web.Response(
                    status=400, text=str(answer["error"]), content_type="text/plain"
                )
            url.posts += 1
            self.response_posts[name].append(body)
            await self._notify()
            return web.Response(text="ok", content_type="text/plain")
        finally:
            self._held.discard(task)

    # --- token checks --------------------------------------------------------------------

    def _bot_tokens(self) -> dict[str, dict[str, Any]]:
        """Every bot token the fake knows, with the team it belongs to."""
        tokens: dict[str, dict[str, Any]] = {
            self.bot_token: {
                "team_id": self.team_id,
                "team_name": self.team_name,
                "bot_user_id": self.bot_user_id,
            }
        }
        for team in self.oauth_teams.values():
            if team.get("bot_token"):
                tokens[str(team["bot_token"])] = team
        return tokens

    def _token_error(self, call: ApiCall, *, app_level: bool = False) -> dict[str, Any] | None:
        token = call.token
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token in self.revoked_tokens:
            return {"ok": False, "error": "token_revoked"}
        if app_level:
            if token == self.app_token:
                return None
            wrong_type = token in self._bot_tokens()
        else:
            if token in self._bot_tokens():
                return None
            wrong_type = token == self.app_token
        return {"ok": False, "error": "not_allowed_token_type" if wrong_type else "invalid_auth"}

    # --- methods -------------------------------------------------------------------------

    def _unknown_method(self, call: ApiCall) -> dict[str, Any]:
        return {"ok": False, "error": "unknown_method", "req_method": call.method}

    def _new_ts(self) -> str:
        micros = self._next_ts
        self._next_ts += TS_STEP
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _message_dict(self, m: Message, *, with_metadata: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "text": m.text, "ts": m.ts}
        if m.user is not None:
            out["user"] = m.user
        if m.bot_id is not None:
            out["bot_id"] = m.bot_id
            if m.user is None:
                out["subtype"] = "bot_message"
        if m.bot_id == self.bot_id:
            out["app_id"] = self.app_id
        out["team"] = self.team_id
        if m.blocks is not None:
            out["blocks"] = m.blocks
        replies = self.thread(m.channel, m.ts)
        if m.thread_ts is not None and m.thread_ts != m.ts:
            out["thread_ts"] = m.thread_ts
            parent = self.find_message(m.channel, m.thread_ts)
            if parent is not None and parent.user is not None:
                out["parent_user_id"] = parent.user
        elif replies:
            out["thread_ts"] = m.ts
            out["reply_count"] = len(replies)
            out["reply_users_count"] = len({r.user or r.bot_id for r in replies})
            out["latest_reply"] = replies[-1].ts
            out["reply_users"] = sorted({r.user or r.bot_id or "" for r in replies})
        if m.updates:
            out["edited"] = {"user": m.user, "ts": m.ts}
        if with_metadata and m.metadata is not None:
            out["metadata"] = m.metadata
        return out

    def _auth_test(self, call: ApiCall) -> dict[str, Any]:
        problem = self._token_error(call)
        if problem:
            return problem
        team = self._bot_tokens()[call.token or ""]
        team_id = str(team.get("team_id", self.team_id))
        return {
            "ok": True,
            "url": f"https://{self.team_domain}.slack.com/",
            "team": team.get("team_name", self.team_name),
            "user": "cancel-training-bot",
            "team_id": team_id,
            "user_id": team.get("bot_user_id", self.bot_user_id),
            "bot_id": team.get("bot_id", self.bot_id),
            "is_enterprise_install": bool(team.get("is_enterprise_install", False)),
        }

    def _channel_error(self, channel: Any) -> dict[str, Any] | None:
        if not isinstance(channel, str) or not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel in self.channels_without_bot:
            return {"ok": False, "error": "not_in_channel"}
        return None

    def _chat_post_message(self, call: ApiCall) -> dict[str, Any]:
        args = call.args
        problem = self._token_error(call) or self._channel_error(args.get("channel"))
        if problem:
            return problem
        if not args.get("text") and not args.get("blocks") and not args.get("attachments"):
            return {"ok": False, "error": "no_text"}
        thread_ts = args.get("thread_ts") or None
        message = Message(
            channel=args["channel"],
            ts=self._new_ts(),
            text=str(args.get("text") or ""),
            blocks=args.get("blocks") or None,
            thread_ts=str(thread_ts) if thread_ts else None,
            metadata=args.get("metadata") or None,
            user=self.bot_user_id,
            bot_id=self.bot_id,
        )
        self.messages[message.channel].append(message)
        return {
            "ok": True,
            "channel": message.channel,
            "ts": message.ts,
            "message": self._message_dict(message),
        }

    def _chat_update(self, call: ApiCall) -> dict[str, Any]:
        args = call.args
        problem = self._token_error(call) or self._channel_error(args.get("channel"))
        if problem:
            return problem
        message = self.find_message(args["channel"], str(args.get("ts", "")))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if message.user != self.bot_user_id:
            return {"ok": False, "error": "cant_update_message"}
        if "text" in args:
            message.text = str(args["text"] or "")
        if "blocks" in args:
            message.blocks = args["blocks"]
        if "metadata" in args:
            message.metadata = args["metadata"] or None
        message.updates += 1
        return {
            "ok": True,
            "channel": message.channel,
            "ts": message.ts,
            "text": message.text,
            "message": self._message_dict(message),
        }

    def _chat_post_ephemeral(self, call: ApiCall) -> dict[str, Any]:
        args = call.args
        problem = self._token_error(call)
        if not problem and not args.get("channel"):
            problem = {"ok": False, "error": "channel_not_found"}
        if not problem and not args.get("user"):
            problem = {"ok": False, "error": "user_not_found"}
        if problem:
            return problem
        return {"ok": True, "message_ts": self._new_ts()}

    def _conversations_replies(self, call: ApiCall) -> dict[str, Any]:
        args = call.args
        problem = self._token_error(call) or self._channel_error(args.get("channel"))
        if problem:
            return problem
        with_metadata = _truthy(args.get("include_all_metadata"))
        parent = self.find_message(args["channel"], str(args.get("ts", "")))
        if parent is None:
            return {"ok": False, "error": "thread_not_found"}
        if parent.thread_ts not in (None, parent.ts):
            found = [parent]  # a reply's ts: Slack answers with just that message
        else:
            # The parent comes first whatever the window; oldest/latest select the replies.
            in_range = _ts_window(args)
            found = [parent, *(m for m in self.thread(parent.channel, parent.ts) if in_range(m))]
        limit = self._history_limit(args, 1000)
        return {
            "ok": True,
            "messages": [self._message_dict(m, with_metadata=with_metadata) for m in found][:limit],
            "has_more": len(found) > limit,
            "response_metadata": {"next_cursor": ""},
        }

    def _conversations_history(self, call: ApiCall) -> dict[str, Any]:
        args = call.args
        problem = self._token_error(call) or self._channel_error(args.get("channel"))
        if problem:
            return problem
        with_metadata = _truthy(args.get("include_all_metadata"))
        in_range = _ts_window(args)
        top = [
            m
            for m in self.messages.get(args["channel"], [])
            if m.thread_ts in (None, m.ts) and in_range(m)
        ]
        top.reverse()
        limit = self._history_limit(args, 100)
        return {
            "ok": True,
            "messages": [self._message_dict(m, with_metadata=with_metadata) for m in top[:limit]],
            "has_more": len(top) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _history_limit(self, args: Mapping[str, Any], default: int) -> int:
        limit = int(args.get("limit") or default)
        return min(limit, HISTORY_CAP) if self.limited_history else limit

    def _chat_get_permalink(self, call: ApiCall) -> dict[str, Any]:
        args = call.args
        problem = self._token_error(call) or self._channel_error(args.get("channel"))
        if problem:
            return problem
        channel = str(args["channel"])
        message = self.find_message(channel, str(args["message_ts"]))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        link = self.permalink(channel, message.ts)
        if message.thread_ts not in (None, message.ts):
            link += f"?thread_ts={message.thread_ts}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": link}

    def permalink(self, channel: str, ts: str) -> str:
        """The link Slack gives for a message: ``https://<domain>.slack.com/archives/C…/p…``."""
        return f"https://{self.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"

    def _usergroups_list(self, call: ApiCall) -> dict[str, Any]:
        problem = self._token_error(call)
        if problem:
            return problem
        if not self.paid_plan:
            return {"ok": False, "error": "plan_upgrade_required"}
        with_users = _truthy(call.args.get("include_users"))
        with_count = _truthy(call.args.get("include_count"))
        groups = []
        for group_id, members in self.usergroups.items():
            handle = group_id.lower()
            group: dict[str, Any] = {
                "id": group_id,
                "team_id": self.team_id,
                "is_usergroup": True,
                "name": handle,
                "description": "",
                "handle": handle,
                "is_external": False,
                "date_create": 1446598059,
                "date_update": 1446670362,
                "date_delete": 0,
                "auto_type": None,
                "created_by": "U0ALICE01",
                "updated_by": "U0ALICE01",
                "deleted_by": None,
                "prefs": {"channels": [], "groups": []},
            }
            group.update(self.usergroup_details.get(group_id, {}))
            if with_users:
                group["users"] = list(members)
            if with_count:
                group["user_count"] = len(members)
            groups.append(group)
        return {"ok": True, "usergroups": groups}

    def _usergroups_users_list(self, call: ApiCall) -> dict[str, Any]:
        problem = self._token_error(call)
        if problem:
            return problem
        if not self.paid_plan:
            return {"ok": False, "error": "plan_upgrade_required"}
        group = call.args.get("usergroup")
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def _users_info(self, call: ApiCall) -> dict[str, Any]:
        problem = self._token_error(call)
        if problem:
            return problem
        user_id = call.args.get("user")
        if not isinstance(user_id, str) or not user_id:
            return {"ok": False, "error": "user_not_found"}
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": user_id.lower(),
            "real_name": user_id,
            "deleted": False,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": False,
            "is_app_user": False,
            "tz": "Europe/Berlin",
            "profile": {"real_name": user_id, "display_name": user_id.lower()},
        }
        user.update(self.users.get(user_id, {}))
        return {"ok": True, "user": user}

    def _view_answer(self, view: Any, view_id: str) -> dict[str, Any]:
        shown = dict(view) if isinstance(view, dict) else {}
        shown.update(
            {
                "id": view_id,
                "team_id": self.team_id,
                "app_id": self.app_id,
                "bot_id": self.bot_id,
                "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
                "state": {"values": {}},
            }
        )
        shown.setdefault("private_metadata", "")
        shown.setdefault("callback_id", "")
        self.views[view_id] = shown
        return {"ok": True, "view": shown}

    def _new_view_id(self) -> str:
        self._view_counter += 1
        return f"V0VIEW{self._view_counter:04d}"

    def _views_publish(self, call: ApiCall) -> dict[str, Any]:
        problem = self._token_error(call)
        if problem:
            return problem
        user_id = str(call.args["user_id"])
        view = call.args["view"]
        previous = self.home_tabs.get(user_id)
        answer = self._view_answer(view, previous["id"] if previous else self._new_view_id())
        self.home_tabs[user_id] = answer["view"]
        return answer

    def _exchange_trigger(self, call: ApiCall) -> dict[str, Any] | None:
        """Slack's answer to a trigger_id it did not issue, issued over 3 s ago, or used."""
        trigger_id = str(call.args.get("trigger_id") or "")
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            code, why = "invalid_trigger_id", "a trigger_id Slack never issued"
        elif trigger.used:
            code, why = "exchanged_trigger_id", "the trigger_id was already used once"
        elif self.now() - trigger.issued > TRIGGER_TTL:
            age = self.now() - trigger.issued
            code, why = "expired_trigger_id", f"the trigger_id was used {age:.1f} s after issue"
        else:
            trigger.used = True
            return None
        self.reject(call.method, [f"{why} ({trigger_id!r})"], call.args, code)
        return {"ok": False, "error": code}

    def _views_open(self, call: ApiCall) -> dict[str, Any]:
        problem = self._token_error(call) or self._exchange_trigger(call)
        if problem:
            return problem
        return self._view_answer(call.args["view"], self._new_view_id())

    def _views_push(self, call: ApiCall) -> dict[str, Any]:
        problem = self._token_error(call) or self._exchange_trigger(call)
        if problem:
            return problem
        return self._view_answer(call.args["view"], self._new_view_id())

    def _views_update(self, call: ApiCall) -> dict[str, Any]:
        problem = self._token_error(call)
        if problem:
            return problem
        view = call.args.get("view")
        view_id = call.args.get("view_id")
        external_id = call.args.get("external_id")
        if not isinstance(view_id, str) and isinstance(external_id, str):
            view_id = next(
                (k for k, v in self.views.items() if v.get("external_id") == external_id), None
            )
        if not isinstance(view_id, str) or view_id not in self.views:
            return {"ok": False, "error": "not_found"}
        hash_ = call.args.get("hash")
        if hash_ and hash_ != self.views[view_id].get("hash"):
            return {"ok": False, "error": "hash_conflict"}
        return self._view_answer(view, view_id)

    def _oauth_v2_access(self, call: ApiCall) -> dict[str, Any]:
        args = call.args
        if not args.get("client_id"):
            return {"ok": False, "error": "invalid_client_id"}
        if self.client_id is not None and args["client_id"] != self.client_id:
            return {"ok": False, "error": "invalid_client_id"}
        if self.client_secret is not None and args.get("client_secret") != self.client_secret:
            return {"ok": False, "error": "bad_client_secret"}
        code = args.get("code")
        if not isinstance(code, str) or code not in self.oauth_teams or code in self._used_codes:
            return {"ok": False, "error": "invalid_code"}
        self._used_codes.add(code)  # codes are single use, as at Slack
        team = self.oauth_teams[code]
        authed = team.get("authed_user", "U0ALICE01")
        authed_user = dict(authed) if isinstance(authed, dict) else {"id": str(authed)}
        return {
            "ok": True,
            "access_token": team.get("bot_token", "xoxb-fake-installed-token"),
            "token_type": "bot",
            "scope": team.get(
                "scope", "commands,chat:write,chat:write.public,usergroups:read,users:read"
            ),
            "bot_user_id": team.get("bot_user_id", self.bot_user_id),
            "app_id": self.app_id,
            "team": {"id": team.get("team_id", self.team_id), "name": team.get("team_name", "")},
            "enterprise": team.get("enterprise"),
            "is_enterprise_install": bool(team.get("is_enterprise_install", False)),
            "authed_user": authed_user,
        }

    def _apps_connections_open(self, call: ApiCall) -> dict[str, Any]:
        problem = self._token_error(call, app_level=True)
        if problem:
            return problem
        return {"ok": True, "url": self.socket_url}

    # --- Socket Mode ---------------------------------------------------------------------

    def _live_sockets(self) -> list[_Socket]:
        return [s for s in self._sockets if not s.silent and not s.ws.closed]

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        task = self._track()
        ws = web.WebSocketResponse(autoping=False)  # pings are answered below, unless silent
        sock = _Socket(ws)
        try:
            await ws.prepare(request)
            self._sockets.append(sock)
            self.socket_connections += 1
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self._live_sockets()),
                    "debug_info": {
                        "host": "applink-fake-1",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
            )
            await self._notify()
            async for msg in ws:
                if sock.silent:
                    continue
                if msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    with contextlib.suppress(ValueError):
                        data = json.loads(msg.data)
                        if isinstance(data, dict) and "envelope_id" in data:
                            self.acks.append(data)
                            await self._notify()
            return ws
        finally:
            if sock in self._sockets:
                self._sockets.remove(sock)
            self._held.discard(task)
            await self._notify()

    async def socket_connected(self, timeout: float = 5.0, *, count: int | None = None) -> None:
        """Wait until a client holds an open (non-silent) socket; with ``count``, until that many
        connections have been made in all (for reconnect tests)."""

        def ready() -> bool:
            enough = count is None or self.socket_connections >= count
            return enough and bool(self._live_sockets())

        try:
            await self._wait(ready, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"no Socket Mode client connected within {timeout}s "
                f"(connections so far: {self.socket_connections}, "
                f"apps.connections.open calls: {len(self.calls_to('apps.connections.open'))})"
            ) from None

    async def send_envelope(
        self,
        type_: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = True,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Send an envelope on the newest live socket; return the app's ack for it.

        ``retry_attempt``/``retry_reason`` are added for ``events_api`` envelopes, as Slack does.
        """
        await self.socket_connected(timeout)
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": type_,
            "accepts_response_payload": accepts_response_payload,
            "payload": payload,
        }
        if type_ == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason
        already = sum(1 for a in self.acks if a.get("envelope_id") == envelope_id)
        if isinstance(payload.get("trigger_id"), str):
            self.issue_trigger_id(payload["trigger_id"])
        await self._live_sockets()[-1].ws.send_json(envelope)

        def acked() -> list[dict[str, Any]]:
            return [a for a in self.acks if a.get("envelope_id") == envelope_id]

        try:
            await self._wait(lambda: len(acked()) > already, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"the app did not ack envelope {envelope_id} ({type_}) within {timeout}s; "
                f"acks seen: {[a.get('envelope_id') for a in self.acks]}"
            ) from None
        ack = acked()[-1]
        problems = ack_problems(payload, ack.get("payload"))
        if problems:
            kind = payload.get("type") or type_
            self.reject(f"envelope {kind}", problems, ack.get("payload"), None)
        return ack

    async def disconnect_socket(self, reason: str = "refresh_requested") -> None:
        """Ask every live client to reconnect, as Slack does before it recycles a socket."""
        for sock in self._live_sockets():
            await sock.ws.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake-1"}}
            )

    async def drop_socket(self) -> None:
        """Close every socket from the server side (a close frame, no disconnect message)."""
        for sock in list(self._sockets):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sock.ws.close(code=1011, message=b"fake dropped"), 1.0)

    def go_silent(self) -> None:
        """The sockets open now stop answering: no pongs, no acks read, nothing sent.

        The TCP connections stay open. Connections made afterwards behave normally.
        """
        for sock in self._sockets:
            sock.silent = True
