"""Delivers cancellation reports to Slack through the store's outbox, at least once.

A report is: the notification re-rendered in place, a public parent message when there is no
notification, the outcome as a thread reply, and the audit-channel copy. Each step records what
it posted, so a resumed report skips what is done and looks (by message metadata) for a post
whose recording was interrupted before posting again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.crypto import SecretBox
from bot.errors import SlackError, StoreUnavailable
from bot.model import Cancellation, Notification, OutcomeKind, ReportState, State
from bot.service.cancellation import new_worker_id
from bot.slack.clients import answering_429s, get_permalink
from bot.slack.delivery.renderer import NotificationRenderer
from bot.slack.delivery.response_urls import ResponseUrls
from bot.slack.errors import PERMANENT_ERRORS, slack_call
from bot.slack.messages.blocks import (
    build_announcement,
    build_hold_notice,
    build_outcome,
    build_retry_notice,
)
from bot.store import Store
from bot.worker import QueueWorker

logger = logging.getLogger(__name__)

ClientLookup = Callable[[str], Awaitable[Any]]
ChannelLookup = Callable[[str], Awaitable[str | None]]
METADATA_TYPE = "cancel_training_report"
HELD_MARKER = "held"  # the held notice (Undo / Approve / Deny) is in the thread
MAX_REPORT_ATTEMPTS = 8
# A resumed report looks for its earlier post before posting again; this many failed passes
# later it posts anyway (a possible duplicate is better than a lost report).
LOOKUP_ATTEMPTS = MAX_REPORT_ATTEMPTS // 2
# Slack caps history reads of non-Marketplace apps at about 15 messages (design §5).
LOOKUP_LIMIT = 15
# Between our clock and the ts Slack stamps on a post (NTP keeps it to about a second).
CLOCK_SKEW = 30.0
# A post is made (or times out) well within this after its attempt started.
POST_WINDOW = 60.0
# Without a recorded start, the look-back starts this long before the request.
UNKNOWN_START_SKEW = 300.0


class _Transient(Exception):
    """The report waits in the outbox: Slack could not take it now (a transient SlackError).

    `retry_after`: what Slack asked to wait. `looking`: the look-up for an earlier post is what
    failed, so the step stays marked as posting and the next pass looks again before posting.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, looking: bool = False):
        super().__init__(message)
        self.retry_after = retry_after
        self.looking = looking


class Reporter:
    """Works off pending reports: thread replies, notification updates, audit posts."""

    def __init__(
        self,
        *,
        store: Store,
        clients: ClientLookup,
        secret_box: SecretBox,
        audit_channel: ChannelLookup,
        session: Any = None,
        response_urls: ResponseUrls | None = None,
        renderer: NotificationRenderer | None = None,
        lease_seconds: float = 60.0,
        poll_interval: float = 5.0,
        concurrency: int = 8,
    ) -> None:
        self.store = store
        self.clients = clients
        self.audit_channel = audit_channel
        # The fallback when a thread cannot be posted in (custody of the requester's response_url).
        self.response_urls = response_urls or ResponseUrls(box=secret_box, session=session)
        self.renderer = renderer or NotificationRenderer(store=store)
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.owner = new_worker_id()
        self._worker: QueueWorker[Cancellation] = QueueWorker(
            name="reporter",
            take=self._take,
            handle=self._guarded,
            next_due=store.reports.next_due,
            concurrency=concurrency,
            idle=poll_interval,
            key=lambda row: row.id,
        )

    # -- loop ---------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Nudge the delivery loop (producers call hand_over)."""
        self._worker.wake()

    def reserve(self) -> tuple[str, float] | None:
        """Hold a slot for a report leased to this reporter as it is written: (owner, seconds)."""
        return (self.owner, self.lease_seconds) if self._worker.reserve() else None

    def hand_over(self, row: Cancellation | None, *, lease_until: float | None = None) -> None:
        """A row has something to report (claimed, rescheduled, finished): the one way in.

        Delivered now if the store leased its report to us as it was written (`lease_until`, as
        reserved; that ends the reservation in every case), else left to the loop, woken now.
        """
        if lease_until is not None:
            if (
                row is not None
                and row.report_lease_owner == self.owner
                and row.report_lease_expires_at == lease_until
            ):
                if self._worker.submit(row, reserved=True):
                    return
            else:
                self._worker.unreserve()
        self.wake()

    def start(self) -> None:
        """Start the delivery loop."""
        self._worker.start()

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop the loop; give in-flight deliveries `grace` seconds (their leases cover the rest)."""
        await self._worker.stop(grace=grace)

    async def drain(self) -> int:
        """Lease due reports and start delivering them."""
        return await self._worker.drain()

    async def _take(self, limit: int) -> list[Cancellation]:
        return await self.store.reports.take(
            self.owner, lease_seconds=self.lease_seconds, limit=limit
        )

    async def _guarded(self, row: Cancellation) -> None:
        try:
            await self.deliver(row)
        except _Transient as exc:
            attempts = row.report_attempts + 1  # failed passes so far, this one included
            if attempts >= MAX_REPORT_ATTEMPTS:
                logger.warning(
                    "report %s undeliverable after %d attempts: %s", row.id, attempts, exc
                )
                await self.response_urls.post(row, self._outcome_text(row))
                await self.store.reports.finish(
                    row.id,
                    self.owner,
                    seen=row,
                    state=ReportState.UNDELIVERABLE,
                    error=str(exc),
                    failed=True,
                )
                return
            delay = max(min(300.0, 2.0 ** (attempts - 1) * 2), exc.retry_after or 0.0)
            logger.info("report %s deferred %.0fs: %s", row.id, delay, exc)
            await self.store.reports.retry(
                row.id,
                self.owner,
                seen=row,
                at=time.time() + delay,
                error=str(exc),
                keep_posting=exc.looking,
            )
        except StoreUnavailable as exc:
            logger.warning("report %s: %s", row.id, exc)
        except Exception:
            # The listener-boundary rule applies here too: one bad report must not stop the loop.
            logger.exception("report %s failed", row.id)
            await self.store.reports.retry(
                row.id, self.owner, seen=row, at=time.time() + 60, error="internal error"
            )

    async def deliver_now(self, cancellation_id: int) -> None:
        """Deliver one cancellation's report in this process (the terminal has no reporter loop)."""
        row = await self.store.reports.take_one(
            cancellation_id, self.owner, lease_seconds=self.lease_seconds
        )
        if row is not None:
            await self._guarded(row)

    # -- one report ------------------------------------------------------------------------------

    async def deliver(self, row: Cancellation) -> None:
        """Bring Slack up to date with one cancellation."""
        client = await self.clients(row.workspace_id)
        if client is None:
            # The workspace is gone (uninstalled): nothing can be posted; the record stays.
            await self.store.reports.finish(
                row.id, self.owner, seen=row, state=ReportState.UNDELIVERABLE
            )
            return
        note = await self.store.notifications.get(row.workspace_id, row.training_id)
        if note is not None:
            thread: tuple[str, str] | None = (note.channel_id, note.message_ts)
            owner_id = note.owner_id
        else:
            thread = await self._own_thread(client, row)
            owner_id = None
        if not row.is_final:
            if note is not None:
                await self._render_notification(client, row, note)
            elif row.outcome == OutcomeKind.RATE_LIMITED:
                # A notification shows the retry time itself; otherwise say it in the thread.
                await self._announce_retry(client, row, thread)
            if row.state == State.HELD:
                await self._announce_hold(client, row, thread)
            if note is None:
                await self._link_own_thread(client, row, thread)
            await self.store.reports.finish(row.id, self.owner, seen=row, state=ReportState.WAITING)
            return
        # The outcome first: the thread reply is what the requester is waiting for.
        if row.reply_ts is None:
            await self._post_outcome(client, row, thread, owner_id)
        if note is not None:
            await self._render_notification(client, row)
        audit = await self.audit_channel(row.workspace_id)
        if audit and row.audit_ts is None:
            message = build_outcome(row, owner_id=owner_id)
            try:
                ts = await self._post_once(
                    client, row, "audit", channel=audit, thread_ts=None, message=message
                )
            except SlackError as exc:
                logger.warning("audit channel %s refused the report: %s", audit, exc)
                ts = None
            await self.store.reports.update(
                row.id, self.owner, audit_ts=ts or "-", report_posting=None
            )
        if note is None:
            await self._link_own_thread(client, row, thread)
        await self.store.reports.finish(row.id, self.owner, seen=row, state=ReportState.DELIVERED)

    async def _announce_hold(
        self, client: Any, row: Cancellation, thread: tuple[str, str] | None
    ) -> None:
        """Post the held notice (Undo, or Approve / Deny) in the thread, once."""
        if row.rendered == HELD_MARKER:
            return
        message = build_hold_notice(row)
        if thread is not None:
            try:
                await self._post_once(
                    client,
                    row,
                    HELD_MARKER,
                    channel=thread[0],
                    thread_ts=thread[1],
                    message=message,
                )
            except SlackError:
                await self.response_urls.post(row, str(message["text"]), blocks=message["blocks"])
        else:
            await self.response_urls.post(row, str(message["text"]), blocks=message["blocks"])
        audit = await self.audit_channel(row.workspace_id)
        if audit:
            try:
                await self._post_once(
                    client,
                    row,
                    "held-audit",
                    channel=audit,
                    thread_ts=None,
                    message={"text": message["text"]},  # a record: no buttons there
                )
            except SlackError as exc:
                logger.warning("audit channel %s refused the held notice: %s", audit, exc)
        await self.store.reports.update(
            row.id, self.owner, rendered=HELD_MARKER, report_posting=None
        )

    async def _announce_retry(
        self, client: Any, row: Cancellation, thread: tuple[str, str] | None
    ) -> None:
        """Tell when a rate-limited cancel will be retried (once per scheduled time)."""
        marker = f"retry:{int(row.next_attempt_at)}"
        if row.rendered == marker:
            return
        message = build_retry_notice(row)
        text = str(message["text"])
        if thread is not None:
            try:
                await self._post_once(
                    client,
                    row,
                    marker[:16],
                    channel=thread[0],
                    thread_ts=thread[1],
                    message=message,
                )
            except SlackError:
                await self.response_urls.post(row, text)
        else:
            await self.response_urls.post(row, text)
        await self.store.reports.update(row.id, self.owner, rendered=marker, report_posting=None)

    async def _render_notification(
        self, client: Any, row: Cancellation, note: Notification | None = None
    ) -> None:
        try:
            await self.renderer.render(client, row.workspace_id, row.training_id, note=note)
        except SlackError as exc:  # the renderer lets only transient ones through
            raise _Transient(str(exc)) from exc

    async def _own_thread(self, client: Any, row: Cancellation) -> tuple[str, str] | None:
        if row.report_thread_ts and row.report_channel:
            return row.report_channel, row.report_thread_ts
        if row.report_channel == "-" or not row.channel_id:
            return None
        try:
            ts = await self._post_once(
                client,
                row,
                "announce",
                channel=row.channel_id,
                thread_ts=None,
                message=build_announcement(row),
            )
        except SlackError:
            await self.store.reports.update(
                row.id, self.owner, report_channel="-", report_posting=None
            )
            return None
        await self.store.reports.update(
            row.id,
            self.owner,
            report_channel=row.channel_id,
            report_thread_ts=ts,
            report_posting=None,
        )
        return (row.channel_id, ts) if ts else None

    async def _link_own_thread(
        self, client: Any, row: Cancellation, thread: tuple[str, str] | None
    ) -> None:
        """Record the own thread's permalink, once, after what the requester is waiting for."""
        if thread is None or row.report_permalink:
            return
        link = await get_permalink(client, *thread)
        if link:
            await self.store.reports.update(row.id, self.owner, report_permalink=link)

    async def _post_outcome(
        self, client: Any, row: Cancellation, thread: tuple[str, str] | None, owner_id: str | None
    ) -> None:
        message = build_outcome(row, owner_id=owner_id)
        if thread is not None:
            try:
                ts = await self._post_once(
                    client, row, "reply", channel=thread[0], thread_ts=thread[1], message=message
                )
            except SlackError as exc:
                logger.info(
                    "report %s: cannot post in %s (%s); using response_url", row.id, thread[0], exc
                )
            else:
                await self.store.reports.update(
                    row.id, self.owner, reply_ts=ts or "-", report_posting=None
                )
                return
        delivered = await self.response_urls.post(row, message["text"])
        await self.store.reports.update(
            row.id, self.owner, reply_ts="response_url" if delivered else "-"
        )

    async def _post_once(
        self,
        client: Any,
        row: Cancellation,
        step: str,
        *,
        channel: str,
        thread_ts: str | None,
        message: dict[str, Any],
    ) -> str | None:
        """Post a message unless an interrupted earlier attempt already did (found by metadata).

        Raises _Transient to wait in the outbox, SlackError when Slack refused the post for good.
        """
        if row.report_posting == step:
            found = await self._find_earlier_post(client, row, step, channel, thread_ts)
            if found:
                return found
        await self.store.reports.update(
            row.id, self.owner, report_posting=step, report_posting_at=time.time()
        )
        metadata = {
            "event_type": METADATA_TYPE,
            "event_payload": {"cancellation_id": row.id, "step": step},
        }
        try:
            with slack_call("chat.postMessage"):
                response = await client.chat_postMessage(
                    channel=channel,
                    thread_ts=thread_ts,
                    metadata=metadata,
                    unfurl_links=False,
                    **message,
                )
        except SlackError as exc:
            if exc.transient:
                raise _Transient(str(exc), retry_after=exc.retry_after) from exc
            if exc.error not in PERMANENT_ERRORS:
                logger.warning("Slack error treated as permanent: %s", exc.error)
            raise
        return str(response.get("ts") or "") or None

    async def _find_earlier_post(
        self, client: Any, row: Cancellation, step: str, channel: str, thread_ts: str | None
    ) -> str | None:
        """The ts of this step's post from an interrupted attempt, found by its metadata.

        One narrow read (Slack caps history reads of non-Marketplace apps at about 15 messages
        and one call a minute): only the messages since that attempt started. A 429 or an
        outage defers the report to look again later; only after LOOKUP_ATTEMPTS failed passes
        (or when Slack refuses the read for good) does it post without knowing.
        """
        started = row.report_posting_at
        # Narrow on both sides, so 15 messages from others around it cannot hide the post.
        oldest = (
            started - CLOCK_SKEW if started is not None else row.requested_at - UNKNOWN_START_SKEW
        )
        window: dict[str, Any] = {
            "oldest": f"{oldest:.6f}",
            "inclusive": True,
            "limit": LOOKUP_LIMIT,
            "include_all_metadata": True,
        }
        if started is not None:
            # The interrupted attempt posted within its own pass, not at any later time.
            window["latest"] = f"{started + CLOCK_SKEW + POST_WINDOW:.6f}"
        lookup = answering_429s(client)
        try:
            if thread_ts:
                with slack_call("conversations.replies"):
                    response = await lookup.conversations_replies(
                        channel=channel, ts=thread_ts, **window
                    )
            else:
                with slack_call("conversations.history"):
                    response = await lookup.conversations_history(channel=channel, **window)
        except SlackError as exc:
            if exc.transient and row.report_attempts < LOOKUP_ATTEMPTS:
                raise _Transient(
                    f"looking for an earlier post: {exc}", retry_after=exc.retry_after, looking=True
                ) from exc
            logger.info(
                "report %s: could not look for an earlier post (%s); posting", row.id, exc.error
            )
            return None
        for message in response.get("messages") or []:
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if (
                meta.get("event_type") == METADATA_TYPE
                and payload.get("cancellation_id") == row.id
                and payload.get("step") == step
            ):
                return str(message.get("ts"))
        return None

    def _outcome_text(self, row: Cancellation) -> str:
        return str(build_outcome(row)["text"])
