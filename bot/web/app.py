"""The verified /slack/events chain: size → UTF-8 → signature → parse, then Bolt."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from aiohttp import hdrs, web
from slack_bolt.async_app import AsyncApp
from slack_bolt.request import payload_utils
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier
from yarl import URL

from bot.metrics import Metrics
from bot.slack.context import RECEIVED_AT
from bot.store import Store
from bot.timeouts import timeout
from bot.web.probes import ReadinessCheck, add_probe_routes

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
# Slack sends the whole body at once and gives up after 3 s; a body still trickling in after this
# long is not Slack's, and must not hold a handler (and its connection) open for ever.
BODY_TIMEOUT = 10.0


class BadRequest(Exception):
    """A request body that cannot be a Slack request."""


# Fields whose shape Bolt's context extraction and our listeners rely on: a signed body that
# breaks these is malformed (400), not a reason for a 500 inside Bolt.
_OBJECT_OR_ID_FIELDS = ("team", "user", "enterprise", "channel")
_OBJECT_FIELDS = ("event", "view", "container", "message")
_LIST_OF_OBJECT_FIELDS = ("authorizations", "actions")


def _load_json_object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[…" nested too deep
        raise BadRequest(f"{what} is not JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest(f"{what} is not a JSON object")
    if not isinstance(data.get("type"), str):
        raise BadRequest(f"{what} has no type")
    return data


def _check_shape(data: dict[str, Any]) -> dict[str, Any]:
    """The body, if the fields Bolt and our listeners read have Slack's shapes; else BadRequest."""
    for name in _OBJECT_OR_ID_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], (str, dict)):
            raise BadRequest(f"{name} has the wrong shape")
    for name in _OBJECT_FIELDS:
        if name in data and not isinstance(data[name], dict):
            raise BadRequest(f"{name} has the wrong shape")
    for name in _LIST_OF_OBJECT_FIELDS:
        value = data.get(name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(item, dict) for item in value)
        ):
            raise BadRequest(f"{name} has the wrong shape")
    return data


def _parse_form(text: str) -> dict[str, list[str]]:
    """``parse_qs(text, keep_blank_values=True, strict_parsing=True, errors="strict")``, faster.

    Interactivity bodies are percent-encoded JSON, and urllib's pure-Python unquoting of them was
    the largest single cost of answering a click; yarl (aiohttp's URL library) decodes in C. Any
    body the fast path might read differently goes through parse_qs itself.
    """
    pairs = text.split("&") if text else []
    if "\ufffd" not in text and all("=" in pair for pair in pairs):
        decoded = URL.build(query_string=text, encoded=True).query
        fields: dict[str, list[str]] = {}
        for key, value in decoded.items():
            fields.setdefault(key, []).append(value)
        # yarl replaces undecodable bytes with U+FFFD where parse_qs(errors="strict") refuses.
        if not any("\ufffd" in key or "\ufffd" in "".join(v) for key, v in fields.items()):
            return fields
    try:
        return parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except ValueError as exc:
        raise BadRequest("form body is malformed") from exc


def parse_slack_body(text: str, content_type: str) -> dict[str, Any]:
    """Parse a verified body the way Slack sends it; raise BadRequest for anything else."""
    if content_type == "application/json":
        return _check_shape(_load_json_object(text, "body"))
    if content_type != "application/x-www-form-urlencoded":
        raise BadRequest(f"unsupported content type {content_type or '(none)'}")
    fields = _parse_form(text)
    # Interactivity sends exactly one field, payload=<JSON>; commands send flat fields. Deciding
    # by the field name (not by the substring "payload") keeps commands that mention it.
    if set(fields) == {"payload"}:
        return _check_shape(_load_json_object(fields["payload"][0], "payload"))
    # Flat fields are strings, so only the list/object fields can be wrong.
    flat = {key: values[0] for key, values in fields.items()}
    for name in (*_OBJECT_FIELDS, *_LIST_OF_OBJECT_FIELDS):
        if name in flat:
            raise BadRequest(f"{name} has the wrong shape")
    return flat


async def _read_limited(request: web.Request) -> bytes:
    """The whole body, or 413 as soon as it is over MAX_BODY (chunked bodies included)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
    body = bytearray()
    # StreamReader.read(n) returns what has arrived so far, not n bytes: read to the end.
    while chunk := await request.content.readany():
        body.extend(chunk)
        if len(body) > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=len(body))
    return bytes(body)


def _signature_ok(
    verifier: SignatureVerifier, text: str, timestamp: str | None, signature: str | None
) -> bool:
    """slack_sdk's check, minus its crashes: int() of a non-number, float overflow of a huge
    number, and hmac.compare_digest() of a non-ASCII signature all raise instead of saying no."""
    if timestamp is None or signature is None:
        return False
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    if not signature.isascii():
        return False
    try:
        return bool(verifier.is_valid(body=text, timestamp=timestamp, signature=signature))
    except (ValueError, TypeError, OverflowError):
        return False


# What Bolt computes from the body for every middleware and error handler (its kwargs injection).
_BOLT_ACCESSORS: tuple[Callable[[dict[str, Any]], Any], ...] = (
    payload_utils.to_options,
    payload_utils.to_shortcut,
    payload_utils.to_action,
    payload_utils.to_view,
    payload_utils.to_command,
    payload_utils.to_event,
    payload_utils.to_message,
    payload_utils.to_step,
)


def _bolt_request(
    body: dict[str, Any], request: web.Request, *, received_at: float
) -> AsyncBoltRequest:
    """Bolt's request for a verified, parsed body; BadRequest when Bolt could not read it.

    Bolt assumes Slack's shapes when it extracts ids (building the request) and when it computes
    each middleware's and error handler's arguments (``actions[0]``, ``view["type"]``, …). An
    exception there would escape ``async_dispatch`` as a 500, so both are tried here first.
    """
    try:
        bolt_request = AsyncBoltRequest(
            body=body,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            mode="socket_mode",
            # When the request arrived: the cancel path refuses to claim once Slack's 3 s are
            # nearly gone (a claim Slack never hears about would cancel behind the user's back).
            context={RECEIVED_AT: received_at},
        )
        for accessor in _BOLT_ACCESSORS:
            accessor(bolt_request.body)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError) as exc:
        logger.warning("refused a signed Slack request Bolt cannot read (%s)", type(exc).__name__)
        raise BadRequest("malformed Slack request") from exc
    return bolt_request


def to_aiohttp(status: int, body: str | bytes | None, headers: Mapping[str, Any]) -> web.Response:
    """An aiohttp response for a Bolt one: the body, Bolt's headers, and one Content-Type."""
    response = web.Response(status=status, body=body.encode() if isinstance(body, str) else body)
    for name, values in headers.items():
        lowered = name.lower()
        if lowered == "content-length":
            continue
        if lowered == "content-type":
            # aiohttp keeps its own Content-Type header; adding Bolt's beside it would send two.
            value = values[0] if isinstance(values, (list, tuple)) else values
            response.headers[hdrs.CONTENT_TYPE] = str(value)
            continue
        for value in values if isinstance(values, (list, tuple)) else [values]:
            response.headers.add(name, str(value))
    return response


# Slack's ssl_check body is two short fields; nothing longer is parsed before its signature.
_SSL_CHECK_MAX = 1024


def _is_ssl_check(text: str, content_type: str) -> bool:
    """True for Slack's ssl_check request (sent unsigned when a command URL is saved)."""
    if content_type != "application/x-www-form-urlencoded" or len(text) > _SSL_CHECK_MAX:
        return False
    try:
        fields = _parse_form(text)
    except BadRequest:
        return False
    return fields.get("ssl_check") == ["1"] and "command" not in fields and "payload" not in fields


def create_web_app(
    *,
    bolt_app: AsyncApp | None,
    signing_secret: str | None,
    store: Store,
    readiness_warnings: ReadinessCheck | None = None,
    metrics: Metrics | None = None,
    metrics_token: str | None = None,
    before_scrape: Callable[[], Awaitable[None]] | None = None,
) -> web.Application:
    """Build the aiohttp application serving /slack/events and the health routes."""
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    async def handle_slack_events(request: web.Request) -> web.StreamResponse:
        if bolt_app is None or verifier is None:
            raise web.HTTPNotFound(
                text="Slack events are not served here (no SLACK_SIGNING_SECRET)"
            )
        received_at = time.monotonic()
        try:
            async with timeout(BODY_TIMEOUT):
                raw = await _read_limited(request)
        except asyncio.TimeoutError:
            raise web.HTTPRequestTimeout(text="request body too slow") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise web.HTTPBadRequest(text="body is not UTF-8") from None
        if not _signature_ok(
            verifier,
            text,
            request.headers.get("X-Slack-Request-Timestamp"),
            request.headers.get("X-Slack-Signature"),
        ):
            if _is_ssl_check(text, request.content_type):
                # Slack checks the certificate with an unsigned POST and wants only a 200;
                # nothing in it is acted on.
                logger.debug("answered Slack's ssl_check")
                return web.Response(status=200)
            raise web.HTTPUnauthorized(text="invalid or stale Slack signature")
        try:
            body = parse_slack_body(text, request.content_type)
            # Already verified: hand Bolt the parsed body the way Socket Mode does, which also
            # skips Bolt's own parsing (it drops any form body containing the word "payload").
            bolt_request = _bolt_request(body, request, received_at=received_at)
        except BadRequest as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        response = await bolt_app.async_dispatch(bolt_request)
        return to_aiohttp(response.status, response.body, response.headers)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/slack/events", handle_slack_events)
    add_probe_routes(
        app,
        store=store,
        readiness_warnings=readiness_warnings,
        metrics=metrics,
        metrics_token=metrics_token,
        before_scrape=before_scrape,
    )
    return app
