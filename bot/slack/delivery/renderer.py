"""The one renderer of a training notification: blocks from (stage, cancellation state) in the store."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from bot.errors import SlackError
from bot.model import Notification
from bot.slack.errors import slack_call
from bot.slack.messages.blocks import build_notification
from bot.store import Store

logger = logging.getLogger(__name__)


class NotificationRenderer:
    """Re-renders notifications from the store; updates of one message are serialised."""

    def __init__(self, *, store: Store) -> None:
        self.store = store
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def render(
        self, client: Any, workspace_id: str, training_id: str, *, note: Notification | None = None
    ) -> None:
        """Bring the notification message in line with the store (no call when it already is).

        Raises SlackError only when it is transient (a refused update is logged and skipped).
        `note`, when the caller has just read it, saves the first read.
        """
        lock = self._locks.setdefault((workspace_id, training_id), asyncio.Lock())
        async with lock:
            # Another instance may update the same message between our read and our update; reading
            # again afterwards and updating once more if the store moved on makes the last write win.
            for _ in range(3):
                if not await self._render_once(client, workspace_id, training_id, note):
                    return
                note = None

    async def _render_once(
        self, client: Any, workspace_id: str, training_id: str, note: Notification | None
    ) -> bool:
        """Update the message if it differs from the store; True if an update was made."""
        if note is None:
            note = await self.store.notifications.get(workspace_id, training_id)
        if note is None:
            return False
        latest = await self.store.cancellations.latest(workspace_id, training_id)
        message = build_notification(note, latest)
        # Keyed on what people would see: states that look alike cost no chat.update.
        key = hashlib.sha256(json.dumps(message, sort_keys=True).encode()).hexdigest()[:40]
        if note.rendered == key:
            return False
        try:
            with slack_call("chat.update"):
                await client.chat_update(channel=note.channel_id, ts=note.message_ts, **message)
        except SlackError as exc:
            if exc.transient:
                raise
            logger.warning("notification of %s not updated: %s", training_id, exc.error)
            await self.store.notifications.set_rendered(workspace_id, training_id, key)
            return False
        await self.store.notifications.set_rendered(workspace_id, training_id, key)
        return True
