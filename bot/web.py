"""Our HTTP layer: size → UTF-8 → signature → parse, then Bolt; plus health routes."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.errors import StoreUnavailable
from bot.store import Store

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
ReadinessCheck = Callable[[], Awaitable[list[str]]]


class BadRequest(Exception):
    """A request body that cannot be a Slack request."""


def parse_slack_body(text: str, content_type: str) -> dict[str, Any]:
    """Parse a verified body the way Slack sends it; raise BadRequest for anything else."""
    if content_type == "application/json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BadRequest("body is not JSON") from exc
        if not isinstance(data, dict):
            raise BadRequest("JSON body is not an object")
        return data
    if content_type != "application/x-www-form-urlencoded":
        raise BadRequest(f"unsupported content type {content_type or '(none)'}")
    try:
        fields = parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except ValueError as exc:
        raise BadRequest("form body is malformed") from exc
    # Interactivity sends exactly one field, payload=<JSON>; commands send flat fields. Deciding
    # by the field name (not by the substring "payload") keeps commands that mention it.
    if set(fields) == {"payload"}:
        try:
            payload = json.loads(fields["payload"][0])
        except ValueError as exc:
            raise BadRequest("payload is not JSON") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            raise BadRequest("payload has the wrong shape")
        return payload
    return {key: values[0] for key, values in fields.items()}


def _to_aiohttp(status: int, body: str, headers: dict[str, Any]) -> web.Response:
    response = web.Response(status=status, text=body)
    for name, values in headers.items():
        if name.lower() in ("content-length",):
            continue
        value = values[0] if isinstance(values, (list, tuple)) else values
        if name.lower() == "content-type":
            response.content_type = str(value).split(";")[0]
            continue
        response.headers[name] = str(value)
    return response


def create_web_app(
    *,
    bolt_app: AsyncApp | None,
    signing_secret: str | None,
    store: Store,
    readiness_warnings: ReadinessCheck | None = None,
) -> web.Application:
    """Build the aiohttp application serving /slack/events and the health routes."""
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    async def handle_slack_events(request: web.Request) -> web.StreamResponse:
        if bolt_app is None or verifier is None:
            raise web.HTTPNotFound(
                text="Slack events are not served here (no SLACK_SIGNING_SECRET)"
            )
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_BODY, actual_size=request.content_length
            )
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(raw))
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise web.HTTPBadRequest(text="body is not UTF-8") from None
        if not verifier.is_valid(
            body=text,
            timestamp=request.headers.get("X-Slack-Request-Timestamp"),
            signature=request.headers.get("X-Slack-Signature"),
        ):
            raise web.HTTPUnauthorized(text="invalid or stale Slack signature")
        try:
            body = parse_slack_body(text, request.content_type)
        except BadRequest as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        # Already verified: hand Bolt the parsed body the way Socket Mode does, which also skips
        # Bolt's own body parsing (it drops any form body containing the word "payload").
        bolt_request = AsyncBoltRequest(
            body=body,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            mode="socket_mode",
        )
        response = await bolt_app.async_dispatch(bolt_request)
        return _to_aiohttp(response.status, str(response.body or ""), response.headers)

    async def handle_healthz(_: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def handle_readyz(_: web.Request) -> web.StreamResponse:
        try:
            await store.ping()
        except StoreUnavailable as exc:
            return web.json_response({"status": "unavailable", "problems": [str(exc)]}, status=503)
        warnings = await readiness_warnings() if readiness_warnings else []
        return web.json_response({"status": "ready", "warnings": warnings})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/slack/events", handle_slack_events)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    return app
