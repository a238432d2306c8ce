"""Live training notifications: works off reported stages (webhooks, /notify, watch) and polls.

Webhooks are unsigned, so a stage that changes what people can do (finished, failed) is confirmed
with ModelsLab's status call first; a check that fails leaves the message as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.errors import SlackError
from bot.ids import is_v6_id
from bot.model import Notification, State, TrainingEvent
from bot.modelslab import KeyLimiter, ModelsLabClient, TrainingStatus
from bot.service.cancellation import new_worker_id
from bot.service.workspaces import Workspaces
from bot.slack.delivery.renderer import NotificationRenderer
from bot.slack.errors import slack_call
from bot.slack.messages.blocks import build_finished_reply
from bot.stages import Stage, normalise, parse_eta
from bot.store import Store
from bot.worker import QueueWorker

logger = logging.getLogger(__name__)

ClientLookup = Callable[[str], Awaitable[Any]]
POLL_SECONDS = 60.0
MAX_WATCH_SECONDS = 3 * 24 * 3600.0
MAX_POLL_FAILURES = 30
MAX_EVENT_ATTEMPTS = 6


def _item_key(item: TrainingEvent | Notification) -> tuple[str, ...]:
    if isinstance(item, TrainingEvent):
        return ("event", str(item.id))
    return ("poll", item.workspace_id, item.training_id)


class Notifier:
    """Posts and updates one live message per training."""

    def __init__(
        self,
        *,
        store: Store,
        workspaces: Workspaces,
        clients: ClientLookup,
        renderer: NotificationRenderer,
        modelslab: ModelsLabClient,
        limiter: KeyLimiter,
        poll_seconds: float = POLL_SECONDS,
        lease_seconds: float = 60.0,
        idle_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.workspaces = workspaces
        self.clients = clients
        self.renderer = renderer
        self.modelslab = modelslab
        self.limiter = limiter
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.owner = new_worker_id()
        self._worker: QueueWorker[TrainingEvent | Notification] = QueueWorker(
            name="notifier",
            take=self._take,
            handle=self._handle,
            next_due=self._next_due,
            concurrency=4,
            idle=idle_seconds,
            key=_item_key,
        )

    @property
    def idle_seconds(self) -> float:
        """The longest the loop sleeps when nothing is due."""
        return self._worker.idle

    @idle_seconds.setter
    def idle_seconds(self, value: float) -> None:
        self._worker.idle = value

    def wake(self) -> None:
        """Tell the notifier there is a new event."""
        self._worker.wake()

    def start(self) -> None:
        """Start the loop."""
        self._worker.start()

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stop the loop (events and polls stay queued in the store)."""
        await self._worker.stop(grace=grace)

    async def drain(self) -> int:
        """Start handling due events and due polls; return how many were taken."""
        return await self._worker.drain()

    async def _take(self, limit: int) -> list[TrainingEvent | Notification]:
        items: list[TrainingEvent | Notification] = list(
            await self.store.training_events.take(
                self.owner, lease_seconds=self.lease_seconds, limit=limit
            )
        )
        if len(items) < limit:
            items += await self.store.polls.due(limit=limit - len(items))
        return items

    async def _handle(self, item: TrainingEvent | Notification) -> None:
        if isinstance(item, TrainingEvent):
            await self._guarded_event(item)
        else:
            await self._guarded_poll(item)

    async def _next_due(self) -> float | None:
        due = [
            t
            for t in (
                await self.store.training_events.next_due(),
                await self.store.polls.next_due(),
            )
            if t
        ]
        return min(due) if due else None

    async def _guarded_event(self, event: TrainingEvent) -> None:
        try:
            done = await self.handle_event(event)
        except SlackError as exc:
            logger.info("training %s: Slack unavailable (%s); retrying", event.training_id, exc)
            done = False
        except Exception:
            # One bad event must not stop the loop (the listener-boundary rule, for a worker).
            logger.exception("training event %s failed", event.id)
            done = False
        if done or event.attempts >= MAX_EVENT_ATTEMPTS:
            await self.store.training_events.finish(event.id)
        else:
            await self.store.training_events.retry(
                event.id, at=time.time() + min(300.0, 2.0**event.attempts)
            )

    # -- events ------------------------------------------------------------------------------------

    async def handle_event(self, event: TrainingEvent) -> bool:
        """Apply one reported stage; False to try again later."""
        client = await self.clients(event.workspace_id)
        if client is None:
            return True  # the workspace is gone
        api = "v6" if is_v6_id(event.training_id) else "v3"
        stage = normalise(event.stage, api=api)
        eta = parse_eta(event.logs)
        note = await self.store.notifications.get(event.workspace_id, event.training_id)
        if note is None:
            posted = await self._post(client, event, stage, eta)
            if not posted:
                return posted is None  # None: nowhere to post, give up; False: retry
            note = await self.store.notifications.get(event.workspace_id, event.training_id)
            if note is None:
                return False
        elif event.source == "watch" and not note.watching:
            await self.store.polls.schedule(
                event.workspace_id, event.training_id, next_at=time.time()
            )
            self.wake()
        if stage is None:
            return True
        if stage.final:
            verified = await self._verify(event.workspace_id, event.training_id, api)
            if verified is None:
                # Unconfirmed: the message stays as it was; the event is retried a few times.
                return False
            stage = verified
            if not stage.final:
                await self.apply(client, note, stage, eta)
                return True
        await self.apply(client, note, stage, eta)
        return True

    async def _post(
        self, client: Any, event: TrainingEvent, stage: Stage | None, eta: str | None
    ) -> bool | None:
        """Post the training's one notification; None when there is no channel to post in."""
        channel = event.channel_id or await self.workspaces.notify_channel(event.workspace_id)
        if not channel:
            logger.warning(
                "training %s: no notification channel (NOTIFY_CHANNEL / App Home); nothing posted",
                event.training_id,
            )
            await self.store.training_events.set_outcome(
                event.id, "no notification channel is configured"
            )
            return None
        claimed = await self.store.notifications.reserve(
            workspace_id=event.workspace_id,
            training_id=event.training_id,
            channel_id=channel,
            owner_id=event.owner_id,
            title=event.title,
            watching=event.source == "watch",
        )
        if not claimed:
            return False  # another delivery is posting it right now: apply this one after
        now = time.time()
        draft = Notification(
            workspace_id=event.workspace_id,
            training_id=event.training_id,
            channel_id=channel,
            message_ts="",
            owner_id=event.owner_id,
            title=event.title,
            stage=stage.name if stage and not stage.final else None,
            created_at=now,
            stage_rank=stage.rank if stage and not stage.final else 0,
            eta=eta,
            started_at=now if stage and stage.rank >= 2 and not stage.final else None,
        )
        try:
            await self.renderer.post(client, draft)
        except SlackError as exc:
            if exc.transient:
                raise
            error = exc.error
            hint = (
                " (invite the bot with /invite)"
                if error in ("not_in_channel", "channel_not_found")
                else ""
            )
            await self.store.training_events.set_outcome(
                event.id, f"Slack refused the message: {error}{hint}"
            )
            logger.warning(
                "training %s: notification refused by Slack (%s)", event.training_id, error
            )
            return None
        if draft.stage:
            await self.store.notifications.advance_stage(
                event.workspace_id,
                event.training_id,
                stage=draft.stage,
                rank=draft.stage_rank,
                eta=eta,
                final=False,
                started=draft.started_at is not None,
            )
        return True

    async def _verify(self, workspace_id: str, training_id: str, api: str) -> Stage | None:
        """Ask ModelsLab where the training really is; None when it could not be asked."""
        key = await self.workspaces.key_for(workspace_id)
        if not key:
            return None
        status = await self._status(training_id, key)
        if status is None or not status.definitive:
            return None
        return normalise(status.state, api=api)

    async def _status(self, training_id: str, key: str) -> TrainingStatus | None:
        async with self.limiter.poll(key):
            return await self.modelslab.status(training_id, key)

    async def apply(self, client: Any, note: Notification, stage: Stage, eta: str | None) -> None:
        """Record a stage (never going back), re-render, and announce a finish once."""
        await self.store.notifications.advance_stage(
            note.workspace_id,
            note.training_id,
            stage=stage.name,
            rank=stage.rank,
            eta=eta,
            final=stage.final,
            started=stage.rank >= 2 and not stage.final,
        )
        # Always render: the renderer skips an unchanged message, and a render that failed
        # earlier (the stage was stored, Slack was down) is completed by the retry.
        await self.renderer.render(client, note.workspace_id, note.training_id)
        fresh = await self.store.notifications.get(note.workspace_id, note.training_id)
        if fresh is None or not fresh.finished or fresh.final_reported:
            return
        latest = await self.store.cancellations.latest(note.workspace_id, note.training_id)
        if not await self.store.notifications.mark_final_reported(
            note.workspace_id, note.training_id
        ):
            return
        if latest is not None and latest.state == State.CANCELLED:
            return  # the cancellation's own reply already closed the thread
        try:
            with slack_call("chat.postMessage (finished reply)"):
                await client.chat_postMessage(
                    channel=fresh.channel_id,
                    thread_ts=fresh.message_ts,
                    **build_finished_reply(fresh),
                )
        except SlackError:
            # Not announced after all (refused or not): let the retry of this event post it.
            await self.store.notifications.mark_final_reported(
                note.workspace_id, note.training_id, reported=False
            )
            raise

    # -- watching -----------------------------------------------------------------------------------

    async def _guarded_poll(self, note: Notification) -> None:
        try:
            await self.poll(note)
        except SlackError as exc:
            logger.info("training %s: Slack unavailable while polling (%s)", note.training_id, exc)
        except Exception:
            logger.exception("poll of training %s failed", note.training_id)

    async def poll(self, note: Notification) -> None:
        """Poll one watched training's status and apply it."""
        now = time.time()
        # Claim this poll by moving its time: of several instances only one polls.
        if not await self.store.polls.schedule(
            note.workspace_id,
            note.training_id,
            next_at=now + self.poll_seconds,
            failures=note.poll_failures,
            previous=note.poll_next_at,
        ):
            return
        if now - note.created_at > MAX_WATCH_SECONDS:
            await self.store.polls.schedule(note.workspace_id, note.training_id, next_at=None)
            return
        key = await self.workspaces.key_for(note.workspace_id)
        client = await self.clients(note.workspace_id)
        if not key or client is None:
            await self.store.polls.schedule(note.workspace_id, note.training_id, next_at=None)
            return
        if self.limiter.cancel_pending(key):
            # A cancel on this account goes first; look again shortly.
            await self.store.polls.schedule(
                note.workspace_id, note.training_id, next_at=now + 5, failures=note.poll_failures
            )
            return
        status = await self._status(note.training_id, key)
        api = "v6" if is_v6_id(note.training_id) else "v3"
        stage = normalise(status.state, api=api) if status and status.definitive else None
        if stage is None:
            failures = note.poll_failures + 1
            delay = (
                status.retry_after
                if status and status.retry_after
                else self.poll_seconds * min(2**failures, 10)
            )
            next_at = None if failures >= MAX_POLL_FAILURES else time.time() + delay
            await self.store.polls.schedule(
                note.workspace_id, note.training_id, next_at=next_at, failures=failures
            )
            return
        await self.apply(client, note, stage, parse_eta(status.details if status else None))
        next_at = None if stage.final else time.time() + self.poll_seconds
        await self.store.polls.schedule(
            note.workspace_id, note.training_id, next_at=next_at, failures=0
        )
