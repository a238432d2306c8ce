"""POST /modelslab/webhook/<token> (training stages) and POST /notify (pipelines): answer fast,
queue the work in the store, let the notifier post."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.config import Mode, Settings
from bot.errors import InvalidTrainingId, StoreUnavailable
from bot.ids import validate_training_id
from bot.service.workspaces import hash_token
from bot.store import Store

logger = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 64 * 1024
NOTIFY_WAIT_SECONDS = 10.0
WEBHOOK_PREFIX = "/modelslab/webhook/"


def _training_id(body: dict[str, Any]) -> str:
    for field in ("model_id", "training_id", "id"):
        value = body.get(field)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return validate_training_id(str(value))
    raise InvalidTrainingId("the body has no model_id, training_id or id")


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = json.dumps(value)[:limit]
    return value[:limit] or None


async def _read(request: web.Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(16384):
        size += len(chunk)
        if size > MAX_WEBHOOK_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_WEBHOOK_BODY, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_WEBHOOK_BODY:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_WEBHOOK_BODY, actual_size=request.content_length
        )
    try:
        raw = await asyncio.wait_for(_read(request), timeout=10)
    except asyncio.TimeoutError:
        raise web.HTTPRequestTimeout(text="the body did not arrive in time") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return data


class TrainingRoutes:
    """The webhook and /notify routes of one running bot."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        single_workspace_id: str | None,
        wake: Callable[[], None],
        notify_channel: Callable[[str], Awaitable[str | None]],
    ) -> None:
        self.settings = settings
        self.store = store
        self.single_workspace_id = single_workspace_id
        self.wake = wake
        self.notify_channel = notify_channel

    async def workspace_for_token(self, token: str) -> str | None:
        """The workspace a webhook token belongs to, or None (compared in constant time)."""
        if not token or len(token) > 200:
            return None
        if self.settings.mode is Mode.SINGLE and self.single_workspace_id is not None:
            row = await self.store.workspaces.get(self.single_workspace_id)
            if row is not None and row.webhook_token_hash:
                # Rotated in the Home tab: only the new token works (MODELSLAB_WEBHOOK_TOKEN no more).
                ok = hmac.compare_digest(row.webhook_token_hash, hash_token(token))
                return self.single_workspace_id if ok else None
            expected = self.settings.webhook_token
            if expected and hmac.compare_digest(token.encode(), expected.encode()):
                return self.single_workspace_id
            return None
        # OAuth: a hash lookup; the stored hash is compared again in constant time.
        row = await self.store.workspaces.by_webhook_hash(hash_token(token))
        if row is None or not row.installed or not row.webhook_token_hash:
            return None
        return (
            row.workspace_id
            if hmac.compare_digest(row.webhook_token_hash, hash_token(token))
            else None
        )

    async def handle_webhook(self, request: web.Request) -> web.StreamResponse:
        """A ModelsLab training webhook: 404 for a wrong token, 2xx fast, the rest from the queue."""
        try:
            workspace_id = await self.workspace_for_token(request.match_info.get("token", ""))
        except StoreUnavailable:
            raise web.HTTPServiceUnavailable(text="the bot's database is not answering") from None
        if workspace_id is None:
            raise web.HTTPNotFound()
        body = await _json_body(request)
        try:
            training_id = _training_id(body)
        except InvalidTrainingId as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        stage = body.get("training_status") or body.get("status")
        await self.store.training_events.enqueue(
            workspace_id=workspace_id,
            training_id=training_id,
            stage=_text(stage, 48),
            logs=_text(body.get("logs") or body.get("data"), 2000),
            source="webhook",
        )
        self.wake()
        return web.json_response({"ok": True}, status=202)

    async def handle_notify(self, request: web.Request) -> web.StreamResponse:
        """POST /notify from a pipeline: post (or find) the training's notification."""
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        try:
            workspace_id = await self.workspace_for_token(token)
        except StoreUnavailable:
            raise web.HTTPServiceUnavailable(text="the bot's database is not answering") from None
        if workspace_id is None:
            raise web.HTTPUnauthorized(text="a valid bearer token (the webhook token) is required")
        body = await _json_body(request)
        try:
            training_id = _training_id(body)
        except InvalidTrainingId as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        channel, owner, title = body.get("channel"), body.get("owner"), body.get("title")
        if channel is not None and not (
            isinstance(channel, str) and channel[:1] in "CG" and channel.isalnum()
        ):
            raise web.HTTPBadRequest(text="channel must be a channel ID such as C0123ABCD")
        if owner is not None and not (
            isinstance(owner, str) and owner[:1] in "UW" and owner.isalnum()
        ):
            raise web.HTTPBadRequest(text="owner must be a Slack user ID such as U0123ABCD")
        if title is not None and not isinstance(title, str):
            raise web.HTTPBadRequest(text="title must be text")
        if channel is None and not await self.notify_channel(workspace_id):
            raise web.HTTPBadRequest(text="no channel given and no notification channel configured")
        event_id = await self.store.training_events.enqueue(
            workspace_id=workspace_id,
            training_id=training_id,
            stage=None,
            logs=None,
            source="notify",
            channel_id=channel,
            title=(title or "")[:200] or None,
            owner_id=owner,
        )
        self.wake()
        deadline = time.monotonic() + NOTIFY_WAIT_SECONDS
        while time.monotonic() < deadline:
            note = await self.store.notifications.get(workspace_id, training_id)
            if note is not None:
                return web.json_response(
                    {
                        "ok": True,
                        "training_id": training_id,
                        "channel": note.channel_id,
                        "ts": note.message_ts,
                    }
                )
            done, outcome = await self.store.training_events.result(event_id)
            if done and outcome:
                return web.json_response(
                    {"ok": False, "training_id": training_id, "error": outcome}, status=502
                )
            await asyncio.sleep(0.1)
        return web.json_response(
            {"ok": True, "training_id": training_id, "queued": True}, status=202
        )

    def add_routes(self, app: web.Application) -> None:
        """Attach both routes to the web application."""
        app.router.add_post(WEBHOOK_PREFIX + "{token}", self.handle_webhook)
        app.router.add_post("/notify", self.handle_notify)
