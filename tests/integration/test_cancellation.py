"""The cancellation service against a fake ModelsLab, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.config import async_database_url
from bot.errors import InvalidTrainingId, MissingKey
from bot.model import Cancellation, Origin
from bot.modelslab import ModelsLabClient
from bot.service.cancellation import CancellationService, StaticKeys
from bot.store import Store
from tests.fakes import modelslab as ml
from tests.fakes.modelslab import FakeModelsLab


def make_service(
    store: Store, fake: FakeModelsLab, *, key: str | None = "good-key", **kw
) -> CancellationService:
    client = ModelsLabClient(base_url=fake.base_url, attempt_timeout=1.0, budget=3.0, backoff=0.01)
    return CancellationService(
        store=store, client=client, keys=StaticKeys(key), poll_interval=0.2, **kw
    )


async def request(service: CancellationService, training: str = "F5jvdzGnYi", user: str = "U1"):
    return await service.request(
        workspace_id="T1", training_id=training, requested_by=user, origin=Origin.COMMAND
    )


async def settled(
    service: CancellationService, cancellation_id: int, timeout: float = 10.0
) -> Cancellation:
    row = await service.wait_settled(cancellation_id, timeout=timeout)
    assert row is not None
    return row


async def test_a_claimed_cancellation_is_worked_off_once(
    store: Store, modelslab: FakeModelsLab
) -> None:
    service = make_service(store, modelslab)
    service.start()
    try:
        first = await request(service, user="UALICE")
        results = await asyncio.gather(*(request(service, user=f"U{i}") for i in range(20)))
        row = await settled(service, first.cancellation.id)
    finally:
        await service.stop()
    assert first.created and not any(r.created for r in results)
    assert {r.cancellation.requested_by for r in results} == {"UALICE"}
    assert (row.state, row.outcome) == ("cancelled", "accepted")
    assert len(modelslab.cancel_calls("F5jvdzGnYi")) == 1
    assert modelslab.cancel_calls()[0].key == "good-key"


@pytest.mark.parametrize(
    ("reply", "state", "outcome"),
    [
        (ml.error("Training already completed"), "rejected", "refused"),
        (ml.json_404(), "rejected", "not_found"),
        (ml.unauthorized(), "rejected", "bad_key"),
        (ml.server_error(503), "failed", "unavailable"),
    ],
)
async def test_outcomes_map_to_states(
    store: Store, modelslab: FakeModelsLab, reply: ml.Reply, state: str, outcome: str
) -> None:
    modelslab.script("F5jvdzGnYi", reply)
    service = make_service(store, modelslab)
    result = await request(service)
    row = await service.run_now(result.cancellation.id)
    assert row is not None and (row.state, row.outcome) == (state, outcome)
    assert row.reason


async def test_rejected_can_be_requested_again(store: Store, modelslab: FakeModelsLab) -> None:
    modelslab.script(
        "F5jvdzGnYi", ml.server_error(500), ml.server_error(500), ml.server_error(500), ml.ok()
    )
    service = make_service(store, modelslab)
    first = await request(service)
    assert (await service.run_now(first.cancellation.id)).state == "failed"  # type: ignore[union-attr]
    again = await request(service, user="U2")
    assert again.created
    assert (await service.run_now(again.cancellation.id)).state == "cancelled"  # type: ignore[union-attr]


async def test_rate_limit_longer_than_budget_is_rescheduled(
    store: Store, modelslab: FakeModelsLab
) -> None:
    modelslab.script("F5jvdzGnYi", ml.rate_limited(retry_after=60))
    service = make_service(store, modelslab)
    result = await request(service)
    before = time.time()
    row = await service.run_now(result.cancellation.id)
    assert row is not None and row.state == "requested" and row.outcome == "rate_limited"
    assert row.next_attempt_at >= before + 59
    # Not due yet: nobody takes it now.
    assert await service.run_now(result.cancellation.id) is None


async def test_invalid_ids_and_missing_keys_claim_nothing(
    store: Store, modelslab: FakeModelsLab
) -> None:
    service = make_service(store, modelslab, key=None)
    with pytest.raises(InvalidTrainingId):
        await request(service, training="../etc/passwd")
    with pytest.raises(MissingKey):
        await request(service)
    assert await store.cancellations.recent("T1") == []


async def test_dry_run_records_a_cancel_without_calling(
    store: Store, modelslab: FakeModelsLab
) -> None:
    client = ModelsLabClient(base_url=modelslab.base_url, dry_run=True)
    service = CancellationService(store=store, client=client, keys=StaticKeys(None), dry_run=True)
    result = await request(service)
    row = await service.run_now(result.cancellation.id)
    assert row is not None and (row.state, row.outcome, row.dry_run) == (
        "cancelled",
        "dry_run",
        True,
    )
    assert modelslab.cancel_calls() == []


async def test_worker_killed_mid_call_is_completed_once_after_lease_expiry(
    database_url: str, store: Store, modelslab: FakeModelsLab
) -> None:
    modelslab.script("F5jvdzGnYi", ml.hang(), ml.error("Training already cancelled"))
    doomed = make_service(store, modelslab, lease_seconds=1.0)
    result = await request(doomed)
    task = asyncio.create_task(doomed.run_now(result.cancellation.id))
    await modelslab.wait_for_calls(1)
    task.cancel()  # the worker dies with its call in flight; its row stays in "calling"
    await asyncio.gather(task, return_exceptions=True)

    survivor_store = Store.from_url(async_database_url(database_url))
    survivor = make_service(survivor_store, modelslab, lease_seconds=1.0)
    survivor.start()
    try:
        row = await settled(survivor, result.cancellation.id)
    finally:
        await survivor.stop()
        await survivor_store.close()
    # The first call may have cancelled it: "already cancelled" now means probably cancelled.
    assert (row.state, row.outcome) == ("cancelled", "probably_cancelled")
    assert len(modelslab.cancel_calls()) == 2


async def test_two_services_on_two_engines_make_one_call(
    database_url: str, store: Store, modelslab: FakeModelsLab
) -> None:
    other_store = Store.from_url(async_database_url(database_url))
    services = [make_service(store, modelslab), make_service(other_store, modelslab)]
    for s in services:
        s.start()
    try:
        results = await asyncio.gather(
            *(request(s, user=f"U{i}") for i in range(10) for s in services)
        )
        [winner] = [r for r in results if r.created]
        row = await settled(services[0], winner.cancellation.id)
        # Both workers keep polling; give the loser a chance to (wrongly) call.
        await asyncio.gather(*(s.drain() for s in services))
    finally:
        for s in services:
            await s.stop()
        await other_store.close()
    assert row.state == "cancelled"
    assert len(modelslab.cancel_calls()) == 1


async def test_a_call_that_may_have_reached_modelslab_is_remembered_across_a_scheduled_retry(
    store: Store, modelslab: FakeModelsLab
) -> None:
    modelslab.script(
        "F5jvdzGnYi",
        ml.server_error(502),
        ml.rate_limited(retry_after=60),
        ml.error("Training already finished"),
    )
    service = make_service(store, modelslab)
    result = await request(service)
    row = await service.run_now(result.cancellation.id)
    assert row is not None and row.outcome == "rate_limited" and row.may_have_reached
    async with store.engine.begin() as conn:  # the clock moves on to the scheduled retry
        from bot.store.schema import cancellations

        await conn.execute(
            cancellations.update()
            .where(cancellations.c.id == row.id)
            .values(next_attempt_at=time.time() - 1)
        )
    done = await service.run_now(row.id)
    # The 502 may have cancelled it: "already finished" now is not a refusal.
    assert done is not None and (done.state, done.outcome) == ("cancelled", "probably_cancelled")
