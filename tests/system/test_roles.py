"""Web and worker processes on one PostgreSQL (design §2 "Roles", issue 16).

`python -m bot serve --no-worker` only verifies, authorises, claims and acks; `python -m bot
worker` works the queues. Real subprocesses on TEST_DATABASE_URL (skipped without it): a claim
made by a web process wakes every worker at once (LISTEN/NOTIFY), exactly one of them calls
ModelsLab, and polling stays the safety net when the LISTEN connection is lost.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa

from bot.config import async_database_url
from bot.store import Store
from bot.store.wakeups import APPLICATION_NAME
from tests.fakes import modelslab as ml
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import block_actions_payload, form_payload_body
from tests.harness import ALICE, CHANNEL, bot_env, free_port, wait_until
from tests.processes import BotProcess, bot_process, in_thread, post_signed, rows
from tests.system.test_crash import set_columns
from tests.system.test_scale_out import TRAININGS, save_notifications

PEOPLE = [f"U0USER{i:03d}" for i in range(20)]
ALLOWED = ",".join([ALICE, *PEOPLE])
# The workers' polling interval (CancellationService.poll_interval): the safety net.
POLL_SECONDS = 5.0


@asynccontextmanager
async def web(
    slack: FakeSlack, modelslab: FakeModelsLab, pg_url: str, cwd: Path
) -> AsyncIterator[BotProcess]:
    """`python -m bot serve --no-worker` against the fakes."""
    await asyncio.to_thread(cwd.mkdir, exist_ok=True)
    port = free_port()
    env = bot_env(slack, modelslab, pg_url, CANCEL_ALLOWED_USERS=ALLOWED)
    args = ("serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port))
    async with bot_process(env, *args, cwd=cwd, port=port) as bot:
        yield bot


@asynccontextmanager
async def worker(
    slack: FakeSlack, modelslab: FakeModelsLab, pg_url: str, cwd: Path
) -> AsyncIterator[BotProcess]:
    """`python -m bot worker` with PORT set (its /healthz says it is up)."""
    await asyncio.to_thread(cwd.mkdir, exist_ok=True)
    port = free_port()
    env = bot_env(slack, modelslab, pg_url, CANCEL_ALLOWED_USERS=ALLOWED, PORT=str(port))
    env.pop("SLACK_SIGNING_SECRET")  # a worker answers no Slack request: it needs none
    async with bot_process(env, "worker", cwd=cwd, port=port) as bot:
        await listening(pg_url, count=None)
        yield bot


async def listeners(pg_url: str) -> list[int]:
    """The backend pids of every wake-up LISTEN connection on the database."""
    store = Store.from_url(async_database_url(pg_url))
    try:
        async with store.engine.connect() as conn:
            result = await conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = :name "
                    "AND datname = current_database() AND query LIKE 'LISTEN%'"
                ),
                {"name": APPLICATION_NAME},
            )
            return sorted(int(pid) for (pid,) in result)
    finally:
        await store.close()


async def listening(pg_url: str, *, count: int | None) -> list[int]:
    """Wait until `count` (None: at least one) LISTEN connections are up; return their pids."""
    found: list[int] = []

    async def up() -> bool:
        found[:] = await listeners(pg_url)
        return len(found) >= 1 if count is None else len(found) == count

    await wait_until(up, timeout=10, what=f"{count or 'a'} LISTEN connection(s)")
    return found


def click(slack: FakeSlack, training: str, stamp: str, user: str, name: str) -> bytes:
    """A Cancel click on a training's notification, as Slack signs and sends it."""
    payload = block_actions_payload(
        value=training,
        user_id=user,
        channel_id=CHANNEL,
        message_ts=stamp,
        response_url=slack.response_url(name),
    )
    return form_payload_body(payload)


async def click_to_outcome(
    slack: FakeSlack, url: str, training: str, stamp: str, *, timeout: float
) -> float:
    """Click Cancel; return the seconds until the outcome reply is in the notification's thread."""
    started = time.monotonic()
    status, _, _ = await post_signed(
        slack, url, click(slack, training, stamp, ALICE, f"one-{training}")
    )
    assert status == 200
    await slack.wait_for("chat.postMessage", where=in_thread(CHANNEL, stamp), timeout=timeout)
    return time.monotonic() - started


async def test_two_webs_two_workers_twenty_clicks_one_modelslab_call(
    slack: FakeSlack, modelslab: FakeModelsLab, pg_url: str, tmp_path: Path
) -> None:
    modelslab.delay = 0.3  # the clicks arrive while the one call is in flight
    async with (
        web(slack, modelslab, pg_url, tmp_path / "web-a") as a,
        web(slack, modelslab, pg_url, tmp_path / "web-b") as b,
        worker(slack, modelslab, pg_url, tmp_path / "worker-a") as wa,
        worker(slack, modelslab, pg_url, tmp_path / "worker-b") as wb,
    ):
        await listening(pg_url, count=2)  # one per worker; web processes do not listen
        stamps = await save_notifications(slack, pg_url)
        training, stamp = TRAININGS[0], stamps[TRAININGS[0]]
        urls = [a.url or "", b.url or ""]
        answers = await asyncio.gather(
            *(
                post_signed(slack, urls[i % 2], click(slack, training, stamp, user, f"c{i:02d}"))
                for i, user in enumerate(PEOPLE)
            )
        )
        assert [status for status, _, _ in answers] == [200] * len(PEOPLE), answers
        assert max(took for _, _, took in answers) < 3.0, answers
        [reply] = await slack.wait_for(
            "chat.postMessage", where=in_thread(CHANNEL, stamp), timeout=15
        )

        async def delivered() -> bool:
            return all(r.report_state == "delivered" for r in await rows(pg_url))

        await wait_until(delivered, timeout=15, what="the report to be recorded")
        [row] = await rows(pg_url)

        def losers_told() -> bool:
            return all(
                slack.response_posts.get(f"c{i:02d}")
                for i, user in enumerate(PEOPLE)
                if user != row.requested_by
            )

        await wait_until(losers_told, timeout=10, what="every losing click's answer")
        await asyncio.sleep(0.5)  # and nothing more arrives for anyone

        # Split click → outcome, woken across processes (never a poll interval).
        modelslab.delay = 0.0
        split = [
            await click_to_outcome(slack, urls[n % 2], t, stamps[t], timeout=POLL_SECONDS)
            for n, t in enumerate(TRAININGS[1:])
        ]
    output = "".join(p.out + p.err for p in (a, b, wa, wb))
    assert "good-key" not in output and slack.bot_token not in output
    assert len(modelslab.cancel_calls(training)) == 1
    assert f"<@{row.requested_by}>" in reply.args["text"], reply.args
    assert "cancel accepted" in reply.args["text"]
    assert len(slack.thread(CHANNEL, stamp)) == 1
    for i, user in enumerate(PEOPLE):
        if user != row.requested_by:
            [told] = [p.get("text", "") for p in slack.response_posts[f"c{i:02d}"]]
            assert "already" in told and f"<@{row.requested_by}>" in told, told
    # The claims were worked by the worker processes, not by the web processes.
    assert {r.lease_owner for r in await rows(pg_url)} == {None}
    assert "(no worker" in a.err + a.out and "(worker only)" in wa.err + wa.out
    assert max(split) < 2.0, split
    print(f"split click → outcome: median {statistics.median(split) * 1000:.0f} ms, {split}")


async def test_web_without_worker_claims_and_waits_then_a_worker_works_it(
    slack: FakeSlack, modelslab: FakeModelsLab, pg_url: str, tmp_path: Path
) -> None:
    async with web(slack, modelslab, pg_url, tmp_path / "web") as a:
        stamps = await save_notifications(slack, pg_url)
        training = TRAININGS[0]
        stamp = stamps[training]
        status, ack, took = await post_signed(
            slack, a.url or "", click(slack, training, stamp, ALICE, "first")
        )
        assert status == 200 and took < 3.0, (status, ack, took)
        [row] = await rows(pg_url)
        # Claimed and answered; nobody works it: no lease, no ModelsLab call, no outcome.
        assert (row.state, row.lease_owner, row.requested_by) == ("requested", None, ALICE)
        assert modelslab.cancel_calls() == []
        assert slack.thread(CHANNEL, stamp) == []

        started = time.monotonic()
        async with worker(slack, modelslab, pg_url, tmp_path / "worker"):
            [reply] = await slack.wait_for(
                "chat.postMessage", where=in_thread(CHANNEL, stamp), timeout=10
            )
        after_start = time.monotonic() - started
    assert "cancel accepted" in reply.args["text"], reply.args
    assert len(modelslab.cancel_calls(training)) == 1
    [done] = await rows(pg_url)
    assert (done.id, done.state) == (row.id, "cancelled")
    print(f"worker start → outcome {after_start:.2f}s")


async def test_worker_killed_mid_call_is_resumed_by_another(
    slack: FakeSlack, modelslab: FakeModelsLab, pg_url: str, tmp_path: Path
) -> None:
    training = TRAININGS[0]
    modelslab.script(training, ml.hang())
    async with (
        web(slack, modelslab, pg_url, tmp_path / "web") as a,
        worker(slack, modelslab, pg_url, tmp_path / "worker-a") as wa,
        worker(slack, modelslab, pg_url, tmp_path / "worker-b") as wb,
    ):
        stamps = await save_notifications(slack, pg_url)
        stamp = stamps[training]
        status, _, _ = await post_signed(
            slack, a.url or "", click(slack, training, stamp, ALICE, "c")
        )
        assert status == 200
        await modelslab.wait_for_calls(1, timeout=10)

        # The "cancelling" update is out and its report pass over: the kill lands mid-call only
        # (a report lease held by the dead process would wait out its own 60 s; see test_crash).
        async def cancelling_shown() -> bool:
            return (await rows(pg_url))[0].report_state == "waiting"

        await wait_until(cancelling_shown, timeout=10, what="the cancelling update")
        [row] = await rows(pg_url)
        assert row.state == "calling" and row.lease_owner is not None, row
        pid = int(row.lease_owner.split(":")[1])
        holder, other = (wa, wb) if wa.proc.pid == pid else (wb, wa)
        assert holder.proc.pid == pid, (pid, wa.proc.pid, wb.proc.pid)
        await holder.kill()  # SIGKILL mid-call: its lease is never handed back
        assert holder.proc.returncode == -9

        modelslab.script(training, ml.ok())
        # Its 45 s lease "has run out" (aged, not slept through; see tests/test_crash.py).
        await set_columns(pg_url, row.id, lease_expires_at=time.time() - 1)
        [reply] = await slack.wait_for(
            "chat.postMessage", where=in_thread(CHANNEL, stamp), timeout=POLL_SECONDS + 10
        )

        async def delivered() -> bool:
            return (await rows(pg_url))[0].report_state == "delivered"

        await wait_until(delivered, timeout=10, what="the report to be recorded")
    [done] = await rows(pg_url)
    assert (done.id, done.state, done.outcome) == (row.id, "cancelled", "accepted")
    assert "cancel accepted" in reply.args["text"]
    assert len(modelslab.cancel_calls(training)) == 2  # the killed call + exactly one re-send
    assert len(slack.thread(CHANNEL, stamp)) == 1
    assert other.proc.returncode == 0  # the survivor did it and stopped cleanly


async def test_listen_connection_terminated_is_reestablished_and_polling_covers_the_gap(
    slack: FakeSlack, modelslab: FakeModelsLab, pg_url: str, tmp_path: Path
) -> None:
    async with (
        web(slack, modelslab, pg_url, tmp_path / "web") as a,
        worker(slack, modelslab, pg_url, tmp_path / "worker") as w,
    ):
        stamps = await save_notifications(slack, pg_url)
        [before] = await listening(pg_url, count=1)
        store = Store.from_url(async_database_url(pg_url))
        try:
            async with store.engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
        finally:
            await store.close()
        # A click while the worker may not be listening: the poll picks it up.
        during = await click_to_outcome(
            slack, a.url or "", TRAININGS[0], stamps[TRAININGS[0]], timeout=POLL_SECONDS + 3
        )

        async def replaced() -> bool:
            now = await listeners(pg_url)
            return len(now) == 1 and now != [before]

        await wait_until(replaced, timeout=10, what="a new LISTEN connection")
        # Listening again: the next clicks are woken at once.
        after = [
            await click_to_outcome(slack, a.url or "", t, stamps[t], timeout=POLL_SECONDS)
            for t in TRAININGS[1:]
        ]
    assert during < POLL_SECONDS + 3, during
    assert max(after) < 2.0, after
    assert "LISTEN connection was lost" in w.err + w.out
    assert len(modelslab.cancel_calls()) == len(TRAININGS)
    print(f"during the outage {during:.2f}s; after {[round(x, 3) for x in after]}")


async def test_split_click_to_outcome_is_close_to_a_single_process(
    slack: FakeSlack, modelslab: FakeModelsLab, pg_url: str, tmp_path: Path
) -> None:
    """The split deployment's click → outcome is a wake-up away from one process's, not a poll."""
    trainings = [f"Timed{i:02d}run" for i in range(16)]
    stamps = await save_notifications(slack, pg_url, trainings)
    half = len(trainings) // 2
    port = free_port()
    env = bot_env(slack, modelslab, pg_url, CANCEL_ALLOWED_USERS=ALLOWED)
    await asyncio.to_thread((tmp_path / "single").mkdir)
    args = ("serve", "--host", "127.0.0.1", "--port", str(port))
    async with bot_process(env, *args, cwd=tmp_path / "single", port=port) as single:
        one = [
            await click_to_outcome(slack, single.url or "", t, stamps[t], timeout=POLL_SECONDS)
            for t in trainings[:half]
        ]
    async with (
        web(slack, modelslab, pg_url, tmp_path / "web") as a,
        worker(slack, modelslab, pg_url, tmp_path / "worker"),
    ):
        split = [
            await click_to_outcome(slack, a.url or "", t, stamps[t], timeout=POLL_SECONDS)
            for t in trainings[half:]
        ]
    print(
        f"click → outcome, median: single {statistics.median(one) * 1000:.0f} ms, "
        f"split {statistics.median(split) * 1000:.0f} ms ({one}, {split})"
    )
    # The first of each is a cold start (connections); the rest say what a deployment sees.
    assert statistics.median(split[1:]) < statistics.median(one[1:]) + 0.25, (one, split)
    assert len(modelslab.cancel_calls()) == len(trainings)
