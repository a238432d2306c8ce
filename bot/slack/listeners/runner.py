"""How every listener runs: on the request until it acks, then on in the background.

Bolt's own way to answer before a listener returns (``process_before_response=False``) checks for
the ack every 10 ms: a floor under every answer and, with many requests in flight, most of the
event loop's time. Here Bolt processes before responding, and the listener itself runs as a
tracked task that hands the request back the moment it acks.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.models.blocks import Block
from slack_sdk.webhook import WebhookResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.slack.context import deps_of

logger = logging.getLogger(__name__)

SORRY = (
    ":warning: Something went wrong on our side; nothing was cancelled by this request. "
    "Try again, or ask the bot's operator to check its logs."
)
Listener = Callable[..., Awaitable[None]]


class PooledRespond(AsyncRespond):
    """Bolt's ``respond()`` on a shared session (Bolt's opens a new session for every call)."""

    def __init__(self, *, response_url: str, session: aiohttp.ClientSession) -> None:
        super().__init__(response_url=response_url)
        self._session = session

    async def __call__(  # type: ignore[override]
        self,
        text: str = "",
        blocks: Sequence[dict[str, Any] | Block] | None = None,
        response_type: str | None = None,
        replace_original: bool | None = None,
        delete_original: bool | None = None,
        unfurl_links: bool | None = None,
        unfurl_media: bool | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> WebhookResponse:
        """Post to the response_url, as Bolt's respond() does."""
        client = AsyncWebhookClient(url=str(self.response_url), session=self._session)
        return await client.send(
            text=text,
            blocks=blocks,
            response_type=response_type,
            replace_original=replace_original,
            delete_original=delete_original,
            unfurl_links=unfurl_links,
            unfurl_media=unfurl_media,
            metadata=metadata,
        )


async def tell_user_something_failed(context: Any) -> None:
    """Say briefly, privately, that the request failed (best effort)."""
    if not context.response_url:
        return
    try:
        await context.respond(text=SORRY, response_type="ephemeral", replace_original=False)
    except Exception:  # noqa: BLE001 - the boundary must not raise while reporting an error
        logger.warning("could not tell the user about the error")


class _SignallingAck:
    """Bolt's ack, which also hands the request back to Bolt once it has been called."""

    def __init__(self, ack: Any, answered: asyncio.Future[None]) -> None:
        self._ack = ack
        self._answered = answered

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._ack(*args, **kwargs)
        finally:
            if not self._answered.done():
                self._answered.set_result(None)
                # Let the answer go out before the listener's post-ack work takes the loop.
                await asyncio.sleep(0)


def acks_first(handler: Listener) -> Listener:
    """Return `handler` wrapped so Slack gets its answer at the ack, not when the handler ends."""

    @functools.wraps(handler)  # Bolt injects arguments by the wrapped handler's parameter names
    async def run(**kwargs: Any) -> None:
        context = kwargs["context"]
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        kwargs["ack"] = _SignallingAck(kwargs["ack"], answered)

        async def go_on() -> None:
            try:
                await handler(**kwargs)
            except Exception as exc:
                if not answered.done():
                    answered.set_exception(exc)  # before the ack: Bolt's error handler answers
                    return
                # The listener boundary after the ack: log, tell the user, keep serving.
                logger.exception("listener %s failed after its ack", handler.__name__)
                await tell_user_something_failed(context)
            finally:
                if not answered.done():
                    answered.set_result(None)  # returned without acking: Bolt says so

        deps_of(context).background.spawn(go_on(), name=f"listener {handler.__name__}")
        await answered

    return run
