"""A resumed report looks for its earlier post within Slack's 2025 limits (design §5, §6).

Non-Marketplace apps installed by other organisations get ``conversations.history`` and
``conversations.replies`` capped at about 15 messages and one call a minute. The look-back is one
narrow read (only the messages since the interrupted attempt started, at most 15), and a 429
there neither loses the report nor posts it twice: the report waits in the outbox for Slack's
Retry-After and looks again; only after several failed passes does it post without knowing.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from bot.config import async_database_url
from bot.model import Cancellation
from bot.slack.delivery.reporter import LOOKUP_ATTEMPTS, LOOKUP_LIMIT, METADATA_TYPE
from bot.slack.errors import retry_after
from bot.store import Store
from bot.store.schema import cancellations
from tests.fakes import slack as fake_slack
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import ApiCall, FakeSlack, Message
from tests.harness import ALICE, CHANNEL, Bot, running_bot, wait_until

SLACK_CAP = 15
# When the interrupted attempt started posting, on the fake's clock (its ts are from 2025-11-27).
POSTING_AT = 1764205200.0
TRAINING = "Look8ack01"


def cap_history_reads(slack: FakeSlack) -> None:
    """Slack's cap for non-Marketplace apps: a history read returns at most 15 messages."""
    slack.limited_history = True


def put(slack: FakeSlack, at: float, text: str, **kw: Any) -> Message:
    """A message at a chosen time (the fake's own clock only moves on by microseconds)."""
    kw.setdefault("user", ALICE)
    message = Message(
        channel=CHANNEL,
        ts=f"{at:.6f}",
        text=text,
        blocks=None,
        thread_ts=kw.pop("thread_ts", None),
        metadata=kw.pop("metadata", None),
        **kw,
    )
    slack.messages[CHANNEL].append(message)
    return message


def tag(row_id: int, step: str) -> dict[str, Any]:
    return {"event_type": METADATA_TYPE, "event_payload": {"cancellation_id": row_id, "step": step}}


async def interrupted(
    database_url: str, slack: FakeSlack, *, step: str, posted: bool, attempts: int = 0
) -> tuple[int, Message | None]:
    """A finished cancellation whose reporter died posting `step`, in a busy channel.

    Returns the row id and the parent message (for "reply"; None for "announce").
    """
    store = Store.from_url(async_database_url(database_url))
    await store.migrate()
    try:
        requested_at = POSTING_AT - 3600
        claim = await store.cancellations.enqueue(
            workspace_id=slack.team_id,
            training_id=TRAINING,
            requested_by=ALICE,
            origin="command",
            channel_id=CHANNEL,
            now=requested_at,
        )
        row_id = claim.cancellation.id
        assert await store.cancellations.take_one(row_id, "dead-worker", lease_seconds=45)
        assert await store.cancellations.mark_calling(row_id, "dead-worker", lease_seconds=45)
        assert await store.cancellations.finish(
            row_id, "dead-worker", state="cancelled", outcome="accepted", reason="ok"
        )
        assert await store.reports.take_one(row_id, "dead-reporter", lease_seconds=60)
        parent: Message | None = None
        if step == "reply":
            parent = put(
                slack, requested_at + 1, "asked to cancel", user=slack.bot_user_id, bot_id=None
            )
            # A busy thread: people talked in it long before the reply was being posted.
            for n in range(30):
                put(slack, requested_at + 10 + n, f"chatter {n}", thread_ts=parent.ts)
            # ...and more than a page of it in the minutes just before (replies come oldest first).
            for n in range(20):
                put(slack, POSTING_AT - 280 + 12 * n, f"late chatter {n}", thread_ts=parent.ts)
            await store.reports.update(
                row_id,
                "dead-reporter",
                report_channel=CHANNEL,
                report_thread_ts=parent.ts,
                report_posting="reply",
                report_posting_at=POSTING_AT,
            )
            if posted:
                put(
                    slack,
                    POSTING_AT + 1,
                    "cancel accepted",
                    user=slack.bot_user_id,
                    thread_ts=parent.ts,
                    metadata=tag(row_id, "reply"),
                )
        else:
            await store.reports.update(
                row_id, "dead-reporter", report_posting="announce", report_posting_at=POSTING_AT
            )
            if posted:
                put(
                    slack,
                    POSTING_AT + 1,
                    "asked to cancel",
                    user=slack.bot_user_id,
                    metadata=tag(row_id, "announce"),
                )
            # A busy channel: many messages after the announcement.
            for n in range(30):
                put(slack, POSTING_AT + 600 + n, f"channel chatter {n}")
        async with store.engine.begin() as conn:
            await conn.execute(
                cancellations.update()
                .where(cancellations.c.id == row_id)
                .values(report_lease_expires_at=time.time() - 1, report_attempts=attempts)
            )
        return row_id, parent
    finally:
        await store.close()


async def row_of(bot: Bot, row_id: int) -> Cancellation:
    row = await bot.runtime.store.cancellations.get(row_id)
    assert row is not None
    return row


async def delivered(bot: Bot, row_id: int) -> Cancellation:
    async def done() -> bool:
        return (await row_of(bot, row_id)).report_state == "delivered"

    await wait_until(done, timeout=10, what="the report to be delivered")
    return await row_of(bot, row_id)


def tagged(slack: FakeSlack, row_id: int, step: str) -> list[Message]:
    return [m for m in slack.messages[CHANNEL] if m.metadata == tag(row_id, step)]


def assert_narrow(call: ApiCall) -> None:
    """One read of the messages since the interrupted attempt started, within Slack's cap."""
    args = call.args
    assert int(args["limit"]) <= LOOKUP_LIMIT <= SLACK_CAP
    assert POSTING_AT - 300 <= float(args["oldest"]) <= POSTING_AT
    assert POSTING_AT <= float(args["latest"]) <= POSTING_AT + 300


@pytest.mark.parametrize("posted", [True, False], ids=["posted-before-the-crash", "not-posted"])
async def test_a_resumed_reply_looks_back_narrowly_in_a_busy_thread(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, posted: bool
) -> None:
    cap_history_reads(slack)
    row_id, parent = await interrupted(sqlite_url, slack, step="reply", posted=posted)
    assert parent is not None
    async with running_bot(slack, modelslab, sqlite_url) as bot:
        row = await delivered(bot, row_id)
        [lookup] = slack.calls_to("conversations.replies")
        assert_narrow(lookup)
        [reply] = tagged(slack, row_id, "reply")  # exactly one, found or posted
        assert row.reply_ts == reply.ts
        posts = [c for c in slack.calls_to("chat.postMessage") if c.args.get("thread_ts")]
        assert len(posts) == (0 if posted else 1)


async def test_a_resumed_announcement_looks_back_narrowly_in_a_busy_channel(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> None:
    cap_history_reads(slack)
    row_id, _ = await interrupted(sqlite_url, slack, step="announce", posted=True)
    async with running_bot(slack, modelslab, sqlite_url) as bot:
        row = await delivered(bot, row_id)
        [lookup] = slack.calls_to("conversations.history")
        assert_narrow(lookup)
        [announcement] = tagged(slack, row_id, "announce")
        assert row.report_thread_ts == announcement.ts  # found, not posted again
        assert [c.args.get("thread_ts") for c in slack.calls_to("chat.postMessage")] == [
            announcement.ts
        ]


@pytest.mark.parametrize("posted", [True, False], ids=["posted-before-the-crash", "not-posted"])
async def test_a_429_on_the_look_back_defers_the_report_and_it_looks_again(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, posted: bool
) -> None:
    row_id, parent = await interrupted(sqlite_url, slack, step="reply", posted=posted)
    assert parent is not None
    slack.fail("conversations.replies", fake_slack.rate_limited(retry_after=40))
    async with running_bot(slack, modelslab, sqlite_url) as bot:
        started = time.time()

        async def deferred() -> bool:
            return (await row_of(bot, row_id)).report_attempts == 1

        await wait_until(deferred, timeout=10, what="the report to be deferred")
        row = await row_of(bot, row_id)
        # Not slept out inside the reporter (the 429 handler would hold the lease for 40 s),
        # not posted blind, and due again only after Slack's Retry-After.
        assert time.time() - started < 5
        assert row.report_state == "pending" and row.report_next_at >= started + 39
        assert row.report_posting == "reply" and row.report_posting_at == POSTING_AT
        assert len(slack.calls_to("conversations.replies")) == 1
        assert [c for c in slack.calls_to("chat.postMessage") if c.args.get("thread_ts")] == []
        assert len(tagged(slack, row_id, "reply")) == (1 if posted else 0)

        # Slack's minute is over.
        async with bot.runtime.store.engine.begin() as conn:
            await conn.execute(
                sa.update(cancellations)
                .where(cancellations.c.id == row_id)
                .values(report_next_at=time.time())
            )
        bot.runtime.reporter.wake()
        row = await delivered(bot, row_id)
        assert len(slack.calls_to("conversations.replies")) == 2
        [reply] = tagged(slack, row_id, "reply")
        assert row.reply_ts == reply.ts


async def test_look_backs_that_keep_failing_end_in_a_post_not_a_lost_report(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> None:
    row_id, _ = await interrupted(
        sqlite_url, slack, step="reply", posted=False, attempts=LOOKUP_ATTEMPTS
    )
    slack.fail("conversations.replies", fake_slack.rate_limited(retry_after=40))
    async with running_bot(slack, modelslab, sqlite_url) as bot:
        row = await delivered(bot, row_id)
        [reply] = tagged(slack, row_id, "reply")
        assert row.reply_ts == reply.ts and "cancel accepted" in reply.text


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "30"}, 30.0),
        ({"retry-after": ["7"]}, 7.0),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "1e12"}, 3600.0),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_slacks_retry_after_is_read_finite_and_bounded(
    headers: dict[str, object], expected: float | None
) -> None:
    # One bad header from a proxy must not defer an outcome report forever.
    assert retry_after(headers) == expected
