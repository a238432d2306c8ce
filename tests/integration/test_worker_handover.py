"""A new claim is leased to this process's worker as it is inserted and handed over in memory.

ModelsLab is held by the test (a gate in front of the client's cancel), so what the store holds
before ModelsLab answers is read deterministically. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.modelslab import ModelsLabClient
from bot.service.cancellation import CancellationService, StaticKeys
from bot.store import Store
from bot.store.cancellations import _PendingClaim
from tests.fakes.modelslab import FakeModelsLab
from tests.integration.test_cancellation import request, settled


def make_service(store: Store, fake: FakeModelsLab, **kw: Any) -> CancellationService:
    """A service polling every 50 ms with a 30 s lease: an expired lease never explains a pass."""
    client = ModelsLabClient(base_url=fake.base_url, attempt_timeout=1.0, budget=3.0, backoff=0.01)
    return CancellationService(
        store=store,
        client=client,
        keys=StaticKeys("good-key"),
        lease_seconds=30,
        poll_interval=0.05,
        **kw,
    )


class HeldModelsLab:
    """Holds every ModelsLab cancel until released; records which trainings were called."""

    def __init__(self, service: CancellationService, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = asyncio.Event()
        self.calling: list[str] = []
        self._changed = asyncio.Condition()
        real = service.client.cancel

        async def held(training_id: str, *args: Any, **kwargs: Any) -> Any:
            self.calling.append(training_id)
            async with self._changed:
                self._changed.notify_all()
            await self.release.wait()
            return await real(training_id, *args, **kwargs)

        monkeypatch.setattr(service.client, "cancel", held)

    async def wait_calling(self, n: int = 1) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.calling) >= n), 5)


@pytest.fixture
async def service(store: Store, modelslab: FakeModelsLab) -> AsyncIterator[CancellationService]:
    svc = make_service(store, modelslab)
    try:
        yield svc
    finally:
        await svc.stop(grace=5)
        await svc.client.aclose()


async def test_a_new_claim_is_leased_to_this_worker_and_called_once(
    store: Store, modelslab: FakeModelsLab, service: CancellationService, monkeypatch
) -> None:
    held = HeldModelsLab(service, monkeypatch)
    service.start()
    before = time.time()
    result = await request(service)
    # Leased at the INSERT itself: the row the claim returned already names this worker.
    assert result.created
    assert result.cancellation.lease_owner == service.worker_id
    assert result.cancellation.lease_expires_at is not None
    assert result.cancellation.lease_expires_at >= before + service.lease_seconds
    stored = await store.cancellations.get(result.cancellation.id)
    assert stored is not None and stored.lease_owner == service.worker_id
    # Another instance's worker cannot take it while this one is working on it.
    assert await store.cancellations.take("other-instance", lease_seconds=30) == []
    await held.wait_calling(1)
    assert service.in_flight == 1
    held.release.set()
    row = await settled(service, result.cancellation.id)
    assert (row.state, row.outcome) == ("cancelled", "accepted")
    assert held.calling == ["F5jvdzGnYi"]
    assert len(modelslab.cancel_calls("F5jvdzGnYi")) == 1


async def test_without_the_worker_loop_the_claim_stays_free_for_run_now(
    store: Store, modelslab: FakeModelsLab, service: CancellationService
) -> None:
    # The terminal (python -m bot cancel) claims and then runs the cancel itself.
    result = await request(service)
    assert result.created and result.cancellation.lease_owner is None
    stored = await store.cancellations.get(result.cancellation.id)
    assert stored is not None and stored.lease_owner is None
    row = await service.run_now(result.cancellation.id)
    assert row is not None and (row.state, row.outcome) == ("cancelled", "accepted")
    assert len(modelslab.cancel_calls("F5jvdzGnYi")) == 1


async def test_after_stop_a_claim_is_left_for_the_other_instances(
    store: Store, modelslab: FakeModelsLab, service: CancellationService
) -> None:
    service.start()
    await service.stop(grace=1)  # SIGTERM: this instance is going away
    result = await request(service)
    assert result.created and result.cancellation.lease_owner is None
    [taken] = await store.cancellations.take("other-instance", lease_seconds=30)
    assert taken.id == result.cancellation.id
    assert modelslab.cancel_calls() == []


async def test_a_claim_made_while_the_worker_is_full_is_not_leased_and_still_worked_off(
    store: Store, modelslab: FakeModelsLab, monkeypatch
) -> None:
    svc = make_service(store, modelslab, concurrency=1)
    held = HeldModelsLab(svc, monkeypatch)
    svc.start()
    try:
        first = await request(svc, training="firstRun01")
        assert first.cancellation.lease_owner == svc.worker_id
        await held.wait_calling(1)
        second = await request(svc, training="secondRun2")
        # No free slot here: the row is left unleased for whichever worker is free first.
        assert second.created and second.cancellation.lease_owner is None
        held.release.set()
        rows = [await settled(svc, r.cancellation.id) for r in (first, second)]
    finally:
        await svc.stop(grace=5)
        await svc.client.aclose()
    assert [r.state for r in rows] == ["cancelled", "cancelled"]
    assert sorted(held.calling) == ["firstRun01", "secondRun2"]
    assert len(modelslab.cancel_calls()) == 2


async def test_duplicate_requests_hand_over_one_row_once(
    store: Store, modelslab: FakeModelsLab, service: CancellationService, monkeypatch
) -> None:
    held = HeldModelsLab(service, monkeypatch)
    service.start()
    results = await asyncio.gather(*(request(service, user=f"U{i}") for i in range(10)))
    assert sum(r.created for r in results) == 1
    await held.wait_calling(1)
    held.release.set()
    await settled(service, results[0].cancellation.id)
    assert held.calling == ["F5jvdzGnYi"]
    assert len(modelslab.cancel_calls()) == 1


async def test_a_burst_of_claims_leases_no_more_than_the_worker_can_run(
    store: Store, modelslab: FakeModelsLab, monkeypatch
) -> None:
    svc = make_service(store, modelslab, concurrency=2)
    held = HeldModelsLab(svc, monkeypatch)
    svc.start()
    try:
        results = await asyncio.gather(
            *(request(svc, training=f"burstRun{i:02d}") for i in range(6))
        )
        leased_here = [r for r in results if r.cancellation.lease_owner == svc.worker_id]
        in_flight = svc.in_flight
        held.release.set()
        for r in results:
            await settled(svc, r.cancellation.id)
    finally:
        await svc.stop(grace=5)
        await svc.client.aclose()
    assert in_flight <= 2
    assert len(leased_here) <= 2


async def test_a_request_that_times_out_after_its_claim_was_written_is_still_worked_off(
    store: Store, modelslab: FakeModelsLab, service: CancellationService, monkeypatch
) -> None:
    real_batch = store.cancellations._claim_batch
    batch_started = asyncio.Event()
    release_batch = asyncio.Event()

    batch_written = asyncio.Event()

    async def held_batch(batch: list[_PendingClaim]) -> None:
        batch_started.set()
        await release_batch.wait()
        try:
            await real_batch(batch)
        finally:
            batch_written.set()

    monkeypatch.setattr(store.cancellations, "_claim_batch", held_batch)
    service.start()
    pending = asyncio.create_task(request(service))
    await asyncio.wait_for(batch_started.wait(), 5)
    pending.cancel()  # what `timeout(remaining)` in request_cancel does at the ack deadline
    release_batch.set()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await asyncio.wait_for(batch_written.wait(), 5)
    # The row was written (it was in a batch already); the user was told to check history.
    row = await store.cancellations.latest("T1", "F5jvdzGnYi")
    assert row is not None
    # The worker polls every 0.05 s; the lease is 30 s. It must not wait for the lease to expire.
    try:
        await modelslab.wait_for_calls(1, timeout=2.0)
    except asyncio.TimeoutError:
        called = False
    else:
        called = True
    assert called, "no ModelsLab call: the row sits leased to a worker that never got it"
