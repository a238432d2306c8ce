"""GET /slack/install and GET /slack/oauth_redirect, answered by Bolt's OAuth flow."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.slack.oauth import INSTALL_PATH, REDIRECT_PATH
from bot.web.app import to_aiohttp


def add_oauth_routes(app: web.Application, flow: AsyncOAuthFlow) -> None:
    """Serve GET /slack/install and GET /slack/oauth_redirect from Bolt's OAuth flow."""

    async def _bolt(request: web.Request, handler: Any) -> web.StreamResponse:
        bolt_request = AsyncBoltRequest(
            body="",
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        response = await handler(bolt_request)
        return to_aiohttp(response.status, response.body, response.headers)

    async def handle_install(request: web.Request) -> web.StreamResponse:
        return await _bolt(request, flow.handle_installation)

    async def handle_redirect(request: web.Request) -> web.StreamResponse:
        return await _bolt(request, flow.handle_callback)

    app.router.add_get(INSTALL_PATH, handle_install)
    app.router.add_get(REDIRECT_PATH, handle_redirect)
