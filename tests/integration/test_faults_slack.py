"""Slack misbehaving while the bot reports an outcome (design §5, §6).

The fake Slack answers chat.postMessage / chat.update with 429 + Retry-After, 5xx pages, error
codes that retrying cannot fix (not_in_channel, channel_not_found, message_not_found, …) or not
at all. For each fault:

- the cancellation's outcome is recorded in the store (state + outcome) whatever Slack does;
- delivery is retried where it can succeed (the reporter's client waits out 429s and retries
  500/503 twice; the outbox retries the rest later with backoff 2**attempts s);
- where it cannot, the outcome goes to the requester's response_url instead;
- the ack (the HTTP answer to the click or command) never waits on Slack: < 1 s while it hangs.

The in-process `bot` fixture (SQLite) is used throughout. Where a test would otherwise wait for a
real clock (the reporter's 15 s timeout, the outbox's backoff), it says so and shortens or ages
that one value.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from slack_sdk.errors import SlackClientError

from bot.model import Cancellation
from bot.slack.clients import FAST_TIMEOUT
from bot.store.schema import cancellations
from tests.fakes import modelslab as ml
from tests.fakes import slack as fs
from tests.harness import BOB, CHANNEL, TRAINING, Bot, post_notification, wait_until

CLICK = f"click-{BOB}"  # the response_url name Bot.click gives BOB's clicks


# --- helpers ---------------------------------------------------------------------------------


async def row_of(bot: Bot, training: str = TRAINING) -> Cancellation:
    row = await bot.runtime.store.cancellations.latest(bot.slack.team_id, training)
    assert row is not None, "no cancellation was recorded"
    return row


async def report_settles(bot: Bot, training: str = TRAINING, *, timeout: float) -> Cancellation:
    """Wait until the outbox is done with a final cancellation (delivered or undeliverable)."""

    async def done() -> bool:
        row = await row_of(bot, training)
        return row.is_final and row.report_state in ("delivered", "undeliverable")

    await wait_until(done, timeout=timeout, what=f"the report of {training} to settle")
    return await row_of(bot, training)


def thread_posts(bot: Bot, ts: str) -> list[fs.ApiCall]:
    """Every chat.postMessage attempt into a thread (failed ones included)."""
    return [c for c in bot.slack.calls_to("chat.postMessage") if c.args.get("thread_ts") == ts]


def has_button(blocks: object) -> bool:
    return '"type": "button"' in json.dumps(blocks)


async def click_cancel(bot: Bot, ts: str) -> None:
    assert await bot.click(message_ts=ts) == 200


# --- retried until delivered ------------------------------------------------------------------


# Each case in its own channel (the fake's faults are per method and channel), all at once.
# slack_sdk's handlers wait out a 429's Retry-After and retry 500/503 twice by themselves; what
# still fails goes back to the outbox, which retries after 2**attempts s. A 502 is not retried
# by the client at all: one is enough to show the outbox doing it.
TRANSIENT_REPLY_FAULTS: dict[str, tuple[fs.Reply, ...]] = {
    "429-once": (fs.rate_limited(1),),
    "429-three-times": (fs.rate_limited(1),) * 3,
    "500-three-times": (fs.server_error(500),) * 3,
    "503-three-times": (fs.server_error(503),) * 3,
    "502-once": (fs.server_error(502),),
}


async def test_transient_reply_failures_are_retried_until_delivered_once(bot: Bot) -> None:
    cases = list(TRANSIENT_REPLY_FAULTS)
    channels = {name: f"C0CASE{i:03d}" for i, name in enumerate(cases)}
    trainings = {name: f"Slack{i:02d}x" for i, name in enumerate(cases)}
    stamps = {
        name: await post_notification(bot, trainings[name], channel=channels[name])
        for name in cases
    }
    for name in cases:
        bot.slack.fail("chat.postMessage", *TRANSIENT_REPLY_FAULTS[name], channel=channels[name])
    started = time.monotonic()
    for name in cases:
        assert (
            await bot.click(
                value=trainings[name], message_ts=stamps[name], channel_id=channels[name]
            )
            == 200
        )

    for name in cases:
        row = await report_settles(bot, trainings[name], timeout=20)
        took = time.monotonic() - started
        channel, ts = channels[name], stamps[name]
        assert (row.state, row.outcome, row.report_state) == ("cancelled", "accepted", "delivered")
        [reply] = bot.slack.thread(channel, ts)
        assert "cancel accepted" in reply.text and reply.ts == row.reply_ts, name
        attempts = [
            c
            for c in bot.slack.calls_to("chat.postMessage")
            if c.args.get("channel") == channel and c.args.get("thread_ts") == ts
        ]
        # Every failure was followed by another try, and the first success ended it.
        assert len(attempts) == len(TRANSIENT_REPLY_FAULTS[name]) + 1, (name, len(attempts))
        print(f"Slack fault chat.postMessage {name}: {len(attempts)} tries, 1 reply by {took:.2f}s")
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was honoured, not hammered
    assert bot.slack.response_posts.get(CLICK, []) == []  # no fallback was needed
    assert len(bot.modelslab.cancel_calls()) == len(cases)


async def test_notification_update_rate_limited_is_retried_until_it_shows_the_outcome(
    bot: Bot,
) -> None:
    ts = await post_notification(bot)
    # ModelsLab answers after 1 s, so the "Cancelling…" update is done before the 429 is set up:
    # it hits the update that shows the outcome (overlapping a state change is the defect below).
    bot.modelslab.delay = 1.0
    await click_cancel(bot, ts)
    await bot.slack.wait_for("chat.update", timeout=5)
    bot.slack.fail("chat.update", fs.rate_limited(1))

    row = await report_settles(bot, timeout=10)
    assert (row.state, row.outcome, row.report_state) == ("cancelled", "accepted", "delivered")
    message = bot.slack.find_message(CHANNEL, ts)
    assert message is not None
    assert not has_button(message.blocks) and "Cancel accepted" in json.dumps(message.blocks)
    assert len(bot.slack.thread(CHANNEL, ts)) == 1
    updates = bot.slack.calls_to("chat.update")
    assert len(updates) == 3  # "Cancelling…", the 429, the retry after Retry-After
    print("Slack fault chat.update 429: notification shows the outcome after Retry-After")


async def test_slack_error_during_a_pass_that_overlaps_the_outcome_is_retried_promptly(
    bot: Bot,
) -> None:
    ts = await post_notification(bot)
    # Slack answers every call after 0.5 s, and the first chat.update with a 502: the worker
    # records the outcome while that "Cancelling…" update is still on its way.
    bot.slack.delay = 0.5
    bot.slack.fail("chat.update", fs.server_error(502))
    await click_cancel(bot, ts)
    # Delivered after one outbox backoff (2 s), not after the reporter's 60 s lease.
    row = await report_settles(bot, timeout=5)
    assert row.report_state == "delivered"
    assert len(bot.slack.thread(CHANNEL, ts)) == 1


# --- cannot be delivered in the thread: the requester's response_url --------------------------


@pytest.mark.parametrize("code", ["not_in_channel", "channel_not_found", "is_archived"])
async def test_permanent_post_errors_fall_back_to_the_response_url_once(
    bot: Bot, code: str
) -> None:
    ts = await post_notification(bot)
    bot.slack.fail("chat.postMessage", fs.error(code), channel=CHANNEL)
    await click_cancel(bot, ts)

    [private] = await bot.slack.wait_for_response(CLICK, timeout=10)
    row = await report_settles(bot, timeout=5)
    assert (row.state, row.outcome) == ("cancelled", "accepted")
    assert (row.report_state, row.reply_ts) == ("delivered", "response_url")
    assert private["response_type"] == "ephemeral" and "cancel accepted" in private["text"]
    assert TRAINING in private["text"] and f"<@{BOB}>" in private["text"]
    # Not retried: the error cannot go away by itself, and the requester has been told.
    await asyncio.sleep(0.5)
    assert len(thread_posts(bot, ts)) == 1
    assert bot.slack.thread(CHANNEL, ts) == []
    assert len(bot.slack.response_posts[CLICK]) == 1
    print(f"Slack fault chat.postMessage {code}: outcome sent to the response_url once")


async def test_command_in_a_channel_without_the_bot_is_answered_privately(bot: Bot) -> None:
    bot.slack.fail("chat.postMessage", fs.error("not_in_channel"), channel=CHANNEL)
    ack = await bot.cancel(TRAINING)
    assert "Cancelling training" in ack["text"]

    [_, private] = await bot.slack.wait_for_response(bot.last_card, count=2, timeout=10)
    row = await report_settles(bot, timeout=5)
    assert (row.state, row.outcome, row.report_state) == ("cancelled", "accepted", "delivered")
    assert "cancel accepted" in private["text"] and private["response_type"] == "ephemeral"
    assert bot.slack.messages.get(CHANNEL, []) == []


async def test_deleted_notification_is_not_updated_forever_and_the_reply_is_still_posted(
    bot: Bot,
) -> None:
    ts = await post_notification(bot)
    # Somebody deleted the notification: every update of it answers message_not_found.
    bot.slack.fail("chat.update", *[fs.error("message_not_found")] * 10)
    await click_cancel(bot, ts)

    row = await report_settles(bot, timeout=10)
    assert (row.state, row.outcome, row.report_state) == ("cancelled", "accepted", "delivered")
    [reply] = bot.slack.thread(CHANNEL, ts)
    assert "cancel accepted" in reply.text
    await asyncio.sleep(0.5)
    # One update per state shown ("Cancelling…", then the outcome) at most; no retry loop.
    assert len(bot.slack.calls_to("chat.update")) <= 2


# --- Slack hangs: the ack does not wait, the store has the outcome ----------------------------


async def test_ack_is_immediate_and_the_outcome_recorded_while_slack_hangs(bot: Bot) -> None:
    other = "Zz9hanging"
    ts = await post_notification(bot)
    # From now on no chat.update or chat.postMessage is ever answered.
    bot.slack.fail("chat.update", *[fs.hang()] * 10)
    bot.slack.fail("chat.postMessage", *[fs.hang()] * 10)

    acks: list[float] = []
    started = time.monotonic()
    assert await bot.click(message_ts=ts) == 200
    acks.append(time.monotonic() - started)
    started = time.monotonic()
    answer = await bot.cancel(other)  # the preview card, then its Cancel training button
    acks.append(time.monotonic() - started)
    assert "Cancelling training" in answer["text"]
    # Later requests for the same trainings are told the truth (on the card), also at once.
    for training in (TRAINING, other):
        started = time.monotonic()
        again = await bot.command(training, user_id=BOB)
        acks.append(time.monotonic() - started)
        assert "already" in again["text"], again
    assert max(acks) < 1.0, acks

    # The outcomes are recorded although Slack has answered none of the reports.
    async def both_recorded() -> bool:
        rows = [await row_of(bot, t) for t in (TRAINING, other)]
        return all(r.is_final for r in rows)

    await wait_until(both_recorded, timeout=5, what="both outcomes to be recorded")
    for training in (TRAINING, other):
        row = await row_of(bot, training)
        assert (row.state, row.outcome) == ("cancelled", "accepted")
        assert row.report_state == "pending"  # still owed to Slack, not dropped
    assert bot.slack.thread(CHANNEL, ts) == []
    assert len(bot.modelslab.cancel_calls()) == 2
    print(f"Slack hanging: acks {[f'{a * 1000:.0f} ms' for a in acks]}, outcomes recorded")
    # Slack goes away: the hung requests end, so the bot shuts down without waiting on them.
    await bot.slack.stop()


async def test_slack_clients_give_up_on_a_hanging_slack_after_their_timeout(bot: Bot) -> None:
    bot.slack.fail("chat.postMessage", fs.hang())
    client = bot.runtime.clients.fast_for(bot.slack.bot_token)
    call = asyncio.create_task(client.chat_postMessage(channel=CHANNEL, text="hello"))
    done, _ = await asyncio.wait({call}, timeout=FAST_TIMEOUT + 1.5)
    try:
        assert call in done, f"still waiting on Slack after {FAST_TIMEOUT + 1.5}s"
        assert isinstance(call.exception(), (asyncio.TimeoutError, SlackClientError, OSError))
    finally:
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)


# --- Slack down for good: the report stays recorded, the requester is told privately ----------


async def age_report(bot: Bot, row_id: int) -> None:
    """Make a deferred report due now (simulates the outbox's 2**attempts s backoff passing)."""
    async with bot.runtime.store.engine.begin() as conn:
        await conn.execute(
            cancellations.update()
            .where(cancellations.c.id == row_id)
            .values(report_next_at=time.time() - 1)
        )
    bot.runtime.reporter.wake()


async def test_report_slack_never_takes_stays_recorded_and_reaches_the_requester(
    bot: Bot,
) -> None:
    ts = await post_notification(bot)
    # internal_error (HTTP 200) is transient, and the client does not retry it by itself.
    bot.slack.fail("chat.postMessage", *[fs.error("internal_error")] * 20, channel=CHANNEL)
    await click_cancel(bot, ts)

    async def finished() -> bool:
        return (await row_of(bot)).is_final

    await wait_until(finished, timeout=5, what="the outcome")

    async def deferred_or_given_up() -> bool:
        row = await row_of(bot)
        return row.report_state == "undeliverable" or (
            row.report_state == "pending" and row.report_next_at > time.time()
        )

    for _ in range(12):
        await wait_until(deferred_or_given_up, timeout=10, what="the delivery to be deferred")
        row = await row_of(bot)
        if row.report_state == "undeliverable":
            break
        await age_report(bot, row.id)
    row = await row_of(bot)
    assert (row.state, row.outcome) == ("cancelled", "accepted")
    assert row.report_state == "undeliverable" and row.report_error, row
    [private] = await bot.slack.wait_for_response(CLICK, timeout=5)
    assert "cancel accepted" in private["text"]
    assert bot.slack.thread(CHANNEL, ts) == []
    print(f"Slack down for good: {len(thread_posts(bot, ts))} attempts, then the response_url")


async def test_earlier_successful_report_passes_do_not_use_up_the_retry_budget(
    bot: Bot,
) -> None:
    # ModelsLab rate-limits the first cycle; the scheduled retry re-renders the notification (a
    # successful report pass). A counter left at 7 by earlier failures is reset by that pass.
    bot.modelslab.script(TRAINING, ml.rate_limited(60), ml.ok())
    bot.modelslab.delay = 0.5
    ts = await post_notification(bot)
    await click_cancel(bot, ts)

    async def scheduled() -> bool:
        return (await row_of(bot)).outcome == "rate_limited"

    await wait_until(scheduled, timeout=5, what="the 429 to be recorded")
    row = await row_of(bot)
    async with bot.runtime.store.engine.begin() as conn:
        await conn.execute(
            cancellations.update()
            .where(cancellations.c.id == row.id)
            .values(report_attempts=7, report_state="pending", report_next_at=time.time() - 1)
        )
    bot.runtime.reporter.wake()

    async def reset() -> bool:
        return (await row_of(bot)).report_attempts == 0

    await wait_until(reset, timeout=10, what="a successful pass to reset the failure count")
    async with bot.runtime.store.engine.begin() as conn:
        await conn.execute(
            cancellations.update()
            .where(cancellations.c.id == row.id)
            .values(next_attempt_at=time.time() - 1)
        )
    # Slack fails the outcome's first post once with a 502 (not retried by the client itself).
    bot.slack.fail("chat.postMessage", fs.server_error(502), channel=CHANNEL)
    bot.runtime.service.wake()
    await wait_until(
        lambda: len(thread_posts(bot, ts)) >= 1, timeout=10, what="the first reply attempt"
    )
    row = await report_settles(bot, timeout=10)
    assert row.report_state == "delivered"
    assert len(bot.slack.thread(CHANNEL, ts)) == 1
