"""Custody of response_urls: sealed for the store, or kept in memory only, and the fallback post.

A response_url is a secret (anyone holding it can post as the bot to that user): with
BOT_ENCRYPTION_KEY it is stored encrypted; without it, it never reaches the database and lives
only in this process (a crash loses only that fallback).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.crypto import SecretBox
from bot.errors import BotError
from bot.model import Cancellation
from bot.slack.errors import SLACK_FAILURES

logger = logging.getLogger(__name__)


class ResponseUrls:
    """Seals, keeps and posts to the response_urls of cancellation requests."""

    def __init__(self, *, box: SecretBox, session: Any = None) -> None:
        self._box = box
        self._session = session
        self._in_memory: dict[int, str] = {}

    def seal(self, url: str | None) -> str | None:
        """Return the response_url encrypted for the store, or None when it must stay in memory."""
        if not url or not self._box.enabled:
            return None
        return self._box.encrypt(url)

    def remember(self, cancellation_id: int, url: str | None) -> None:
        """Keep a response_url in memory (used when it cannot be stored encrypted)."""
        if url and not self._box.enabled:
            self._in_memory[cancellation_id] = url

    def url_for(self, row: Cancellation) -> str | None:
        """The requester's response_url for a cancellation, if it is still known."""
        if row.response_url and self._box.enabled:
            with contextlib.suppress(BotError):
                return self._box.decrypt(row.response_url)
        return self._in_memory.get(row.id)

    async def post(
        self, row: Cancellation, text: str, *, blocks: Sequence[dict[str, Any]] | None = None
    ) -> bool:
        """Tell the requester privately through their response_url; True if it was accepted."""
        url = self.url_for(row)
        if not url:
            return False
        webhook = AsyncWebhookClient(url, session=self._session, timeout=10)
        try:
            response = await webhook.send(
                text=text,
                blocks=list(blocks) if blocks else None,
                response_type="ephemeral",
                replace_original=False,
            )
        except SLACK_FAILURES as exc:
            logger.info("report %s: response_url failed (%s)", row.id, type(exc).__name__)
            return False
        return bool(200 <= response.status_code < 300)
