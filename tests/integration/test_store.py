"""The store on SQLite and PostgreSQL: claims, leases and the durable queue."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.config import async_database_url
from bot.store import Store


async def _claim(store: Store, training: str = "F5jvdzGnYi", user: str = "U1", team: str = "T1"):
    return await store.cancellations.enqueue(
        workspace_id=team, training_id=training, requested_by=user, origin="command"
    )


async def test_migrations_run_twice_and_reach_head(store: Store) -> None:
    from bot.store.migrations import head_revision

    await store.migrate()
    assert await store.schema_revision() == head_revision()


async def test_first_claim_wins_and_later_ones_see_it(store: Store) -> None:
    first = await _claim(store, user="UALICE")
    second = await _claim(store, user="UBOB")
    assert first.created and not second.created
    assert second.cancellation.id == first.cancellation.id
    assert second.cancellation.requested_by == "UALICE"


async def test_claims_are_per_workspace_and_training(store: Store) -> None:
    assert (await _claim(store, "a1")).created
    assert (await _claim(store, "a2")).created
    assert (await _claim(store, "a1", team="T2")).created


async def test_rejected_or_failed_can_be_requested_again(store: Store) -> None:
    for final_state in ("rejected", "failed"):
        training = f"t-{final_state}"
        first = await _claim(store, training)
        row = await store.cancellations.take_one(first.cancellation.id, "w", lease_seconds=30)
        assert row is not None
        assert await store.cancellations.mark_calling(row.id, "w", lease_seconds=30)
        await store.cancellations.finish(
            row.id, "w", state=final_state, outcome="refused", reason="no"
        )
        again = await _claim(store, training, user="U2")
        assert again.created and again.cancellation.id != first.cancellation.id


async def test_cancelled_blocks_new_claims(store: Store) -> None:
    await _claim(store)
    [row] = await store.cancellations.take("w", lease_seconds=30)
    await store.cancellations.mark_calling(row.id, "w", lease_seconds=30)
    done = await store.cancellations.finish(
        row.id, "w", state="cancelled", outcome="accepted", reason="ok"
    )
    assert done is not None and done.is_final and done.report_state == "pending"
    again = await _claim(store, user="U9")
    assert not again.created and again.cancellation.state == "cancelled"


async def test_concurrent_claims_make_one_row(store: Store) -> None:
    results = await asyncio.gather(*(_claim(store, user=f"U{i}") for i in range(20)))
    assert sum(r.created for r in results) == 1
    assert len({r.cancellation.id for r in results}) == 1


async def test_lease_keeps_other_workers_away_until_it_expires(store: Store) -> None:
    await _claim(store)
    now = time.time()
    assert len(await store.cancellations.take("w1", lease_seconds=30, now=now)) == 1
    assert await store.cancellations.take("w2", lease_seconds=30, now=now + 1) == []
    retaken = await store.cancellations.take("w2", lease_seconds=30, now=now + 31)
    assert [r.lease_owner for r in retaken] == ["w2"]
    # The first worker lost its lease: its late result must not overwrite.
    assert await store.cancellations.mark_calling(retaken[0].id, "w1", lease_seconds=30) is None
    assert (
        await store.cancellations.finish(
            retaken[0].id, "w1", state="cancelled", outcome="accepted", reason=""
        )
        is None
    )


async def test_crashed_call_is_retaken_in_calling_state(store: Store) -> None:
    await _claim(store)
    [row] = await store.cancellations.take("w1", lease_seconds=30)
    await store.cancellations.mark_calling(row.id, "w1", lease_seconds=30)
    [again] = await store.cancellations.take("w2", lease_seconds=30, now=time.time() + 31)
    assert again.state == "calling" and again.attempts == 1


async def test_rescheduled_row_waits_for_its_time(store: Store) -> None:
    await _claim(store)
    [row] = await store.cancellations.take("w", lease_seconds=30)
    await store.cancellations.mark_calling(row.id, "w", lease_seconds=30)
    later = time.time() + 120
    await store.cancellations.retry(
        row.id, "w", at=later, outcome="rate_limited", reason="slow down"
    )
    assert await store.cancellations.take("w", lease_seconds=30) == []
    assert await store.cancellations.next_due() == pytest.approx(later)
    assert len(await store.cancellations.take("w", lease_seconds=30, now=later + 1)) == 1


async def test_dry_run_rows_do_not_block_real_cancels(store: Store) -> None:
    dry = await store.cancellations.enqueue(
        workspace_id="T1", training_id="x1", requested_by="U1", origin="cli", dry_run=True
    )
    real = await _claim(store, "x1")
    assert dry.created and real.created


async def test_notifications_and_meta_round_trip(store: Store) -> None:
    await store.notifications.save(
        workspace_id="T1", training_id="x", channel_id="C1", message_ts="1.1", owner_id="U1"
    )
    await store.notifications.save(
        workspace_id="T1", training_id="x", channel_id="C1", message_ts="1.2"
    )
    note = await store.notifications.get("T1", "x")
    assert note is not None and note.message_ts == "1.2"
    assert await store.notifications.get("T2", "x") is None
    await store.meta.set("k", "v1")
    await store.meta.set("k", "v2")
    assert await store.meta.get("k") == "v2"


async def test_recent_is_per_workspace_newest_first(store: Store) -> None:
    for i in range(12):
        await store.cancellations.enqueue(
            workspace_id="T1", training_id=f"r{i}", requested_by="U", origin="cli", now=1000.0 + i
        )
    await _claim(store, team="T2")
    recent = await store.cancellations.recent("T1")
    assert [r.training_id for r in recent] == [f"r{i}" for i in range(11, 1, -1)]


async def test_two_engines_race_for_one_claim(database_url: str, store: Store) -> None:
    other = Store.from_url(async_database_url(database_url))
    try:
        results = await asyncio.gather(
            *(
                s.cancellations.enqueue(
                    workspace_id="T1", training_id="race", requested_by=f"U{i}", origin="button"
                )
                for i in range(10)
                for s in (store, other)
            )
        )
    finally:
        await other.close()
    assert sum(r.created for r in results) == 1


async def test_sqlite_file_is_created_in_wal_mode(tmp_path) -> None:
    path = tmp_path / "new" / "bot.db"
    path.parent.mkdir()
    s = Store.from_url(async_database_url(f"sqlite:///{path}"))
    try:
        await s.migrate()
        async with s.engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        assert mode == "wal" and path.exists()
    finally:
        await s.close()
