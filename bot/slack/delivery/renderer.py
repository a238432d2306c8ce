"""The one renderer of a training notification: blocks from (stage, cancellation state) in the store.

It makes the notification's first post and every update after it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot.errors import SlackError, StoreUnavailable
from bot.model import Notification
from bot.slack.clients import get_permalink
from bot.slack.errors import slack_call
from bot.slack.messages.blocks import build_notification
from bot.store import Store

logger = logging.getLogger(__name__)
# Who may press a workspace's Cancel buttons; None: show them to everyone.
# Live notifications re-rendered when the allow-list changes, at most (newest first).
REFRESHED = 50
VisibleLookup = Callable[[str], Awaitable[Sequence[str] | None]]


async def record_permalink(
    store: Store, client: Any, workspace_id: str, training_id: str, channel_id: str, ts: str
) -> None:
    """Record a posted notification's permalink, once; without one, links fall back to a guess."""
    link = await get_permalink(client, channel_id, ts)
    if not link:
        return
    try:
        await store.notifications.set_permalink(workspace_id, training_id, link)
    except StoreUnavailable as exc:
        # The notification is posted and recorded; only its exact link is lost.
        logger.info("training %s: permalink not recorded (%s)", training_id, exc)


class NotificationRenderer:
    """Re-renders notifications from the store; updates of one message are serialised."""

    def __init__(self, *, store: Store, visible_to: VisibleLookup | None = None) -> None:
        self.store = store
        self._visible_to = visible_to
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def _lock(self, workspace_id: str, training_id: str) -> asyncio.Lock:
        return self._locks.setdefault((workspace_id, training_id), asyncio.Lock())

    async def post(self, client: Any, draft: Notification) -> tuple[str, str]:
        """Post a reserved notification as the store has it; record where it is: (channel, ts).

        `draft` is the reserved row (its channel, title, owner, first stage). On any failure the
        reservation is dropped, so a later attempt may post; Slack's refusal is a SlackError.
        """
        workspace_id, training_id = draft.workspace_id, draft.training_id
        async with self._lock(workspace_id, training_id):
            latest = await self.store.cancellations.latest(workspace_id, training_id)
            try:
                with slack_call("chat.postMessage"):
                    response = await client.chat_postMessage(
                        channel=draft.channel_id,
                        **build_notification(
                            draft, latest, visible_to=await self._visible(workspace_id)
                        ),
                    )
            except BaseException:
                await self.store.notifications.drop_reservation(workspace_id, training_id)
                raise
            channel_id, message_ts = str(response["channel"]), str(response["ts"])
            await self.store.notifications.posted(
                workspace_id, training_id, channel_id=channel_id, message_ts=message_ts
            )
        await record_permalink(
            self.store, client, workspace_id, training_id, channel_id, message_ts
        )
        return channel_id, message_ts

    async def render(
        self, client: Any, workspace_id: str, training_id: str, *, note: Notification | None = None
    ) -> None:
        """Bring the notification message in line with the store (no call when it already is).

        Raises SlackError only when it is transient (a refused update is logged and skipped).
        `note`, when the caller has just read it, saves the first read.
        """
        async with self._lock(workspace_id, training_id):
            # Another instance may update the same message between our read and our update; reading
            # again afterwards and updating once more if the store moved on makes the last write win.
            for _ in range(3):
                if not await self._render_once(client, workspace_id, training_id, note):
                    return
                note = None

    async def refresh_workspace(self, client: Any, workspace_id: str) -> int:
        """Re-render the workspace's cancellable notifications (their buttons' viewers changed)."""
        notes = await self.store.notifications.cancellable(workspace_id, limit=REFRESHED)
        for note in notes:
            try:
                await self.render(client, workspace_id, note.training_id, note=note)
            except SlackError as exc:
                logger.info("notification of %s not refreshed: %s", note.training_id, exc.error)
        return len(notes)

    async def _visible(self, workspace_id: str) -> Sequence[str] | None:
        return await self._visible_to(workspace_id) if self._visible_to is not None else None

    async def _render_once(
        self, client: Any, workspace_id: str, training_id: str, note: Notification | None
    ) -> bool:
        """Update the message if it differs from the store; True if an update was made."""
        if note is None:
            note = await self.store.notifications.get(workspace_id, training_id)
        if note is None:
            return False
        latest = await self.store.cancellations.latest(workspace_id, training_id)
        message = build_notification(note, latest, visible_to=await self._visible(workspace_id))
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
