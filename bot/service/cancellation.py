"""The cancellation service: claim, queue, call ModelsLab, record. It knows nothing of Slack."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bot.errors import MissingKey, StoreUnavailable
from bot.ids import validate_training_id
from bot.model import (
    ACTIVE_STATES,
    Cancellation,
    Claim,
    Hold,
    Notification,
    Origin,
    OutcomeKind,
    Safety,
    State,
)
from bot.modelslab import CancelOutcome, KeyLimiter, ModelsLabClient
from bot.service.access import AccessPolicy, Decision
from bot.stages import parse_eta
from bot.store import Store
from bot.timeouts import timeout
from bot.worker import QueueWorker

logger = logging.getLogger(__name__)

KeyLookup = Callable[[str], Awaitable[str | None]]
FinishedHook = Callable[[Cancellation], Awaitable[None]]
SafetyLookup = Callable[[str], Awaitable[Safety]]


class ReportHandover(Protocol):
    """Whoever posts outcomes (the reporter), as far as the worker needs to know it."""

    def reserve(self) -> tuple[str, float] | None:
        """Hold a slot for a report leased to us as it is written: (owner, lease seconds)."""

    def hand_over(self, row: Cancellation | None, *, lease_until: float | None = None) -> None:
        """A row has news to report (claimed, rescheduled, finished); ends any reservation."""


STATE_FOR_OUTCOME = {
    OutcomeKind.ACCEPTED: State.CANCELLED,
    OutcomeKind.STOPPED: State.CANCELLED,
    OutcomeKind.PROBABLY_CANCELLED: State.CANCELLED,
    OutcomeKind.DRY_RUN: State.CANCELLED,
    OutcomeKind.REFUSED: State.REJECTED,
    OutcomeKind.NOT_FOUND: State.REJECTED,
    OutcomeKind.BAD_KEY: State.REJECTED,
    OutcomeKind.UNAVAILABLE: State.FAILED,
}
NO_KEY = "no_key"
# How a held cancellation was withdrawn (its outcome); nothing reached ModelsLab.
UNDONE, DENIED, EXPIRED = "undone", "denied", "expired"


@dataclass(frozen=True)
class HoldAnswer:
    """What a decision on a held cancellation did: the row as it now stands, or why not."""

    cancellation: Cancellation | None
    done: bool
    refusal: str = ""
    # A rule refused the presser (audited), rather than the hold being over already.
    refused: bool = False
    # The approval time ended (the worker may not have withdrawn the row yet): when.
    ended_at: float | None = None


@dataclass(frozen=True)
class RequestResult:
    """What a request did: claimed a new cancellation, or found one already active."""

    cancellation: Cancellation
    created: bool
    notification: Notification | None = None


def _refused(row: Cancellation, rule: str, decision: Decision) -> HoldAnswer:
    """A presser refused by the access check: the rule, and the check's own reason."""
    return HoldAnswer(row, False, f"{rule} {decision.reason}".strip(), refused=True)


def new_worker_id() -> str:
    """Return a lease-owner id unique to this process."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


class StaticKeys:
    """A key lookup that returns one configured key for every workspace."""

    def __init__(self, key: str | None) -> None:
        self._key = key

    async def __call__(self, workspace_id: str) -> str | None:
        """Return the configured key."""
        return self._key


@dataclass(frozen=True)
class Preview:
    """What a typed id would cancel: its notification (if any) and, when known, its stage."""

    training_id: str
    notification: Notification | None
    stage: str | None = None  # ModelsLab's state word; None: unknown (no answer in time)
    eta: str | None = None
    api: str = "v3"
    # A cancellation that already holds the claim (held, requested, calling or cancelled).
    active: Cancellation | None = None


class CancellationService:
    """Claims cancellations and works them off the store's durable queue."""

    def __init__(
        self,
        *,
        store: Store,
        client: ModelsLabClient,
        keys: KeyLookup,
        dry_run: bool = False,
        lease_seconds: float = 45.0,
        poll_interval: float = 5.0,
        concurrency: int = 16,
        worker_id: str | None = None,
        on_finished: FinishedHook | None = None,
        limiter: KeyLimiter | None = None,
        reports: ReportHandover | None = None,
        safety: SafetyLookup | None = None,
        access: AccessPolicy | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.keys = keys
        self.dry_run = dry_run
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.worker_id = worker_id or new_worker_id()
        self.on_finished = on_finished
        self.limiter = limiter or KeyLimiter()
        self.reports = reports
        # Without them (the terminal), every request goes straight to the queue.
        self.safety = safety
        self.access = access
        self._changed = asyncio.Condition()
        self._worker: QueueWorker[Cancellation] = QueueWorker(
            name="cancellation-worker",
            take=self._take,
            handle=self._guarded,
            next_due=store.cancellations.next_due,
            concurrency=concurrency,
            idle=poll_interval,
            key=lambda row: row.id,
        )

    # -- the request path (runs before the ack: one key lookup and one INSERT) -------------------

    async def request(
        self,
        *,
        workspace_id: str,
        training_id: str,
        requested_by: str,
        origin: Origin,
        channel_id: str | None = None,
        response_url: str | None = None,
    ) -> RequestResult:
        """Validate and claim a cancellation; raise InvalidTrainingId or MissingKey."""
        training_id = validate_training_id(training_id)
        if not self.dry_run and not await self.keys(workspace_id):
            raise MissingKey(
                "no ModelsLab API key is set for this workspace; an admin has to set one first"
            )
        hold, held_until, owner_id = await self._hold_for(
            workspace_id, training_id, requested_by, origin
        )
        # With a free slot here, the new row is leased to this worker as it is inserted and
        # handed over in memory: the ModelsLab call starts without a transaction to take it.
        # A held row waits in the queue until its hold ends.
        reserved = hold is None and self._worker.reserve()
        try:
            claim = await self.store.cancellations.enqueue(
                workspace_id=workspace_id,
                training_id=training_id,
                requested_by=requested_by,
                origin=origin.value,
                dry_run=self.dry_run,
                channel_id=channel_id,
                response_url=response_url,
                lease_owner=self.worker_id if reserved else None,
                lease_seconds=self.lease_seconds,
                # The caller gave up (ack deadline): a row written anyway is still worked off.
                on_abandoned=functools.partial(self._claimed, reserved),
                hold=hold,
                held_until=held_until,
                owner_id=owner_id,
            )
        except Exception:  # a cancelled caller's reservation is settled by on_abandoned
            if reserved:
                self._worker.unreserve()
            raise
        self._claimed(reserved, claim)
        return RequestResult(claim.cancellation, claim.created, claim.notification)

    async def preview(self, workspace_id: str, training_id: str, *, within: float) -> Preview:
        """Describe a training before anyone cancels it; the status call gets `within` seconds."""
        training_id = validate_training_id(training_id)
        started = time.monotonic()
        note = await self.store.notifications.get(workspace_id, training_id)
        latest = await self.store.cancellations.latest(workspace_id, training_id)
        active = latest if latest is not None and latest.state in ACTIVE_STATES else None
        known = Preview(training_id, note, active=active)
        key = await self.keys(workspace_id)
        within -= time.monotonic() - started
        if not key or within <= 0 or active is not None:
            return known
        try:
            async with timeout(within), self.limiter.poll(key):
                status = await self.client.status(training_id, key)
        except asyncio.TimeoutError:
            return known
        if not status.definitive or not status.state:
            return known
        eta = parse_eta(status.details)
        return Preview(training_id, note, status.state, eta, status.api, active=None)

    async def _hold_for(
        self, workspace_id: str, training_id: str, requested_by: str, origin: Origin
    ) -> tuple[Hold | None, float | None, str | None]:
        """Whether a new request waits: (why, until when, the training's known owner)."""
        if self.safety is None or origin is Origin.CLI:
            return None, None, None
        safety = await self.safety(workspace_id)
        if not safety.two_person and safety.undo_seconds <= 0:
            return None, None, None
        # Recorded for every hold: the owner may Undo, and Approve under the two-person rule.
        note = await self.store.notifications.get(workspace_id, training_id)
        owner_id = note.owner_id if note is not None else None
        if safety.two_person and owner_id and owner_id != requested_by:
            return Hold.APPROVAL, time.time() + safety.approval_seconds, owner_id
        if safety.undo_seconds > 0:
            return Hold.UNDO, time.time() + safety.undo_seconds, owner_id
        return None, None, owner_id

    async def two_person_applies(self, workspace_id: str, training_id: str, user_id: str) -> bool:
        """Whether a request by `user_id` would wait for a second person's approval."""
        hold, _, _ = await self._hold_for(workspace_id, training_id, user_id, Origin.COMMAND)
        return hold is Hold.APPROVAL

    # -- decisions on held cancellations (Undo, Approve, Deny; expiry is the worker's) ---------

    async def undo(self, cancellation_id: int, *, workspace_id: str, user_id: str) -> HoldAnswer:
        """Withdraw a held cancellation: its requester, the training's owner or an allowed user."""
        row = await self._held(cancellation_id, workspace_id)
        if row is None:
            return await self._too_late(cancellation_id)
        return await self._withdraw(
            row,
            user_id,
            outcome=UNDONE,
            refusal="Only the requester, the training's owner or someone "
            "on the allow-list may undo this cancellation.",
        )

    async def deny(self, cancellation_id: int, *, workspace_id: str, user_id: str) -> HoldAnswer:
        """Refuse a cancellation waiting for approval (the owner, or an allowed user)."""
        row = await self._held(cancellation_id, workspace_id)
        if row is None or row.hold is not Hold.APPROVAL:
            return await self._too_late(cancellation_id)
        return await self._withdraw(
            row,
            user_id,
            outcome=DENIED,
            refusal="Only the training's owner or someone on the "
            "allow-list may deny this cancellation.",
        )

    async def _withdraw(
        self, row: Cancellation, user_id: str, *, outcome: str, refusal: str
    ) -> HoldAnswer:
        # Undo and Deny: the requester and the owner may always; anyone else must be allowed.
        if user_id not in (row.requested_by, row.owner_id):
            decision = await self._allowed(row.workspace_id, user_id)
            if not decision.allowed:
                return _refused(row, refusal, decision)
        return await self._withdrawn(row, by=user_id, outcome=outcome)

    async def approve(self, cancellation_id: int, *, workspace_id: str, user_id: str) -> HoldAnswer:
        """Approve a held cancellation: the owner or a second allowed user, never the requester."""
        row = await self._held(cancellation_id, workspace_id)
        if row is None or row.hold is not Hold.APPROVAL:
            return await self._too_late(cancellation_id)
        if user_id == row.requested_by:
            return HoldAnswer(
                row,
                False,
                "You asked for this cancellation, so you cannot approve "
                "it yourself: the two-person rule needs the training's owner or "
                "another person on the allow-list.",
                refused=True,
            )
        # The allow-list is checked again now: the requester may have been removed meanwhile.
        requester = await self._allowed(workspace_id, row.requested_by)
        if not requester.allowed:
            if requester.code == "group_lookup":
                why = (
                    "The requester's access could not be confirmed again (a user group could "
                    "not be looked up), so this cancellation is still waiting. Try Approve "
                    "again in a moment."
                )
            else:
                why = (
                    "The requester is no longer on the allow-list, so this "
                    "cancellation cannot go ahead."
                )
            return HoldAnswer(row, False, why, refused=True)
        if user_id != row.owner_id:
            decision = await self._allowed(workspace_id, user_id)
            if not decision.allowed:
                return _refused(
                    row,
                    "Only the training's owner or someone on the allow-list "
                    "may approve this cancellation.",
                    decision,
                )
        approved = await self.store.cancellations.end_hold(row.id, by=user_id, approve=True)
        if approved is None:
            return await self._too_late(cancellation_id)
        self._reported(approved)
        self.wake()
        return HoldAnswer(approved, True)

    async def _held(self, cancellation_id: int, workspace_id: str) -> Cancellation | None:
        row = await self.store.cancellations.get(cancellation_id)
        if row is None or row.workspace_id != workspace_id or row.state != State.HELD:
            return None
        return row

    async def _too_late(self, cancellation_id: int) -> HoldAnswer:
        row = await self.store.cancellations.get(cancellation_id)
        # An approval time that ended, whether or not the worker has withdrawn the row yet.
        if (
            row is not None
            and row.hold is Hold.APPROVAL
            and row.held_until is not None
            and (
                (row.state == State.HELD and row.held_until <= time.time())
                or (row.state == State.WITHDRAWN and row.outcome == EXPIRED)
            )
        ):
            return HoldAnswer(row, False, "The approval time has ended.", ended_at=row.held_until)
        return HoldAnswer(row, False, "This cancellation is no longer waiting, so nothing changed.")

    async def _allowed(self, workspace_id: str, user_id: str) -> Decision:
        if self.access is None:
            return Decision(False, "Nobody may decide on held cancellations here.", "no_policy")
        return await self.access.check(workspace_id, user_id)

    async def _withdrawn(
        self, row: Cancellation, *, by: str | None, outcome: str, owner: str | None = None
    ) -> HoldAnswer:
        reason = {
            UNDONE: "undone before ModelsLab was called",
            DENIED: "denied: the two-person rule needs an approval",
            EXPIRED: "nobody approved it in time",
        }[outcome]
        final = await self.store.cancellations.end_hold(
            row.id, by=by, outcome=outcome, reason=reason, owner=owner
        )
        if final is None:
            return await self._too_late(row.id)
        self._reported(final)
        await self._finished(final)
        return HoldAnswer(final, True)

    def _reported(self, row: Cancellation) -> None:
        if self.reports is not None:
            self.reports.hand_over(row, lease_until=None)

    def _claimed(self, reserved: bool, claim: Claim | None) -> None:
        """Start work on a new claim: in memory if it was leased to us, else through the queue."""
        if claim is not None and claim.created:
            if self.reports is not None:
                self.reports.hand_over(claim.cancellation)  # "cancelling…" shows at once
            if reserved:
                self._worker.submit(claim.cancellation, reserved=True)
            else:
                self.wake()
        elif reserved:
            self._worker.unreserve()

    @property
    def in_flight(self) -> int:
        """Cancellations being worked on by this process now."""
        return self._worker.in_flight

    def wake(self) -> None:
        """Tell the worker loop there is new work."""
        self._worker.wake()

    # -- the worker -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker loop on the running event loop."""
        self._worker.start()

    async def stop(self, *, grace: float = 20.0) -> None:
        """Stop taking work; let in-flight calls finish within `grace`, hand the rest back."""
        await self._worker.stop(grace=grace)

    async def drain(self) -> int:
        """Lease what is due and start processing it; return how many rows were taken."""
        return await self._worker.drain()

    async def _take(self, limit: int) -> list[Cancellation]:
        return await self.store.cancellations.take(
            self.worker_id, lease_seconds=self.lease_seconds, limit=limit
        )

    async def _guarded(self, row: Cancellation) -> None:
        try:
            await self.process(row)
        except StoreUnavailable as exc:
            # The lease expires and the row is retried; nothing is lost.
            logger.warning("cancellation %s: %s", row.id, exc)
        except asyncio.CancelledError:
            # Shutting down mid-call: hand the row back now rather than when the lease expires.
            # It stays in "calling", so whoever takes it knows the call may have reached ModelsLab.
            with contextlib.suppress(StoreUnavailable):
                await asyncio.shield(self.store.cancellations.release(row.id, self.worker_id))
            raise

    async def process(self, row: Cancellation) -> Cancellation | None:
        """Call ModelsLab for one leased cancellation and record the outcome."""
        if row.state == State.HELD and row.hold is Hold.APPROVAL:
            # Its approval time is over (the row was not due before): nothing is cancelled.
            return (
                await self._withdrawn(row, by=None, outcome=EXPIRED, owner=self.worker_id)
            ).cancellation
        # A held row taken here has seen its undo window end: the call goes ahead.
        # A row found in "calling" was interrupted mid-call: that call may have reached ModelsLab.
        may_have_reached = row.state == State.CALLING or row.may_have_reached
        key = None if row.dry_run else await self.keys(row.workspace_id)
        if key is None and not row.dry_run:
            final = await self._finish(
                row.id,
                state=State.REJECTED,
                outcome=NO_KEY,
                reason="no ModelsLab API key is set for this workspace",
            )
            return await self._finished(final)
        # Wait for the account's request slot first: the lease mark_calling sets must cover
        # the call itself (30 s budget), not the wait behind other cancels on this key.
        async with self.limiter.cancel(key or ""):
            # Re-leased for the call itself: the wait for the slot may have used up the lease.
            calling = await self.store.cancellations.mark_calling(
                row.id, self.worker_id, lease_seconds=self.lease_seconds
            )
            if calling is None:
                return None
            started = time.monotonic()
            outcome = await self.client.cancel(
                row.training_id, key or "", may_have_reached=may_have_reached, dry_run=row.dry_run
            )
        logger.info(
            "cancellation %s: training=%s workspace=%s outcome=%s calls=%d latency_ms=%d",
            row.id,
            row.training_id,
            row.workspace_id,
            outcome.kind.value,
            outcome.attempts,
            (time.monotonic() - started) * 1000,
        )
        return await self._record(calling, outcome)

    async def _record(self, row: Cancellation, outcome: CancelOutcome) -> Cancellation | None:
        if outcome.kind is OutcomeKind.RATE_LIMITED:
            delay = outcome.retry_after if outcome.retry_after is not None else 30.0
            updated = await self.store.cancellations.retry(
                row.id,
                self.worker_id,
                at=time.time() + delay,
                outcome=outcome.kind.value,
                reason=outcome.reason,
                may_have_reached=row.may_have_reached or outcome.may_have_reached,
            )
            if updated is not None and self.reports is not None:
                self.reports.hand_over(updated)  # the new retry time is news to show
            await self._notify_waiters()
            return updated
        final = await self._finish(
            row.id,
            state=STATE_FOR_OUTCOME[outcome.kind],
            outcome=outcome.kind.value,
            reason=outcome.reason,
        )
        return await self._finished(final)

    async def _finish(
        self, cancellation_id: int, *, state: State, outcome: str, reason: str
    ) -> Cancellation | None:
        """Record the outcome and hand the report to the reporter."""
        # With a reporter slot free, the report is leased to it in the finish transaction and
        # handed over in memory: the outcome is posted without a transaction to take it.
        slot = self.reports.reserve() if self.reports is not None else None
        lease_until = time.time() + slot[1] if slot else None
        final: Cancellation | None = None
        try:
            final = await self.store.cancellations.finish(
                cancellation_id,
                self.worker_id,
                state=state,
                outcome=outcome,
                reason=reason,
                report_owner=slot[0] if slot else None,
                report_lease_until=lease_until,
            )
        finally:
            if self.reports is not None:
                # Also when finish failed (None: nothing to hand over; the slot is given back).
                self.reports.hand_over(final, lease_until=lease_until)
        return final

    async def _finished(self, row: Cancellation | None) -> Cancellation | None:
        if row is not None and self.on_finished is not None:
            await self.on_finished(row)
        await self._notify_waiters()
        return row

    async def _notify_waiters(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- waiting (terminal, tests) --------------------------------------------------------------

    async def run_now(self, cancellation_id: int) -> Cancellation | None:
        """Process one cancellation in this process if it is due and nobody holds it."""
        row = await self.store.cancellations.take_one(
            cancellation_id, self.worker_id, lease_seconds=self.lease_seconds
        )
        if row is None:
            return None
        return await self.process(row)

    async def wait_settled(self, cancellation_id: int, *, timeout: float) -> Cancellation | None:
        """Wait until a cancellation is final or rescheduled; return it as it then stands."""
        deadline = time.monotonic() + timeout
        while True:
            row = await self.store.cancellations.get(cancellation_id)
            if row is None or row.is_final or (row.state == State.REQUESTED and row.outcome):
                return row
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return row
            # Another process may be doing the work, so poll as well as listen.
            async with self._changed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=min(0.5, remaining))
