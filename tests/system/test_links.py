"""Links users click open the message for a user of that workspace (design §5, issue 12 item 5).

Every message the bot links to has its permalink from ``chat.getPermalink``, recorded once when
the bot posts it, and every link shown (the request's ack, history, watch, App Home) uses it.
A getPermalink failure never stops a post or an answer: the link falls back to the old guess.
No Slack call happens before an ack because of a link.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import async_database_url
from bot.model import Notification
from bot.slack import clients as slack_module
from bot.slack.messages.blocks import thread_link
from bot.store import Store
from tests.fakes import slack as fake_slack
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import JSON, event_body
from tests.harness import ALICE, BOB, CHANNEL, TRAINING, Bot, bot_env, running_bot, wait_until
from tests.processes import run_bot_cli

WEBHOOK_TOKEN = "whk-links-9QeYt3Lr0bWm5sKx"
OTHER = "Lnk0ther01"


@pytest.fixture
async def bot(slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str) -> AsyncIterator[Bot]:
    async with running_bot(
        slack, modelslab, sqlite_url, MODELSLAB_WEBHOOK_TOKEN=WEBHOOK_TOKEN, NOTIFY_CHANNEL=CHANNEL
    ) as running:
        yield running


def permalink_of(slack: FakeSlack, channel: str, ts: str) -> str:
    """The permalink the fake gives (the workspace's own domain, as Slack's does)."""
    return f"https://{slack.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"


async def notified(bot: Bot, training: str = TRAINING) -> Notification:
    """Post a training's notification through the webhook route; return it once recorded."""
    body = {"status": "success", "training_status": "training_started", "model_id": training}
    async with bot.session.post(f"{bot.url}/modelslab/webhook/{WEBHOOK_TOKEN}", json=body) as resp:
        assert resp.status == 202, await resp.text()
    found: list[Notification] = []

    async def posted() -> bool:
        note = await bot.runtime.store.notifications.get(bot.slack.team_id, training)
        if note is not None and note.message_ts:
            found.append(note)
            return True
        return False

    await wait_until(posted, timeout=10, what="the notification to be recorded")
    return found[-1]


async def with_permalink(bot: Bot, training: str = TRAINING) -> Notification:
    found: list[Notification] = []

    async def recorded() -> bool:
        note = await bot.runtime.store.notifications.get(bot.slack.team_id, training)
        if note is not None and note.permalink:
            found.append(note)
            return True
        return False

    await wait_until(recorded, timeout=10, what="the permalink to be recorded")
    return found[-1]


async def history_text(bot: Bot) -> str:
    before = len(bot.slack.response_posts["cmd"])
    assert await bot.command("history") == {}
    await bot.slack.wait_for_response("cmd", count=before + 1)
    return str(bot.slack.response_posts["cmd"][-1]["text"])


async def test_a_notifications_permalink_is_recorded_once_and_every_link_uses_it(bot: Bot) -> None:
    slack = bot.slack
    note = await notified(bot)
    note = await with_permalink(bot)
    assert note.permalink == permalink_of(slack, note.channel_id, note.message_ts)
    [asked] = slack.calls_to("chat.getPermalink")
    assert asked.args == {"channel": note.channel_id, "message_ts": note.message_ts}
    link = f"<{note.permalink}|"

    # The request's ack links the thread (from the store: nothing is asked of Slack first).
    ack = await bot.cancel(TRAINING, user_id=ALICE)
    assert "Cancelling training" in ack["text"] and link in ack["text"], ack
    await wait_until(
        lambda: any(m.thread_ts == note.message_ts for m in slack.messages[note.channel_id]),
        timeout=10,
        what="the outcome in the thread",
    )

    # History, watch and App Home link the same permalink; none of them asks for it again.
    assert link in await history_text(bot)
    before = len(slack.response_posts["cmd"])
    assert await bot.command(f"watch {TRAINING}", user_id=BOB) == {}
    await slack.wait_for_response("cmd", count=before + 1)
    assert link in slack.response_posts["cmd"][-1]["text"]
    event = {"type": "app_home_opened", "user": BOB, "channel": "D0HOME001", "tab": "home"}
    status, _ = await bot.post(event_body(event, team_id=slack.team_id), JSON)
    assert status == 200
    [published] = await slack.wait_for("views.publish")
    assert link in json.dumps(published.args["view"], ensure_ascii=False)
    assert len(slack.calls_to("chat.getPermalink")) == 1  # recorded once, when posted
    assert "https://slack.com/archives/" not in json.dumps(
        [p for posts in slack.response_posts.values() for p in posts]
    )


async def test_the_reports_own_thread_is_linked_by_its_permalink(bot: Bot) -> None:
    """No notification: the bot's "asked to cancel" parent is what history links to."""
    slack = bot.slack
    await bot.cancel(OTHER, user_id=ALICE)

    async def announced() -> bool:
        rows = await bot.runtime.store.cancellations.recent(slack.team_id)
        return bool(rows and rows[0].report_permalink and rows[0].report_state == "delivered")

    await wait_until(announced, timeout=10, what="the report to be delivered")
    [row] = await bot.runtime.store.cancellations.recent(slack.team_id)
    assert row.report_channel and row.report_thread_ts
    assert row.report_permalink == permalink_of(slack, row.report_channel, row.report_thread_ts)
    assert f"<{row.report_permalink}|thread>" in await history_text(bot)


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(fake_slack.error("internal_error"), id="error"),
        pytest.param(fake_slack.rate_limited(30), id="429"),
        pytest.param(fake_slack.hang(), id="hang"),
    ],
)
async def test_a_permalink_failure_never_stops_a_post_or_an_answer(
    bot: Bot, reply: fake_slack.Reply, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_module, "PERMALINK_TIMEOUT", 0.5)
    slack = bot.slack
    slack.fail("chat.getPermalink", reply, reply, reply)
    started = time.monotonic()
    note = await notified(bot)
    await slack.wait_for("chat.getPermalink")
    # Not slept out (a 429 asks for 30 s): the link is given up and the notifier goes on.
    assert time.monotonic() - started < 8
    assert (await bot.runtime.store.notifications.get(slack.team_id, TRAINING)).permalink is None
    ack = await bot.cancel(TRAINING, user_id=ALICE)
    # The old link, rather than none: Slack still redirects it for most users.
    assert f"<{thread_link(note.channel_id, note.message_ts)}|" in ack["text"], ack
    await wait_until(
        lambda: any(m.thread_ts == note.message_ts for m in slack.messages[note.channel_id]),
        timeout=10,
        what="the outcome in the thread",
    )


async def test_the_cli_notification_records_its_permalink(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    env = bot_env(slack, modelslab, sqlite_url)
    run = await run_bot_cli(env, "notify", TRAINING, "--channel", CHANNEL, cwd=tmp_path)
    assert run.code == 0, run
    store = Store.from_url(async_database_url(sqlite_url))
    try:
        note = await store.notifications.get(slack.team_id, TRAINING)
    finally:
        await store.close()
    assert note is not None
    assert note.permalink == permalink_of(slack, CHANNEL, note.message_ts)
