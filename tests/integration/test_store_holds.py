"""Held cancellations in the store, on SQLite and PostgreSQL: the claim, the worker, decisions."""

from __future__ import annotations

import time

from bot.model import Hold, State
from bot.store import Store

TEAM, RUN = "T0HOLDS01", "heldRun01"


async def held(store: Store, *, hold: Hold, until: float, **kw: object) -> int:
    claim = await store.cancellations.enqueue(
        workspace_id=TEAM,
        training_id=RUN,
        requested_by="U0BOB0001",
        origin="button",
        hold=hold,
        held_until=until,
        owner_id="U0DAVE001",
        **kw,  # type: ignore[arg-type]
    )
    assert claim.created and claim.cancellation.state == State.HELD
    return claim.cancellation.id


async def test_a_held_row_holds_the_claim_and_waits_for_its_window(store: Store) -> None:
    row_id = await held(store, hold=Hold.UNDO, until=time.time() + 60, lease_owner="w1")
    again = await store.cancellations.enqueue(
        workspace_id=TEAM, training_id=RUN, requested_by="U0ALICE01", origin="command"
    )
    assert not again.created and again.cancellation.id == row_id
    row = await store.cancellations.get(row_id)
    assert row is not None and row.lease_owner is None  # never leased while held
    assert await store.cancellations.take("w1", lease_seconds=30) == []
    due = await store.cancellations.next_due()
    assert due is not None and due >= time.time() + 55
    [taken] = await store.cancellations.take("w1", lease_seconds=30, now=time.time() + 61)
    assert taken.id == row_id and taken.state == State.HELD
    calling = await store.cancellations.mark_calling(row_id, "w1", lease_seconds=30)
    assert calling is not None and calling.state == State.CALLING


async def test_the_first_decision_wins(store: Store) -> None:
    row_id = await held(store, hold=Hold.APPROVAL, until=time.time() + 60)
    approved = await store.cancellations.end_hold(row_id, by="U0ALICE01", approve=True)
    assert approved is not None and approved.state == State.REQUESTED
    assert approved.decided_by == "U0ALICE01" and approved.next_attempt_at <= time.time()
    assert await store.cancellations.end_hold(row_id, by="U0DAVE001", outcome="denied") is None


async def test_an_undone_row_frees_the_claim_and_never_reaches_a_worker(store: Store) -> None:
    row_id = await held(store, hold=Hold.UNDO, until=time.time() + 60)
    undone = await store.cancellations.end_hold(row_id, by="U0BOB0001", outcome="undone")
    assert undone is not None and undone.state == State.WITHDRAWN and undone.is_final
    assert await store.cancellations.take("w1", lease_seconds=30, now=time.time() + 120) == []
    fresh = await store.cancellations.enqueue(
        workspace_id=TEAM, training_id=RUN, requested_by="U0ALICE01", origin="command"
    )
    assert fresh.created and fresh.cancellation.id != row_id


async def test_expiry_needs_the_workers_lease_and_an_expired_approval_cannot_be_approved(
    store: Store,
) -> None:
    row_id = await held(store, hold=Hold.APPROVAL, until=time.time() - 1)
    assert await store.cancellations.end_hold(row_id, by="U0ALICE01", approve=True) is None
    assert (
        await store.cancellations.end_hold(row_id, by=None, outcome="expired", owner="w1") is None
    )
    [taken] = await store.cancellations.take("w1", lease_seconds=30)
    expired = await store.cancellations.end_hold(taken.id, by=None, outcome="expired", owner="w1")
    assert expired is not None and expired.state == State.WITHDRAWN
