"""Slack Web API clients: one shared aiohttp session, two retry policies."""

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
    """The two kinds of Web API client, per token, on one shared aiohttp session."""

    def __init__(self, *, base_url: str) -> None:
        self.base_url = base_url
        self.session = aiohttp.ClientSession()
        # Bolt copies this client (handlers, base_url, session) into every request's client:
        # it must not sleep on a 429 before the ack.
        self.fast = self.fast_for(None)
        self._fast: dict[str, AsyncWebClient] = {}
        self._reporter: dict[str, AsyncWebClient] = {}

    def fast_for(self, token: str | None) -> AsyncWebClient:
        """Return the pre-ack client for a token: short timeout, no retries."""
        if token is not None and token in getattr(self, "_fast", {}):
            return self._fast[token]
        client = AsyncWebClient(
            token=token,
            base_url=self.base_url,
            session=self.session,
            timeout=FAST_TIMEOUT,
            retry_handlers=[],
        )
        if token is not None:
            self._fast[token] = client
        return client

    def reporter_for(self, token: str) -> AsyncWebClient:
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
        """Close the shared session."""
        await self.session.close()
