"""The Cancel and Retry buttons through real signed HTTP."""

from __future__ import annotations

import asyncio
import json

from bot.slack.messages.blocks import CANCEL_ACTION, RETRY_ACTION
from tests.fakes import modelslab as ml
from tests.harness import ALICE, BOB, CAROL, CHANNEL, TRAINING, Bot, post_notification


def buttons(blocks: list[dict]) -> list[dict]:
    return [e for b in blocks if b.get("type") == "actions" for e in b["elements"]]


async def test_notification_has_a_red_button_with_a_confirm_dialog(bot: Bot) -> None:
    ts = await post_notification(bot)
    [button] = buttons(bot.slack.find_message(CHANNEL, ts).blocks)
    assert (
        button["action_id"] == CANCEL_ACTION
        and button["value"] == TRAINING
        and button["style"] == "danger"
    )
    assert (
        TRAINING in button["confirm"]["text"]["text"]
        and "cannot be resumed" in button["confirm"]["text"]["text"]
    )


async def test_click_updates_the_notification_and_replies_in_its_thread(bot: Bot) -> None:
    ts = await post_notification(bot)
    assert await bot.click(message_ts=ts) == 200
    [reply] = await bot.slack.wait_for(
        "chat.postMessage", where=lambda c: c.args.get("thread_ts") == ts
    )
    text = reply.args["text"]
    assert (
        f"<@{BOB}>" in text
        and TRAINING in text
        and "cancel accepted" in text
        and f"cc <@{ALICE}>" in text
    )
    message = bot.slack.find_message(CHANNEL, ts)
    assert buttons(message.blocks) == []
    assert "Cancel accepted" in json.dumps(message.blocks) and f"<@{BOB}>" in json.dumps(
        message.blocks
    )
    assert len(bot.modelslab.cancel_calls()) == 1


async def test_twenty_clicks_make_one_call_and_the_others_are_told_privately(bot: Bot) -> None:
    ts = await post_notification(bot)
    users = [f"U0USER{i:03d}" for i in range(20)]

    async def lookup(team_id: str):
        return users

    bot.runtime.deps.access._entries = lookup  # type: ignore[attr-defined]
    statuses = await asyncio.gather(*(bot.click(message_ts=ts, user_id=u) for u in users))
    assert set(statuses) == {200}
    await bot.slack.wait_for("chat.postMessage", where=lambda c: c.args.get("thread_ts") == ts)
    assert len(bot.modelslab.cancel_calls()) == 1
    told = [
        name
        for name, posts in bot.slack.response_posts.items()
        if posts and "already" in posts[0]["text"]
    ]
    assert len(told) == 19


async def test_refused_click_is_ephemeral_and_calls_nothing(bot: Bot) -> None:
    ts = await post_notification(bot)
    await bot.click(message_ts=ts, user_id=CAROL)
    [posted] = await bot.slack.wait_for_response(f"click-{CAROL}")
    assert posted["response_type"] == "ephemeral" and "allow-list" in posted["text"]
    assert bot.modelslab.calls == [] and bot.slack.calls_to("chat.update") == []


async def test_failure_shows_the_reason_and_a_retry_button_that_works(bot: Bot) -> None:
    bot.modelslab.script(
        TRAINING, ml.server_error(500), ml.server_error(500), ml.server_error(500), ml.ok()
    )
    ts = await post_notification(bot)
    await bot.click(message_ts=ts)
    await bot.slack.wait_for("chat.postMessage", where=lambda c: c.args.get("thread_ts") == ts)
    await bot.slack.wait_for(
        "chat.update", count=1, where=lambda c: "Retry" in json.dumps(c.args.get("blocks"))
    )
    [retry] = buttons(bot.slack.find_message(CHANNEL, ts).blocks)
    assert retry["action_id"] == RETRY_ACTION
    await bot.click(message_ts=ts, action_id=RETRY_ACTION, user_id=ALICE)
    replies = await bot.slack.wait_for(
        "chat.postMessage", count=2, where=lambda c: c.args.get("thread_ts") == ts
    )
    assert "cancel accepted" in replies[1].args["text"] and "via retry" in replies[1].args["text"]
    assert buttons(bot.slack.find_message(CHANNEL, ts).blocks) == []


async def test_click_from_another_workspace_uses_nothing_of_this_one(bot: Bot) -> None:
    ts = await post_notification(bot)
    await bot.click(message_ts=ts, team_id="T0OTHER01")
    [posted] = await bot.slack.wait_for_response(f"click-{BOB}")
    assert "nothing was cancelled" in posted["text"] or "not set up" in posted["text"]
    assert bot.modelslab.calls == []


async def test_tampered_value_is_refused(bot: Bot) -> None:
    ts = await post_notification(bot)
    await bot.click(value="someOtherRun", message_ts=ts)
    [posted] = await bot.slack.wait_for_response(f"click-{BOB}")
    assert "does not belong" in posted["text"]
    assert bot.modelslab.calls == []
