"""The lease every queue shares (bot.store.lease), on each queue and on SQLite and PostgreSQL.

Cancellations, the report outbox and training events are worked the same way: a leased item is
not taken twice, an expired lease is taken again, release gives it back, next_due tells the
earliest. A queue that broke one of these would lose or double work after a crash.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bot.model import Origin, ReportState
from bot.store import Store
from bot.store.lease import LeasedQueue

_trainings = itertools.count()


async def _claim(store: Store) -> int:
    claim = await store.cancellations.enqueue(
        workspace_id="T1",
        training_id=f"t{next(_trainings)}",
        requested_by="U1",
        origin=Origin.COMMAND,
    )
    return claim.cancellation.id


async def _event(store: Store) -> int:
    return await store.training_events.enqueue(
        workspace_id="T1",
        training_id=f"t{next(_trainings)}",
        stage=None,
        logs=None,
        source="notify",
    )


@dataclass(frozen=True)
class Queue:
    """How the contract reaches one queue: the queue, and its own enqueue, retry and finish."""

    of: Callable[[Store], LeasedQueue[Any]]
    enqueue: Callable[[Store], Awaitable[int]]
    retry: Callable[[Store, Any, str, float], Awaitable[Any]]
    finish: Callable[[Store, Any, str], Awaitable[Any]]


QUEUES = {
    "cancellations": Queue(
        of=lambda s: s.cancellations,
        enqueue=_claim,
        retry=lambda s, item, owner, at: s.cancellations.retry(
            item.id, owner, at=at, outcome="rate_limited", reason="slow down"
        ),
        finish=lambda s, item, owner: s.cancellations.finish(
            item.id, owner, state="cancelled", outcome="accepted", reason=""
        ),
    ),
    "reports": Queue(
        of=lambda s: s.reports,
        enqueue=_claim,  # a claim owes Slack its "Cancelling…" report
        retry=lambda s, item, owner, at: s.reports.retry(
            item.id, owner, seen=item, at=at, error="Slack answered 503"
        ),
        finish=lambda s, item, owner: s.reports.finish(
            item.id, owner, seen=item, state=ReportState.DELIVERED
        ),
    ),
    "training_events": Queue(
        of=lambda s: s.training_events,
        enqueue=_event,
        retry=lambda s, item, owner, at: s.training_events.retry(item.id, at=at),
        finish=lambda s, item, owner: s.training_events.finish(item.id),
    ),
}


@pytest.fixture(params=list(QUEUES))
def queue(request: pytest.FixtureRequest) -> Queue:
    """Each queue in turn."""
    return QUEUES[request.param]


async def test_a_leased_item_is_not_taken_twice(store: Store, queue: Queue) -> None:
    q = queue.of(store)
    item_id = await queue.enqueue(store)
    now = time.time()
    assert [i.id for i in await q.take("w1", lease_seconds=30, now=now + 1)] == [item_id]
    assert await q.take("w2", lease_seconds=30, now=now + 2) == []
    assert await q.take_one(item_id, "w2", lease_seconds=30, now=now + 2) is None


async def test_workers_taking_at_once_share_the_items_out(store: Store, queue: Queue) -> None:
    q = queue.of(store)
    ids = {await queue.enqueue(store) for _ in range(6)}
    now = time.time() + 1
    first, second = await asyncio.gather(
        q.take("w1", lease_seconds=30, limit=10, now=now),
        q.take("w2", lease_seconds=30, limit=10, now=now),
    )
    mine, theirs = {i.id for i in first}, {i.id for i in second}
    assert not mine & theirs
    assert mine | theirs == ids


async def test_an_expired_lease_is_taken_again(store: Store, queue: Queue) -> None:
    q = queue.of(store)
    item_id = await queue.enqueue(store)
    now = time.time()
    await q.take("w1", lease_seconds=30, now=now + 1)
    # w1 died with the item: once its lease is over, another worker gets it.
    assert [i.id for i in await q.take("w2", lease_seconds=30, now=now + 32)] == [item_id]
    assert await q.take("w3", lease_seconds=30, now=now + 33) == []
    retaken = await q.take_one(item_id, "w3", lease_seconds=30, now=now + 63)
    assert retaken is not None and retaken.id == item_id


async def test_release_gives_the_item_back_to_anyone_and_only_its_holder_can(
    store: Store, queue: Queue
) -> None:
    q = queue.of(store)
    item_id = await queue.enqueue(store)
    now = time.time()
    await q.take("w1", lease_seconds=30, now=now + 1)
    await q.release(item_id, "w2")  # not w2's to give back
    assert await q.take("w2", lease_seconds=30, now=now + 2) == []
    await q.release(item_id, "w1")
    assert [i.id for i in await q.take("w2", lease_seconds=30, now=now + 2)] == [item_id]


async def test_next_due_tells_the_earliest_and_none_once_all_are_finished(
    store: Store, queue: Queue
) -> None:
    q = queue.of(store)
    assert await q.next_due() is None
    await queue.enqueue(store)
    await queue.enqueue(store)
    now = time.time()
    late, early = await q.take("w", lease_seconds=30, now=now + 1)
    await queue.retry(store, late, "w", now + 50)
    await queue.retry(store, early, "w", now + 20)
    assert await q.next_due() == pytest.approx(now + 20)
    assert await q.take("w", lease_seconds=30, now=now + 19) == []
    [again] = await q.take("w", lease_seconds=30, now=now + 21)
    assert again.id == early.id
    await queue.finish(store, again, "w")
    assert await q.next_due() == pytest.approx(now + 50)
    [last] = await q.take("w", lease_seconds=30, now=now + 51)
    await queue.finish(store, last, "w")
    assert await q.next_due() is None
