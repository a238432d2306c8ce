"""Slack Web API clients: one pre-ack policy, one reporter policy, each on a pooled session."""

from __future__ import annotations

import aiohttp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

# Before the ack Slack allows 3 s in all; a lookup that takes longer is better refused.
FAST_TIMEOUT = 2
# The reporter works after the ack and may wait out Slack's rate limits.
REPORTER_TIMEOUT = 15


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
