"""Slack Web API clients: one pre-ack policy, one reporter policy, each on a pooled session."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.errors import SLACK_FAILURES
from bot.timeouts import timeout

logger = logging.getLogger(__name__)

# Before the ack Slack allows 3 s in all; a lookup that takes longer is better refused.
FAST_TIMEOUT = 2
# The reporter works after the ack and may wait out Slack's rate limits.
REPORTER_TIMEOUT = 15
# chat.getPermalink runs after a post; a slow answer only costs the link, never the post.
PERMALINK_TIMEOUT = 5.0
MAX_PERMALINK = 1000


def _reporter_handlers() -> list[AsyncRetryHandler]:
    return [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        AsyncRateLimitErrorRetryHandler(max_retry_count=2),
        AsyncServerErrorRetryHandler(max_retry_count=2),
    ]


class SlackClients:
    """The two kinds of Web API client, per token.

    slack_sdk applies a client's `timeout` only to sessions it creates itself, so each policy
    has its own pooled session whose ClientTimeout enforces it (connections are still reused).
    """

    def __init__(self, *, base_url: str) -> None:
        self.base_url = base_url
        self.fast_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FAST_TIMEOUT))
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REPORTER_TIMEOUT))
        self._fast: dict[str | None, AsyncWebClient] = {}
        self._reporter: dict[str | None, AsyncWebClient] = {}
        # Bolt copies this client (handlers, base_url, session) into every request's client:
        # it must not sleep on a 429 before the ack.
        self.fast = self.fast_for(None)

    def fast_for(self, token: str | None) -> AsyncWebClient:
        """Return the pre-ack client for a token: short timeout, no retries."""
        client = self._fast.get(token)
        if client is None:
            client = AsyncWebClient(
                token=token,
                base_url=self.base_url,
                session=self.fast_session,
                timeout=FAST_TIMEOUT,
                retry_handlers=[],
            )
            self._fast[token] = client
        return client

    def reporter_for(self, token: str | None) -> AsyncWebClient:
        """Return the reporter's client for a token: waits out 429s, retries 5xx and connection errors."""
        client = self._reporter.get(token)
        if client is None:
            client = AsyncWebClient(
                token=token,
                base_url=self.base_url,
                session=self.session,
                timeout=REPORTER_TIMEOUT,
                retry_handlers=_reporter_handlers(),
            )
            self._reporter[token] = client
        return client

    async def close(self) -> None:
        """Close both sessions."""
        await self.fast_session.close()
        await self.session.close()


def answering_429s(client: Any) -> Any:
    """The same client (token, session, timeout, other retries), but a 429 raises at once.

    For calls whose caller can wait in the outbox instead: the reporter's client would sleep out
    the Retry-After (a minute for history reads of non-Marketplace apps) while holding a lease.
    """
    if not isinstance(client, AsyncWebClient):
        return client
    return AsyncWebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        session=client.session,
        headers=dict(client.headers),
        team_id=client.default_params.get("team_id"),
        logger=client.logger,
        retry_handlers=[
            h for h in client.retry_handlers if not isinstance(h, AsyncRateLimitErrorRetryHandler)
        ],
    )


async def get_permalink(client: Any, channel: str, ts: str) -> str | None:
    """The message's permalink from chat.getPermalink, or None when Slack gives none; never raises."""
    try:
        async with timeout(PERMALINK_TIMEOUT):
            response = await answering_429s(client).chat_getPermalink(
                channel=channel, message_ts=ts
            )
    except SLACK_FAILURES as exc:
        logger.info("no permalink for message %s in %s (%s)", ts, channel, type(exc).__name__)
        return None
    link = response.get("permalink")
    if isinstance(link, str) and link.startswith("https://") and len(link) <= MAX_PERMALINK:
        return link
    return None
