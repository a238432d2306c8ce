"""/cancel-training through real signed HTTP, against the fake Slack and fake ModelsLab."""

from __future__ import annotations

import asyncio

import pytest

from bot.slack.listeners.commands.cancel_training import Parsed, Verb, parse_command_text
from tests.fakes import modelslab as ml
from tests.harness import ALICE, CAROL, CHANNEL, TRAINING, Bot, card_button


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Parsed(Verb.LIST)),
        ("  ", Parsed(Verb.LIST)),
        ("help", Parsed(Verb.HELP)),
        ("HISTORY", Parsed(Verb.HISTORY)),
        ("history 7d", Parsed(Verb.HISTORY, "7d")),
        ("history two ids", Parsed(Verb.USAGE)),
        ("F5jvdzGnYi", Parsed(Verb.CANCEL, "F5jvdzGnYi")),
        ("cancel help", Parsed(Verb.CANCEL, "help")),
        ("watch abc", Parsed(Verb.WATCH, "abc")),
        ("two words", Parsed(Verb.USAGE)),
        ("help me", Parsed(Verb.USAGE)),
        ("cancel", Parsed(Verb.USAGE)),
        ("can-i", Parsed(Verb.CAN_I)),
        ("can-i F5jvdzGnYi", Parsed(Verb.CAN_I, "F5jvdzGnYi")),
        ("can-i a b", Parsed(Verb.USAGE)),
        ("Who-Can", Parsed(Verb.WHO_CAN)),
        ("who-can me", Parsed(Verb.USAGE)),
        ("cancel can-i", Parsed(Verb.CANCEL, "can-i")),
    ],
)
def test_command_text_is_parsed_as_the_design_says(text: str, expected: Parsed) -> None:
    assert parse_command_text(text) == expected


async def test_allowed_user_cancels_and_the_outcome_lands_in_a_thread(bot: Bot) -> None:
    ack = await bot.cancel(TRAINING)
    assert ack["response_type"] == "ephemeral" and "Cancelling training" in ack["text"]
    posts = await bot.slack.wait_for("chat.postMessage", count=2)
    parent, outcome = posts[0].args, posts[1].args
    assert (
        parent["channel"] == CHANNEL
        and f"<@{ALICE}> asked to cancel training `{TRAINING}`" in parent["text"]
    )
    assert outcome["thread_ts"] == bot.slack.messages[CHANNEL][0].ts
    assert (
        "cancel accepted" in outcome["text"]
        and TRAINING in outcome["text"]
        and f"<@{ALICE}>" in outcome["text"]
    )
    assert len(bot.modelslab.cancel_calls(TRAINING)) == 1


async def test_second_request_is_told_who_got_there_first(bot: Bot) -> None:
    await bot.cancel(TRAINING)
    await bot.slack.wait_for("chat.postMessage", count=2)
    again = await bot.cancel(TRAINING, user_id="U0BOB0001", user_name="bob")
    assert "already cancelled" in again["text"] and f"<@{ALICE}>" in again["text"]
    assert len(bot.modelslab.cancel_calls()) == 1


async def test_refused_user_is_told_privately_and_nothing_is_called(bot: Bot) -> None:
    ack = await bot.command(TRAINING, user_id=CAROL, user_name="carol")
    assert ack["response_type"] == "ephemeral" and "allow-list" in ack["text"]
    assert bot.modelslab.cancel_calls() == []
    assert bot.slack.calls_to("chat.postMessage") == []


@pytest.mark.parametrize("text", ["../etc", "a%2eb", "x" * 65, "abc?x=1"])
async def test_malformed_ids_get_an_explanation_and_no_call(bot: Bot, text: str) -> None:
    ack = await bot.command(text)
    assert ack["response_type"] == "ephemeral" and "not a training id" in ack["text"]
    assert bot.modelslab.cancel_calls() == []


async def test_help_and_junk_get_usage(bot: Bot) -> None:
    for text in ("help", "please stop it", "can-i a b", "who-can me"):
        ack = await bot.command(text)
        assert "/cancel-training history" in ack["text"]
    assert await bot.command("history") == {}
    [posted] = await bot.slack.wait_for_response("cmd")
    assert "No cancellations yet" in posted["text"], posted


async def test_channel_and_text_containing_payload_still_work(bot: Bot) -> None:
    ack = await bot.cancel(TRAINING, channel_name="payload-alerts", user_name="payload")
    assert "Cancelling training" in ack["text"]
    await bot.slack.wait_for("chat.postMessage", count=2)
    help_ack = await bot.cancel("cancel payload")
    assert "already" in help_ack["text"] or "Cancelling" in help_ack["text"]


async def test_history_lists_the_last_cancellations(bot: Bot) -> None:
    await bot.cancel(TRAINING)
    await bot.slack.wait_for("chat.postMessage", count=2)
    assert await bot.command("history") == {}
    [posted] = await bot.slack.wait_for_response("cmd")
    assert posted["response_type"] == "ephemeral"
    assert (
        TRAINING in posted["text"]
        and "cancel accepted" in posted["text"]
        and "thread" in posted["text"]
    )


async def test_bare_command_lists_cancellable_trainings_with_buttons(bot: Bot) -> None:
    store = bot.runtime.store
    await store.notifications.save(
        workspace_id=bot.slack.team_id, training_id="run1", channel_id=CHANNEL, message_ts="1.1"
    )
    await store.notifications.save(
        workspace_id=bot.slack.team_id, training_id="run2", channel_id=CHANNEL, message_ts="1.2"
    )
    assert await bot.command("") == {}
    [posted] = await bot.slack.wait_for_response("cmd")
    buttons = [b["accessory"] for b in posted["blocks"] if "accessory" in b]
    assert {b["value"] for b in buttons} == {"run1", "run2"}
    assert all(b["style"] == "danger" and "confirm" in b for b in buttons)


async def test_bare_command_refuses_people_off_the_list(bot: Bot) -> None:
    await bot.command("", user_id=CAROL)
    [posted] = await bot.slack.wait_for_response("cmd")
    assert "allow-list" in posted["text"]


async def test_no_post_permission_falls_back_to_response_url(bot: Bot) -> None:
    bot.slack.channels_without_bot.add(CHANNEL)
    await bot.cancel(TRAINING)
    [_, posted] = await bot.slack.wait_for_response(bot.last_card, count=2)
    assert "cancel accepted" in posted["text"] and posted["response_type"] == "ephemeral"


async def test_modelslab_refusal_is_reported_with_its_reason(bot: Bot) -> None:
    bot.modelslab.script(TRAINING, ml.error("Training already completed"))
    await bot.cancel(TRAINING)
    posts = await bot.slack.wait_for("chat.postMessage", count=2)
    assert "Training already completed" in posts[1].args["text"]


async def test_twenty_concurrent_commands_make_one_call(bot: Bot) -> None:
    users = [f"U0USER{i:03d}" for i in range(20)]
    bot.runtime.deps.access._entries = _allow(users)  # type: ignore[attr-defined]
    acks = await asyncio.gather(*(bot.cancel(TRAINING, user_id=u) for u in users))
    assert sum("Cancelling training" in a["text"] for a in acks) == 1
    await bot.slack.wait_for("chat.postMessage", count=2)
    assert len(bot.modelslab.cancel_calls()) == 1


def _allow(users: list[str]):
    async def lookup(team_id: str):
        return users

    return lookup


async def test_a_claim_that_cannot_finish_in_time_is_abandoned_and_the_user_told(bot: Bot) -> None:
    """Slack gives up after 3 s: a claim decided later would cancel behind the user's back."""
    import time

    from bot.store.cancellations import CancellationQueue

    reached_insert = asyncio.Event()
    original = CancellationQueue.enqueue

    async def stuck_claim(self: CancellationQueue, **kwargs: object):
        await asyncio.sleep(10)  # a database that does not answer in time
        reached_insert.set()
        return await original(self, **kwargs)  # type: ignore[arg-type]

    bot.runtime.store.cancellations.enqueue = stuck_claim.__get__(bot.runtime.store.cancellations)  # type: ignore[method-assign]
    card = await bot.command(TRAINING)
    button = card_button(card)
    assert button is not None
    started = time.monotonic()
    # The card's button is the request: its click must be answered within Slack's 3 s.
    await bot.click(
        value=button["value"],
        action_id=button["action_id"],
        user_id=ALICE,
        ephemeral=True,
        response_url=bot.slack.response_url("card"),
    )
    assert time.monotonic() - started < 3.0
    [ack] = await bot.slack.wait_for_response("card")
    assert "could not confirm" in ack["text"] and ack["response_type"] == "ephemeral"
    assert not reached_insert.is_set()
    assert await bot.runtime.store.cancellations.recent(bot.slack.team_id) == []
    assert bot.modelslab.cancel_calls() == []
