"""Claims that arrive together (one batch, one transaction) and the ack path's write priority.

On SQLite and PostgreSQL through the `store` fixture, except the pure Priority tests.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bot.model import Claim
from bot.store import Store
from bot.store.cancellations import CLAIM_BATCH, _PendingClaim
from bot.store.engine import Priority


async def claim(
    store: Store, training: str, user: str = "U1", team: str = "T1", **kw: Any
) -> Claim:
    return await store.cancellations.enqueue(
        workspace_id=team, training_id=training, requested_by=user, origin="button", **kw
    )


async def record_notification(
    store: Store, training: str, *, team: str = "T1", ts: str | None = "1764201600.000100"
) -> None:
    """Reserve a training's notification as the notifier does; record its ts once 'posted'."""
    assert await store.notifications.reserve(
        workspace_id=team,
        training_id=training,
        channel_id="C0TRAIN01",
        owner_id="U0OWNER",
        title="LoRA",
    )
    if ts is not None:
        await store.notifications.posted(team, training, channel_id="C0TRAIN01", message_ts=ts)


# -- Priority ---------------------------------------------------------------------------------


async def test_wait_turn_returns_at_once_when_no_claim_is_queued() -> None:
    priority = Priority(max_wait=30)
    await asyncio.wait_for(priority.wait_turn(), 1)


async def test_wait_turn_waits_for_the_urgent_block_to_end() -> None:
    priority = Priority(max_wait=30)
    with priority.urgent():
        waiter = asyncio.create_task(priority.wait_turn())
        done, _ = await asyncio.wait({waiter}, timeout=0.1)
        assert not done, "background work went ahead while a claim was queued"
    # The block is over: the background write goes now, not at max_wait.
    await asyncio.wait_for(waiter, 1)


async def test_nested_urgent_blocks_hold_until_the_last_ends() -> None:
    priority = Priority(max_wait=30)
    with priority.urgent():
        with priority.urgent():
            waiter = asyncio.create_task(priority.wait_turn())
        done, _ = await asyncio.wait({waiter}, timeout=0.05)
        assert not done, "one claim ended but another is still queued"
    await asyncio.wait_for(waiter, 1)


async def test_background_work_is_slowed_never_starved() -> None:
    priority = Priority(max_wait=0.05)
    loop = asyncio.get_running_loop()
    with priority.urgent():  # claims keep coming and never let up
        started = loop.time()
        await asyncio.wait_for(priority.wait_turn(), 5)
        waited = loop.time() - started
    # asyncio's timers fire no earlier than their deadline (to the clock's resolution).
    assert waited >= priority.max_wait - 0.001


async def test_background_store_writes_wait_while_a_claim_is_queued(store: Store) -> None:
    if store.dialect != "sqlite":
        # PostgreSQL's pool has no single writer for a claim to queue behind: nothing waits.
        with store.priority.urgent():
            await asyncio.wait_for(store.meta.set("k", "background"), 5)
        assert await store.meta.get("k") == "background"
        return
    store.priority.max_wait = 30
    with store.priority.urgent():
        write = asyncio.create_task(store.meta.set("k", "background"))
        done, _ = await asyncio.wait({write}, timeout=0.2)
        assert not done
        # A claim is on the ack path: it goes through while the background write waits.
        first = await asyncio.wait_for(claim(store, "F5jvdzGnYi"), 5)
        assert first.created
        assert not write.done()
        assert await store.meta.get("k") is None
    await asyncio.wait_for(write, 5)
    assert await store.meta.get("k") == "background"


# -- batched claims -----------------------------------------------------------------------------


async def test_many_concurrent_claims_for_different_trainings_all_create(store: Store) -> None:
    n = CLAIM_BATCH + 30  # more than one batch
    results = await asyncio.gather(*(claim(store, f"t{i:04d}", user=f"U{i}") for i in range(n)))
    assert all(r.created for r in results)
    assert len({r.cancellation.id for r in results}) == n
    # Each caller gets its own row back, not a neighbour's from the same batch.
    assert [(r.cancellation.training_id, r.cancellation.requested_by) for r in results] == [
        (f"t{i:04d}", f"U{i}") for i in range(n)
    ]
    # And each row is really there.
    for r in results[:: CLAIM_BATCH // 4]:
        stored = await store.cancellations.get(r.cancellation.id)
        assert stored is not None and stored.training_id == r.cancellation.training_id


async def test_concurrent_claims_of_one_training_in_one_batch_create_once(store: Store) -> None:
    trainings = ["a1", "b2", "c3"]
    calls = [(t, f"U{i}") for i in range(8) for t in trainings]
    results = await asyncio.gather(*(claim(store, t, user=u) for t, u in calls))
    for training in trainings:
        mine = [r for (t, _), r in zip(calls, results, strict=True) if t == training]
        assert sum(r.created for r in mine) == 1
        assert len({r.cancellation.id for r in mine}) == 1
        # Whoever was first is the requester everyone else is told about.
        assert mine[0].created
        assert {r.cancellation.requested_by for r in mine} == {"U0"}
    assert len({r.cancellation.id for r in results}) == len(trainings)


async def test_duplicates_across_workspaces_and_dry_run_are_separate_claims(store: Store) -> None:
    results = await asyncio.gather(
        claim(store, "x1", team="T1"),
        claim(store, "x1", team="T2"),
        claim(store, "x1", team="T1", dry_run=True),
        claim(store, "x1", team="T1", user="U2"),
    )
    assert [r.created for r in results] == [True, True, True, False]
    assert results[3].cancellation.id == results[0].cancellation.id
    assert len({r.cancellation.id for r in results}) == 3


async def test_a_claim_carries_the_trainings_posted_notification(store: Store) -> None:
    await record_notification(store, "noted", ts="1764201600.000200")
    await record_notification(store, "reserved", ts=None)  # being posted: no ts yet
    await record_notification(store, "elsewhere", team="T2")
    noted, reserved, bare, elsewhere = await asyncio.gather(
        claim(store, "noted"),
        claim(store, "reserved"),
        claim(store, "bare"),
        claim(store, "elsewhere"),
    )
    assert all(r.created for r in (noted, reserved, bare, elsewhere))
    assert noted.notification is not None
    assert (
        noted.notification.training_id,
        noted.notification.channel_id,
        noted.notification.message_ts,
    ) == ("noted", "C0TRAIN01", "1764201600.000200")
    assert reserved.notification is None
    assert bare.notification is None
    assert elsewhere.notification is None  # another workspace's message is not linked
    # A later click on the same training is told where the notification is, too.
    again = await claim(store, "noted", user="U2")
    assert not again.created and again.notification == noted.notification


async def test_a_claim_withdrawn_before_its_batch_starts_inserts_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_batch = store.cancellations._claim_batch
    batch_started = asyncio.Event()
    release = asyncio.Event()
    batches: list[list[str]] = []

    async def held_batch(batch: list[_PendingClaim]) -> None:
        batches.append([pending.values["training_id"] for pending in batch])
        batch_started.set()
        await release.wait()
        await real_batch(batch)

    monkeypatch.setattr(store.cancellations, "_claim_batch", held_batch)
    first = asyncio.create_task(claim(store, "first"))
    await asyncio.wait_for(batch_started.wait(), 5)
    # The writer is busy with the first batch: this claim queues for the next one.
    withdrawn = asyncio.create_task(claim(store, "withdrawn"))
    for _ in range(100):  # until it is queued behind the batch in progress
        if store.cancellations._claims:
            break
        await asyncio.sleep(0)
    assert store.cancellations._claims
    withdrawn.cancel()  # e.g. the ack deadline passed
    with pytest.raises(asyncio.CancelledError):
        await withdrawn
    release.set()
    assert (await asyncio.wait_for(first, 5)).created
    assert batches == [["first"]]
    assert await store.cancellations.latest("T1", "withdrawn") is None
    # Nothing was claimed behind the user's back: asking again creates it now.
    monkeypatch.setattr(store.cancellations, "_claim_batch", real_batch)
    assert (await claim(store, "withdrawn")).created


async def test_a_claim_leased_at_insert_is_kept_from_other_workers_until_it_expires(
    store: Store,
) -> None:
    now = time.time()
    leased = await claim(store, "F5jvdzGnYi", lease_owner="w1", lease_seconds=30, now=now)
    assert leased.created
    assert (leased.cancellation.lease_owner, leased.cancellation.lease_expires_at) == (
        "w1",
        pytest.approx(now + 30),
    )
    assert await store.cancellations.take("w2", lease_seconds=30, now=now + 1) == []
    # w1 died without working it off: another worker takes it once the lease has expired.
    [retaken] = await store.cancellations.take("w2", lease_seconds=30, now=now + 31)
    assert retaken.id == leased.cancellation.id and retaken.lease_owner == "w2"
    assert await store.cancellations.mark_calling(retaken.id, "w1", lease_seconds=30) is None


async def test_a_claim_without_lease_owner_is_due_at_once(store: Store) -> None:
    plain = await claim(store, "F5jvdzGnYi")
    assert plain.cancellation.lease_owner is None
    assert plain.cancellation.lease_expires_at is None
    [taken] = await store.cancellations.take("w2", lease_seconds=30)
    assert taken.id == plain.cancellation.id


async def test_a_duplicate_claim_does_not_touch_the_existing_lease(store: Store) -> None:
    now = time.time()
    first = await claim(store, "F5jvdzGnYi", lease_owner="w1", lease_seconds=30, now=now)
    again = await claim(store, "F5jvdzGnYi", user="U2", lease_owner="w2", lease_seconds=30)
    assert not again.created and again.cancellation.id == first.cancellation.id
    stored = await store.cancellations.get(first.cancellation.id)
    assert stored is not None and stored.lease_owner == "w1"


async def test_a_failed_batch_fails_each_of_its_claims_and_the_next_one_works(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.errors import StoreUnavailable

    real_batch = store.cancellations._claim_batch

    async def database_down(batch: list[_PendingClaim]) -> None:
        await asyncio.sleep(0)
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(store.cancellations, "_claim_batch", database_down)
    results = await asyncio.gather(
        *(claim(store, f"t{i}") for i in range(5)), return_exceptions=True
    )
    # Every waiting user is told the database is down; none is left hanging.
    assert all(isinstance(r, StoreUnavailable) for r in results)
    monkeypatch.setattr(store.cancellations, "_claim_batch", real_batch)
    assert (await asyncio.wait_for(claim(store, "t0"), 5)).created


# -- the report lease handed over in finish() -----------------------------------------------------


async def test_finish_leases_the_report_to_the_reporter_only_when_no_reporter_holds_it(
    store: Store,
) -> None:
    free = (await claim(store, "free", lease_owner="w", lease_seconds=30)).cancellation
    until = time.time() + 60
    done = await store.cancellations.finish(
        free.id,
        "w",
        state="cancelled",
        outcome="accepted",
        reason="",
        report_owner="me",
        report_lease_until=until,
    )
    assert done is not None
    assert (done.report_lease_owner, done.report_lease_expires_at) == ("me", until)

    # Another reporter is still posting "Cancelling…" for this one: its lease is kept, so the
    # outcome is not delivered twice at once.
    held = (await claim(store, "held", lease_owner="w", lease_seconds=30)).cancellation
    assert await store.reports.take_one(held.id, "other", lease_seconds=60) is not None
    done = await store.cancellations.finish(
        held.id,
        "w",
        state="cancelled",
        outcome="accepted",
        reason="",
        report_owner="me",
        report_lease_until=until,
    )
    assert done is not None and done.report_lease_owner == "other"
    assert done.report_state == "pending"  # delivered by whoever holds it, on its next pass
