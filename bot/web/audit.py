"""`GET /audit`: the audit log as JSON lines, behind a bearer token, in pages (design §3)."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from bot.errors import StoreUnavailable
from bot.model import AuditRecord
from bot.service.audit import AuditTrail, parse_since

logger = logging.getLogger(__name__)

DEFAULT_PAGE = 1000
MAX_PAGE = 10_000
CONTENT_TYPE = "application/x-ndjson"


def add_audit_routes(app: web.Application, *, trail: AuditTrail) -> None:
    """Add GET /audit: one workspace's records, oldest first, `limit` per page."""

    async def handle_audit(request: web.Request) -> web.StreamResponse:
        if not trail.served:
            raise web.HTTPNotFound(text="the audit route is off (set AUDIT_TOKEN)")
        auth = request.headers.get("Authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        try:
            workspace_id = await trail.workspace_for_token(given)
        except StoreUnavailable:
            raise web.HTTPServiceUnavailable(text="the bot's database is not answering") from None
        team = request.query.get("team")
        if workspace_id is None or (team is not None and team != workspace_id):
            raise web.HTTPUnauthorized(
                text="a valid bearer token for this workspace is required (AUDIT_TOKEN, or the "
                "workspace's token from App Home)"
            )
        since, after, limit = _page(request)
        records = trail.export(workspace_id=workspace_id, since=since, after=after, limit=limit)
        try:
            first = await anext(records, None)
        except StoreUnavailable:
            raise web.HTTPServiceUnavailable(text="the bot's database is not answering") from None
        response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
        await response.prepare(request)
        if first is not None:
            await response.write(_line(first))
            try:
                async for record in records:
                    await response.write(_line(record))
            except StoreUnavailable:
                # Mid-stream: the client sees a short page and asks again from its last seq.
                logger.warning("GET /audit: the database stopped answering mid-page")
        await response.write_eof()
        return response

    app.router.add_get("/audit", handle_audit)


def _page(request: web.Request) -> tuple[str | None, int | None, int]:
    """?since=ISO, ?after=SEQ, ?limit=N, or 400 naming what is wrong."""
    query = request.query
    since = None
    if query.get("since"):
        try:
            since = parse_since(query["since"])
        except ValueError as exc:
            raise web.HTTPBadRequest(text=f"since: {exc}") from None
    after = _number(query.get("after"), "after", low=0, high=2**62)
    limit = _number(query.get("limit"), "limit", low=1, high=MAX_PAGE)
    return since, after, limit if limit is not None else DEFAULT_PAGE


def _number(value: str | None, name: str, *, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise web.HTTPBadRequest(text=f"{name}: a whole number from {low} to {high}")
    return int(value)


def _line(record: AuditRecord) -> bytes:
    return (json.dumps(record.to_json(), separators=(",", ":"), ensure_ascii=False) + "\n").encode()
