"""Crashes: `kill -9` of `python -m bot serve` mid-call, and reports interrupted mid-post (§6).

Real subprocesses on PostgreSQL (TEST_DATABASE_URL; skipped without it). A killed process never
hands its lease back, so the row waits for its 45 s lease to expire. Instead of sleeping through
it, the tests age `lease_expires_at` (or the report's `report_lease_expires_at`) in the database,
as if the clock had moved on; nothing else in the rows is touched.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bot.config import async_database_url
from bot.model import Cancellation
from bot.slack.delivery.reporter import METADATA_TYPE
from bot.store import Store
from bot.store.schema import cancellations
from tests.fakes import modelslab as ml
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FIRST_TS, FakeSlack
from tests.fakes.slack_requests import slash_command_body
from tests.harness import ALICE, CHANNEL, TRAINING, wait_until
from tests.processes import in_thread, post_signed, press_card, rows, serving


async def set_columns(database_url: str, row_id: int, **values: object) -> None:
    """Write a few columns of one cancellation (used only to age leases)."""
    store = Store.from_url(async_database_url(database_url))
    try:
        async with store.engine.begin() as conn:
            await conn.execute(
                cancellations.update().where(cancellations.c.id == row_id).values(**values)
            )
    finally:
        await store.close()


async def only_row(database_url: str) -> Cancellation:
    [row] = await rows(database_url)
    return row


def assert_no_secret_in(output: str, slack: FakeSlack) -> None:
    """Neither the ModelsLab key nor the bot token is in a process's output."""
    assert "good-key" not in output and slack.bot_token not in output


def top_level(slack: FakeSlack) -> list[str]:
    """The ts of every top-level message in CHANNEL."""
    return [m.ts for m in slack.messages.get(CHANNEL, []) if m.thread_ts in (None, m.ts)]


async def crash_mid_call(
    slack: FakeSlack, modelslab: FakeModelsLab, pg_url: str, tmp_path: Path
) -> Cancellation:
    """/cancel-training while ModelsLab hangs, then SIGKILL the server during that call."""
    modelslab.script(TRAINING, ml.hang())
    async with serving(slack, modelslab, pg_url, tmp_path) as bot:
        body = slash_command_body(text=TRAINING, response_url=slack.response_url("cmd"))
        status, text, took = await post_signed(slack, bot.url or "", body)
        assert status == 200 and took < 2.5, (text, took)
        answer = await press_card(bot.url or "", slack, text, "card")
        assert "Cancelling training" in str(answer["text"]), answer
        await modelslab.wait_for_calls(1, timeout=10)

        # The "asked to cancel" parent is out and its report pass is over (not mid-post).
        async def parent_posted() -> bool:
            return (await only_row(pg_url)).report_state == "waiting"

        await wait_until(parent_posted, timeout=10, what="the parent message")
        await bot.kill()  # SIGKILL: no signal handler, no lease release, no goodbye
        assert bot.proc.returncode == -9, bot.describe()
        assert_no_secret_in(bot.out + bot.err, slack)

    row = await only_row(pg_url)
    # The dead process still "holds" the row, mid-call, for the rest of its 45 s lease.
    assert row.state == "calling" and row.lease_owner is not None, row
    assert row.lease_expires_at is not None and row.lease_expires_at > time.time() + 30, row
    assert len(modelslab.cancel_calls(TRAINING)) == 1
    return row


async def test_sigkill_mid_call_then_restart_completes_the_cancellation_once(
    slack: FakeSlack, modelslab: FakeModelsLab, pg_url: str, tmp_path: Path
) -> None:
    row = await crash_mid_call(slack, modelslab, pg_url, tmp_path)
    [parent_ts] = top_level(slack)

    # The killed call may have reached ModelsLab; on the re-send ModelsLab says it is done.
    modelslab.script(TRAINING, ml.error("Training already cancelled"))
    await set_columns(pg_url, row.id, lease_expires_at=time.time() - 1)  # 45 s have "passed"
    async with serving(slack, modelslab, pg_url, tmp_path) as restarted:
        [reply] = await slack.wait_for(
            "chat.postMessage", where=in_thread(CHANNEL, parent_ts), timeout=15
        )

        async def delivered() -> bool:
            return (await only_row(pg_url)).report_state == "delivered"

        await wait_until(delivered, timeout=10, what="the report to be recorded")

    assert_no_secret_in(restarted.out + restarted.err, slack)
    done = await only_row(pg_url)
    assert (done.id, done.state, done.outcome) == (row.id, "cancelled", "probably_cancelled")
    text = reply.args["text"]
    assert "probably cancelled (not confirmed)" in text and f"<@{ALICE}>" in text, text
    # At least once (the hung call, then exactly one re-send), and reported exactly once.
    assert len(modelslab.cancel_calls(TRAINING)) == 2
    assert top_level(slack) == [parent_ts]
    assert len(slack.thread(CHANNEL, parent_ts)) == 1


async def test_two_instances_complete_a_recovered_cancellation_once_between_them(
    slack: FakeSlack, modelslab: FakeModelsLab, pg_url: str, tmp_path: Path
) -> None:
    row = await crash_mid_call(slack, modelslab, pg_url, tmp_path)
    [parent_ts] = top_level(slack)
    modelslab.script(TRAINING, ml.ok())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        serving(slack, modelslab, pg_url, tmp_path / "a"),
        serving(slack, modelslab, pg_url, tmp_path / "b"),
    ):
        # Both instances are up. The lease now runs out 5.5 s from now: each worker polls at
        # least every 5 s, sees when it expires and wakes for that moment, so they race for it.
        await set_columns(pg_url, row.id, lease_expires_at=time.time() + 5.5)
        [reply] = await slack.wait_for(
            "chat.postMessage", where=in_thread(CHANNEL, parent_ts), timeout=20
        )

        async def delivered() -> bool:
            return (await only_row(pg_url)).report_state == "delivered"

        await wait_until(delivered, timeout=10, what="the report to be recorded")
        # Both woke for the same instant; give the loser a moment to (wrongly) call or post too.
        await asyncio.sleep(1.0)

    done = await only_row(pg_url)
    assert (done.state, done.outcome) == ("cancelled", "accepted")
    assert "cancel accepted" in reply.args["text"]
    assert len(modelslab.cancel_calls(TRAINING)) == 2  # the hung one + exactly one re-send
    assert top_level(slack) == [parent_ts]
    assert len(slack.thread(CHANNEL, parent_ts)) == 1


# --- a report interrupted between posting and recording ----------------------------------------


async def interrupted_report(
    store: Store,
    slack: FakeSlack,
    training: str,
    *,
    step: str,
    posted: bool,
) -> tuple[int, str | None]:
    """A finished cancellation whose reporter died during `step` (before recording it).

    Returns the row id and the parent message's ts (None for the "announce" step when the
    parent was not posted). Everything is written through the store's own methods; only the
    dead reporter's lease is aged afterwards.
    """
    # The fake hands out message ts from 2025-11-27 on; the row is dated by that same clock so
    # that "messages since the request" means the same to both.
    requested_at = FIRST_TS / 1_000_000 - 60
    claim = await store.cancellations.enqueue(
        workspace_id=slack.team_id,
        training_id=training,
        requested_by=ALICE,
        origin="command",
        channel_id=CHANNEL,
        now=requested_at,
    )
    row_id = claim.cancellation.id
    assert await store.cancellations.take_one(row_id, "dead-worker", lease_seconds=45) is not None
    assert (
        await store.cancellations.mark_calling(row_id, "dead-worker", lease_seconds=45) is not None
    )
    assert await store.cancellations.finish(
        row_id,
        "dead-worker",
        state="cancelled",
        outcome="accepted",
        reason="Training cancelled successfully",
    )
    assert await store.reports.take_one(row_id, "dead-reporter", lease_seconds=60) is not None
    tag = {"event_type": METADATA_TYPE, "event_payload": {"cancellation_id": row_id, "step": step}}
    parent_ts: str | None = None
    if step == "reply":
        parent = slack.add_message(
            CHANNEL, f"<@{ALICE}> asked to cancel training `{training}`.", user=slack.bot_user_id
        )
        parent_ts = parent.ts
        await store.reports.update(
            row_id,
            "dead-reporter",
            report_channel=CHANNEL,
            report_thread_ts=parent_ts,
            report_posting="reply",
        )
        if posted:
            slack.add_message(
                CHANNEL,
                f"<@{ALICE}> cancelled training `{training}`: cancel accepted.",
                user=slack.bot_user_id,
                thread_ts=parent_ts,
                metadata=tag,
            )
    else:
        await store.reports.update(row_id, "dead-reporter", report_posting="announce")
        if posted:
            parent_ts = slack.add_message(
                CHANNEL,
                f"<@{ALICE}> asked to cancel training `{training}`.",
                user=slack.bot_user_id,
                metadata=tag,
            ).ts
    # The reporter died here. Its 60 s report lease has "run out".
    async with store.engine.begin() as conn:
        await conn.execute(
            cancellations.update()
            .where(cancellations.c.id == row_id)
            .values(report_lease_expires_at=time.time() - 1)
        )
    return row_id, parent_ts


async def test_a_report_interrupted_between_posting_and_recording_is_not_posted_twice(
    slack: FakeSlack, modelslab: FakeModelsLab, pg_url: str, tmp_path: Path
) -> None:
    store = Store.from_url(async_database_url(pg_url))
    try:
        # The crash came after the thread reply was posted, before it was recorded.
        replied, replied_parent = await interrupted_report(
            store, slack, "Run1replied", step="reply", posted=True
        )
        # The crash came just before the reply was posted: it must still be posted, once.
        unreplied, unreplied_parent = await interrupted_report(
            store, slack, "Run2notyet", step="reply", posted=False
        )
        # The crash came after the public parent ("asked to cancel") was posted.
        announced, announced_parent = await interrupted_report(
            store, slack, "Run3announced", step="announce", posted=True
        )
    finally:
        await store.close()
    assert replied_parent and unreplied_parent and announced_parent
    parents_before = top_level(slack)

    async with serving(slack, modelslab, pg_url, tmp_path):

        async def all_delivered() -> bool:
            return all(r.report_state == "delivered" for r in await rows(pg_url))

        await wait_until(all_delivered, timeout=15, what="the three reports to be delivered")

    by_id = {r.id: r for r in await rows(pg_url)}
    # 1. Found by its metadata: no second reply, and the found one is recorded.
    [seen] = slack.thread(CHANNEL, replied_parent)
    assert by_id[replied].reply_ts == seen.ts
    assert not [
        c for c in slack.calls_to("chat.postMessage") if in_thread(CHANNEL, replied_parent)(c)
    ]
    assert any(
        c.args.get("ts") == replied_parent for c in slack.calls_to("conversations.replies")
    ), "the reporter did not look for the earlier post"
    # 2. Not found: posted exactly once.
    [posted] = slack.thread(CHANNEL, unreplied_parent)
    assert by_id[unreplied].reply_ts == posted.ts and "cancel accepted" in posted.text
    # 3. The parent was found, not posted again; the reply went under it.
    assert top_level(slack) == parents_before
    assert by_id[announced].report_thread_ts == announced_parent
    assert len(slack.thread(CHANNEL, announced_parent)) == 1
    assert modelslab.calls == []  # reports never call ModelsLab
