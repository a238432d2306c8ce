"""The Bolt app factory. No import-time side effects: everything is handed in."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.metrics import request_kind
from bot.slack import listeners
from bot.slack.context import DEPS_KEY, Deps
from bot.slack.listeners.runner import PooledRespond, tell_user_something_failed

logger = logging.getLogger(__name__)

Authorize = Callable[..., Awaitable[AuthorizeResult]]


class CancelBotApp(AsyncApp):
    """AsyncApp that hands listeners our Deps and counts every request, whatever the transport."""

    deps: Deps | None = None

    async def async_dispatch(self, req: AsyncBoltRequest) -> BoltResponse:
        """Dispatch as Bolt does, with Deps and a pooled respond(); count by kind and status."""
        deps = self.deps
        if deps is not None:
            # Here rather than in a middleware: Bolt builds every argument it can inject for
            # each middleware call, a cost on every request.
            req.context[DEPS_KEY] = deps
            if req.context.response_url:
                req.context["respond"] = PooledRespond(
                    response_url=req.context.response_url, session=deps.webhook_session
                )
        response: BoltResponse = await super().async_dispatch(req)
        if deps is not None:
            deps.metrics.requests.labels(
                kind=request_kind(req.body), result=str(response.status)
            ).inc()
        return response


def _drop_env_token_warning(record: logging.LogRecord) -> bool:
    # Bolt reads SLACK_BOT_TOKEN from os.environ itself, then says it ignores it for our client:
    # true, expected, and confusing in an operator's start-up log.
    return "`token` will be unused" not in record.getMessage()


BOLT_LOGGER = logging.getLogger("bot.bolt")
BOLT_LOGGER.addFilter(_drop_env_token_warning)


def create_app(
    *,
    deps: Deps,
    client: AsyncWebClient,
    authorize: Authorize | AsyncAuthorize,
    signing_secret: str | None,
    oauth_flow: AsyncOAuthFlow | None = None,
) -> CancelBotApp:
    """Build the Bolt app with its listeners; serving it is the web layer's or Socket Mode's job."""
    app = CancelBotApp(
        client=client,
        # Bolt accepts an AsyncAuthorize instance too; its annotation only names the callable form.
        authorize=authorize,  # type: ignore[arg-type]
        # Handing Bolt our OAuth flow (database stores) also stops it from building its own
        # file-based one when it sees SLACK_CLIENT_ID/SLACK_CLIENT_SECRET in the environment.
        oauth_flow=oauth_flow,
        signing_secret=signing_secret,
        # Our web layer verifies HTTP requests before Bolt sees them (bot.web); Socket Mode needs none.
        request_verification_enabled=bool(signing_secret),
        # Bolt answers when the listener returns; acks_first makes that the moment it acks.
        process_before_response=True,
        # Slack wants 200 (HTTP) or an envelope ack (Socket Mode) for what no listener handles;
        # Bolt's built-in answer is 404 and no ack. Raising lets handle_listener_error answer.
        raise_error_for_unhandled_request=True,
        # Middleware for features this app does not use (assistant threads, custom workflow
        # steps): each would run on every request.
        ignoring_self_assistant_message_events_enabled=False,
        attaching_function_token_enabled=False,
        attaching_conversation_kwargs_enabled=False,
        logger=BOLT_LOGGER,
    )

    app.deps = deps
    app.error(handle_listener_error)
    listeners.register(app)
    return app


async def handle_listener_error(
    error: Exception, context: AsyncBoltContext, response: BoltResponse | None
) -> BoltResponse | None:
    """The listener boundary before the ack: log the traceback, tell the user, answer Slack 200.

    A request no listener handles (an event, action or envelope this app does not use) is
    answered 200 with an empty body too, which over Socket Mode is the envelope's ack.
    """
    if isinstance(error, BoltUnhandledRequestError):
        logger.debug("no listener for this %s request; answered 200", request_kind(error.body))
        return BoltResponse(status=200, body="")
    logger.error("listener failed", exc_info=error)
    deps = context.get(DEPS_KEY)
    if isinstance(deps, Deps):
        deps.background.spawn(tell_user_something_failed(context), name="error reply")
    return BoltResponse(status=200, body="") if response is not None else None


def single_workspace_authorize(result: AuthorizeResult) -> Authorize:
    """Authorize every request with the one workspace's cached auth.test result (no call per request)."""

    async def authorize(**_: Any) -> AuthorizeResult:
        return result

    return authorize
