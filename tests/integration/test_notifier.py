"""Live training notifications: webhooks and watched trainings move ONE message per training
through its stages (never back), a finish is believed only once ModelsLab's status call confirms
it, and a cancellation through the bot is never undone by a later stage."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from bot.model import Notification
from bot.slack.messages.blocks import CANCEL_ACTION
from bot.store.schema import training_events
from tests.fakes import modelslab as ml
from tests.fakes import slack as fake_slack
from tests.fakes.modelslab import FakeModelsLab, Reply
from tests.fakes.slack import ApiCall, FakeSlack, Message
from tests.harness import ALICE, BOB, CAROL, CHANNEL, TRAINING, Bot, running_bot, wait_until

WEBHOOK_TOKEN = "whk-9QeYt3Lr0bWm5sKx2Nc7Vd"
NOTIFY = "C0NOTIFY1"
V6_TRAINING = "3f2b8c1e-7a4d-4e9b-9c2a-5d6e7f8a9b0c"
STATUS_V3 = f"/api/v3/fine_tune_status/{TRAINING}"
STATUS_V6 = f"/api/v6/trainer/status/{V6_TRAINING}"
FAST_POLL = 0.2


@pytest.fixture
async def bot(slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str) -> AsyncIterator[Bot]:
    """A single-workspace bot with a webhook token and a notification channel."""
    async with running_bot(
        slack, modelslab, sqlite_url, MODELSLAB_WEBHOOK_TOKEN=WEBHOOK_TOKEN, NOTIFY_CHANNEL=NOTIFY
    ) as running:
        yield running


# --- helpers -----------------------------------------------------------------------------


def status(state: str, details: str | None = None, *, field: str = "messege") -> Reply:
    """A successful status answer (v3 spells the field `messege`, v6 `message`)."""
    return Reply(body=json.dumps({"status": "success", field: state, "data": details}).encode())


async def webhook(bot: Bot, stage: str, training: str = TRAINING, logs: str | None = None) -> None:
    """Deliver one ModelsLab training webhook; it must be accepted."""
    body = {"status": "success", "training_status": stage, "logs": logs, "model_id": training}
    async with bot.session.post(f"{bot.url}/modelslab/webhook/{WEBHOOK_TOKEN}", json=body) as resp:
        assert resp.status == 202, await resp.text()


async def note(bot: Bot, training: str = TRAINING) -> Notification | None:
    return await bot.runtime.store.notifications.get(bot.slack.team_id, training)


async def drained(bot: Bot, timeout: float = 5.0) -> None:
    """Wait until the notifier has handled every queued event (retries included)."""

    async def idle() -> bool:
        return await bot.runtime.store.training_events.next_due() is None

    await wait_until(idle, timeout=timeout, what="every training event to be handled")


async def until_note(
    bot: Bot, check: Callable[[Notification], bool], training: str = TRAINING, what: str = ""
) -> Notification:
    """Wait until the stored notification satisfies `check`; return it."""
    found: list[Notification] = []

    async def ready() -> bool:
        n = await note(bot, training)
        if n is not None and check(n):
            found.append(n)
            return True
        return False

    await wait_until(ready, timeout=5, what=what or "the notification to change")
    return found[-1]


def posts(slack: FakeSlack, channel: str) -> list[Message]:
    """The top-level messages (not thread replies) in a channel."""
    return [m for m in slack.messages.get(channel, []) if m.thread_ts is None]


def shown(message: Message) -> str:
    return json.dumps(message.blocks)


def has_button(blocks: Any) -> bool:
    return CANCEL_ACTION in json.dumps(blocks)


def status_calls(modelslab: FakeModelsLab, path: str | None = None) -> list[ml.Call]:
    return [
        c
        for c in modelslab.calls
        if ("fine_tune_status" in c.path or "/trainer/status/" in c.path)
        and (path is None or c.path == path)
    ]


def replies_in(ts: str) -> Callable[[ApiCall], bool]:
    return lambda c: c.args.get("thread_ts") == ts


async def first_post(bot: Bot, stage: str = "training_started", **kw: Any) -> Message:
    """Deliver a first stage and return the notification it posted."""
    await webhook(bot, stage, **kw)
    await bot.slack.wait_for("chat.postMessage")
    await drained(bot)
    [message] = posts(bot.slack, NOTIFY)
    return message


# --- one message, monotonic stages -------------------------------------------------------


async def test_duplicate_deliveries_make_one_notification(bot: Bot) -> None:
    await asyncio.gather(*(webhook(bot, "training_started") for _ in range(6)))
    await bot.slack.wait_for("chat.postMessage")
    await drained(bot)
    [message] = posts(bot.slack, NOTIFY)
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    assert "Stage: *training*" in shown(message) and has_button(message.blocks)
    stored = await note(bot)
    assert stored is not None and stored.message_ts == message.ts and stored.channel_id == NOTIFY


async def test_out_of_order_stages_never_go_back(bot: Bot) -> None:
    message = await first_post(bot, "trained_model_uploading")
    assert "uploading model" in shown(message)
    await webhook(bot, "training_started")
    await webhook(bot, "deploying_gpu")
    await drained(bot)
    stored = await note(bot)
    assert stored is not None and stored.stage == "trained_model_uploading"
    assert "uploading model" in shown(message) and "Stage: *training*" not in shown(message)
    for update in bot.slack.calls_to("chat.update"):
        assert "uploading model" in json.dumps(update.args["blocks"])
    assert len(posts(bot.slack, NOTIFY)) == 1


async def test_stages_move_on_the_same_message(bot: Bot) -> None:
    message = await first_post(bot)
    for stage, words in (
        ("trained_model_compressing", "compressing model"),
        ("trained_model_uploading", "uploading model"),
        ("trained_model_uploaded", "model uploaded"),
        ("deploying_model", "deploying model"),
    ):
        await webhook(bot, stage)
        await bot.slack.wait_for(
            "chat.update", where=lambda c, w=words: w in json.dumps(c.args.get("blocks"))
        )
        assert f"Stage: *{words}*" in shown(message)
    updates = bot.slack.calls_to("chat.update")
    assert {(u.args["channel"], u.args["ts"]) for u in updates} == {(NOTIFY, message.ts)}
    assert posts(bot.slack, NOTIFY) == [message]
    assert bot.slack.thread(NOTIFY, message.ts) == []
    assert has_button(message.blocks)  # nothing has finished: it can still be cancelled
    assert status_calls(bot.modelslab) == []  # only a final stage needs ModelsLab's word


async def test_eta_from_the_logs_is_shown_and_refreshed(bot: Bot) -> None:
    message = await first_post(bot, logs="epoch 1/10, loss 0.31 | ETA : 12 minutes")
    stored = await until_note(bot, lambda n: n.eta == "12 minutes")
    assert "ETA 12 minutes" in shown(message)
    assert stored.started_at is not None and "started <!date^" in shown(message)
    await webhook(bot, "training_started", logs="epoch 8/10 | ETA : 3 minutes")
    await bot.slack.wait_for(
        "chat.update", where=lambda c: "ETA 3 minutes" in json.dumps(c.args.get("blocks"))
    )
    assert "ETA 3 minutes" in shown(message) and "12 minutes" not in shown(message)
    assert (await note(bot)).started_at == stored.started_at  # type: ignore[union-attr]


# --- a finish is confirmed with ModelsLab first ------------------------------------------


async def test_model_ready_is_verified_then_the_button_goes_and_one_reply_says_so(
    bot: Bot,
) -> None:
    message = await first_post(bot)
    bot.modelslab.script_status(TRAINING, status("model_ready"))
    await webhook(bot, "model_ready")
    [reply] = await bot.slack.wait_for("chat.postMessage", where=replies_in(message.ts))
    [check] = status_calls(bot.modelslab)
    assert check.path == STATUS_V3 and check.key == "good-key"
    assert "ready" in reply.args["text"] and TRAINING in reply.args["text"]
    assert not has_button(message.blocks) and "Finished" in shown(message)
    # More deliveries of the finish, and a late stage, change nothing and say nothing again.
    await webhook(bot, "model_ready")
    await webhook(bot, "trained_model_uploading")
    await drained(bot)
    assert len(bot.slack.thread(NOTIFY, message.ts)) == 1
    assert not has_button(message.blocks) and "Finished" in shown(message)
    stored = await note(bot)
    assert stored is not None and stored.stage == "model_ready" and stored.finished_at


async def test_v6_training_completed_is_verified_with_trainer_status(bot: Bot) -> None:
    message = await first_post(bot, "training_running", training=V6_TRAINING)
    bot.modelslab.script_status(V6_TRAINING, status("training_completed", field="message"))
    await webhook(bot, "training_completed", training=V6_TRAINING)
    [reply] = await bot.slack.wait_for("chat.postMessage", where=replies_in(message.ts))
    assert [c.path for c in status_calls(bot.modelslab)] == [STATUS_V6]
    assert "ready" in reply.args["text"]
    assert not has_button(message.blocks) and "Finished" in shown(message)
    stored = await note(bot, V6_TRAINING)
    assert stored is not None and stored.stage == "model_ready"


async def test_v6_training_cancelled_means_the_run_failed(bot: Bot) -> None:
    message = await first_post(bot, "training_running", training=V6_TRAINING)
    bot.modelslab.script_status(V6_TRAINING, status("training_cancelled", field="message"))
    await webhook(bot, "training_cancelled", training=V6_TRAINING)
    [reply] = await bot.slack.wait_for("chat.postMessage", where=replies_in(message.ts))
    assert [c.path for c in status_calls(bot.modelslab)] == [STATUS_V6]
    assert "failed" in reply.args["text"]
    assert not has_button(message.blocks) and "failed" in shown(message)
    assert "ready" not in shown(message)
    stored = await note(bot, V6_TRAINING)
    assert stored is not None and stored.stage == "failed"


async def test_a_finish_the_status_call_denies_is_not_believed(bot: Bot) -> None:
    message = await first_post(bot, "deploying_gpu")
    bot.modelslab.script_status(TRAINING, status("training_started", "ETA : 9 minutes"))
    await webhook(bot, "model_ready")  # unsigned: anyone who learnt the URL could send this
    await drained(bot)
    assert [c.path for c in status_calls(bot.modelslab)] == [STATUS_V3]
    stored = await note(bot)
    assert stored is not None and stored.stage == "training_started" and not stored.finished_at
    assert has_button(message.blocks) and "Finished" not in shown(message)
    assert "Stage: *training*" in shown(message)
    assert bot.slack.thread(NOTIFY, message.ts) == []


@pytest.mark.parametrize(
    "failure", [ml.server_error(500), ml.html(), ml.rate_limited(30)], ids=["500", "html", "429"]
)
async def test_a_status_call_that_fails_leaves_the_message_as_it_was(
    bot: Bot, failure: Reply
) -> None:
    message = await first_post(bot, "trained_model_uploading")
    before = (json.dumps(message.blocks), message.text, message.updates)
    stored_before = await note(bot)
    bot.modelslab.script_status(TRAINING, failure)
    await webhook(bot, "model_ready")
    await wait_until(lambda: status_calls(bot.modelslab), timeout=5, what="the status call")

    async def put_back() -> bool:  # the event is kept for a later retry, not dropped
        due = await bot.runtime.store.training_events.next_due()
        return due is not None and due > time.time() + 0.5

    await wait_until(put_back, timeout=5, what="the unverified event to be put back")
    assert (json.dumps(message.blocks), message.text, message.updates) == before
    assert has_button(message.blocks)
    assert bot.slack.thread(NOTIFY, message.ts) == []
    assert await note(bot) == stored_before


async def test_after_a_cancel_through_the_button_later_webhooks_never_bring_the_button_back(
    bot: Bot,
) -> None:
    message = await first_post(bot)
    assert await bot.click(message_ts=message.ts, channel_id=NOTIFY) == 200
    [outcome] = await bot.slack.wait_for("chat.postMessage", where=replies_in(message.ts))
    assert "cancel accepted" in outcome.args["text"]
    await bot.slack.wait_for(
        "chat.update", where=lambda c: "Cancel accepted" in json.dumps(c.args.get("blocks"))
    )
    assert not has_button(message.blocks)
    cancelled_at = len(bot.slack.calls_to("chat.update"))
    bot.modelslab.script_status(TRAINING, status("model_ready"))
    for stage in ("trained_model_uploading", "deploying_model", "model_ready"):
        await webhook(bot, stage)
        await drained(bot)
    stored = await note(bot)
    assert stored is not None and stored.stage == "model_ready"
    later = bot.slack.calls_to("chat.update")[cancelled_at:]
    assert later, "the later stages were not rendered at all"
    for update in later:
        assert not has_button(update.args["blocks"]), update.args
    assert not has_button(message.blocks) and "Cancel accepted" in shown(message)
    # The cancellation's reply closed the thread: no "finished" reply after it.
    assert [m.text for m in bot.slack.thread(NOTIFY, message.ts)] == [outcome.args["text"]]


async def test_a_finish_whose_render_failed_is_rendered_and_announced_on_the_retry(
    bot: Bot,
) -> None:
    message = await first_post(bot)
    bot.modelslab.script_status(TRAINING, status("model_ready"))
    # Slack fails the chat.update and the SDK's own retries of it; then it works again.
    bot.slack.fail("chat.update", *[fake_slack.server_error(500)] * 4)
    await webhook(bot, "model_ready")
    await drained(bot, timeout=8)  # the notifier retries the event (after ~2 s)
    stored = await note(bot)
    assert stored is not None and stored.stage == "model_ready"
    assert not has_button(message.blocks), "the finished training still shows its Cancel button"
    assert len(bot.slack.thread(NOTIFY, message.ts)) == 1, "no finished reply in the thread"


async def test_a_queued_first_stage_is_stored_and_keeps_its_eta(bot: Bot) -> None:
    message = await first_post(bot, "training_queued", training=V6_TRAINING)
    assert "Stage: *queued*" in shown(message)
    await webhook(bot, "training_queued", training=V6_TRAINING, logs="ETA : 40 minutes")
    await drained(bot)
    stored = await note(bot, V6_TRAINING)
    assert stored is not None and stored.stage == "training_queued" and stored.eta == "40 minutes"
    assert "ETA 40 minutes" in shown(message)


# --- watch: live status for a training started elsewhere ---------------------------------


def fast(bot: Bot) -> None:
    bot.runtime.notifier.poll_seconds = FAST_POLL
    bot.runtime.notifier.idle_seconds = FAST_POLL


async def test_watch_posts_a_live_message_in_the_channel_and_polls_until_final(bot: Bot) -> None:
    fast(bot)
    bot.modelslab.script_status(
        TRAINING,
        status("training_started", "ETA : 20 minutes"),
        status("trained_model_uploading"),
        status("deploying_model"),
        status("model_ready"),
    )
    await bot.command(f"watch {TRAINING}", user_id=ALICE, channel_id=CHANNEL)
    [ack] = await bot.slack.wait_for_response("cmd")
    assert ack["response_type"] == "ephemeral" and TRAINING in ack["text"]
    [posted] = await bot.slack.wait_for("chat.postMessage")
    assert posted.args["channel"] == CHANNEL
    [message] = posts(bot.slack, CHANNEL)
    [reply] = await bot.slack.wait_for("chat.postMessage", where=replies_in(message.ts), timeout=8)
    assert "ready" in reply.args["text"]
    assert posts(bot.slack, NOTIFY) == [] and posts(bot.slack, CHANNEL) == [message]
    assert not has_button(message.blocks) and "Finished" in shown(message)
    shown_stages = [json.dumps(u.args["blocks"]) for u in bot.slack.calls_to("chat.update")]
    assert any("ETA 20 minutes" in s for s in shown_stages)
    assert any("uploading model" in s for s in shown_stages)
    calls = status_calls(bot.modelslab)
    assert len(calls) >= 4 and {c.path for c in calls} == {STATUS_V3}
    # Polling has stopped at the final state: nothing is scheduled, nothing is taken.
    stored = await until_note(bot, lambda n: not n.watching, what="the watch to end")
    assert stored.poll_next_at is None
    assert await bot.runtime.store.polls.next_due() is None
    assert await bot.runtime.store.polls.due(now=time.time() + 3600) == []
    polled = len(status_calls(bot.modelslab))
    assert await bot.runtime.notifier.drain() == 0
    assert len(status_calls(bot.modelslab)) == polled


async def test_a_watched_training_keeps_being_polled_after_a_restart(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> None:
    env = {"MODELSLAB_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "NOTIFY_CHANNEL": NOTIFY}
    modelslab.script_status(TRAINING, status("training_started", "ETA : 30 minutes"))
    async with running_bot(slack, modelslab, sqlite_url, **env) as first:
        fast(first)
        await first.command(f"watch {TRAINING}", user_id=ALICE, channel_id=CHANNEL)
        await slack.wait_for("chat.postMessage")
        await wait_until(
            lambda: len(status_calls(modelslab)) >= 2, timeout=5, what="two polls before the stop"
        )
    # The process is gone; the schedule is in the database.
    [message] = posts(slack, CHANNEL)
    polled_before = len(status_calls(modelslab))
    modelslab.script_status(TRAINING, status("model_ready"))
    async with running_bot(slack, modelslab, sqlite_url, **env) as second:
        fast(second)
        [reply] = await slack.wait_for("chat.postMessage", where=replies_in(message.ts), timeout=8)
        assert "ready" in reply.args["text"]
        assert len(status_calls(modelslab)) > polled_before
        assert not has_button(message.blocks) and "Finished" in shown(message)
        assert posts(slack, CHANNEL) == [message]  # the same live message, not a new one
        stored = await note(second)
        assert stored is not None and not stored.watching and stored.poll_next_at is None


async def test_polls_wait_while_a_cancel_on_the_same_key_is_pending(bot: Bot) -> None:
    fast(bot)
    async with bot.runtime.notifier.limiter.cancel("good-key"):
        await bot.command(f"watch {TRAINING}", user_id=ALICE, channel_id=CHANNEL)
        await bot.slack.wait_for("chat.postMessage")
        # The poll that came due was put off instead of queueing behind the cancel.
        await until_note(
            bot,
            lambda n: n.poll_next_at is not None and n.poll_next_at > time.time() + 2,
            what="the poll to be put off",
        )
        assert status_calls(bot.modelslab) == []
    stored = await note(bot)
    assert stored is not None and stored.watching


async def test_a_user_not_on_the_allow_list_cannot_watch(bot: Bot) -> None:
    await bot.command(f"watch {TRAINING}", user_id=CAROL, channel_id=CHANNEL)
    [answer] = await bot.slack.wait_for_response("cmd")
    assert answer["response_type"] == "ephemeral" and "allow-list" in answer["text"]
    async with bot.runtime.store.engine.connect() as conn:
        queued = (
            await conn.execute(sa.select(sa.func.count()).select_from(training_events))
        ).scalar()
    assert queued == 0
    assert await note(bot) is None
    assert bot.slack.calls_to("chat.postMessage") == [] and bot.modelslab.calls == []


async def test_watch_of_a_bad_id_is_refused_with_usage(bot: Bot) -> None:
    await bot.command("watch ../etc", user_id=BOB, channel_id=CHANNEL)
    [answer] = await bot.slack.wait_for_response("cmd")
    assert answer["response_type"] == "ephemeral" and "not a training id" in answer["text"]
    assert bot.slack.calls_to("chat.postMessage") == [] and bot.modelslab.calls == []
