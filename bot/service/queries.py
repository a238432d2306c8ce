"""What the Slack surfaces look up (and the one watch request), as plain values: no Slack here."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.model import Cancellation, Notification
from bot.store import Store

FixedEntries = Callable[[str], Sequence[str]]


@dataclass(frozen=True)
class History:
    """The latest cancellations of a workspace, with the notifications of their trainings."""

    rows: list[Cancellation]
    notifications: dict[str, Notification]  # by training id
    total: int = 0  # how many match, `rows` being the newest of them


class Queries:
    """Store look-ups the listeners need, each one named for what it answers."""

    def __init__(self, *, store: Store, fixed_entries: FixedEntries) -> None:
        self._store = store
        self._fixed = fixed_entries

    async def notification(self, workspace_id: str, training_id: str) -> Notification | None:
        """The training's notification, if the bot posted one."""
        return await self._store.notifications.get(workspace_id, training_id)

    async def cancellable(self, workspace_id: str, *, limit: int = 10) -> list[Notification]:
        """Notifications whose training has no active cancellation, newest first."""
        return await self._store.notifications.cancellable(workspace_id, limit=limit)

    async def history(
        self,
        workspace_id: str,
        *,
        limit: int = 10,
        training_id: str | None = None,
        user_id: str | None = None,
        period: float | None = None,
    ) -> History:
        """The workspace's latest cancellations (of one training, by one requester, within the
        last `period` seconds), newest first, where each was posted, and how many match."""
        rows, total = await self._store.cancellations.search(
            workspace_id,
            training_id=training_id,
            requested_by=user_id,
            since=time.time() - period if period is not None else None,
            limit=limit,
        )
        notes = await self._store.notifications.for_trainings(
            workspace_id, [r.training_id for r in rows]
        )
        return History(rows, notes, total)

    async def editable_entries(self, workspace_id: str) -> list[str]:
        """The stored allow-list admins edit: without the operator's entries, always in force."""
        fixed = self._fixed(workspace_id)
        return [e for e in await self._store.workspaces.allow_list(workspace_id) if e not in fixed]

    async def watch(
        self, workspace_id: str, training_id: str, *, channel_id: str
    ) -> Notification | None:
        """Queue a watch request for the notifier; return the notification it already has, if any."""
        existing = await self._store.notifications.get(workspace_id, training_id)
        await self._store.training_events.enqueue(
            workspace_id=workspace_id,
            training_id=training_id,
            stage=None,
            logs=None,
            source="watch",
            channel_id=channel_id,
            owner_id=None,
        )
        return existing
