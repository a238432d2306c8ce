"""Safe cancelling (issue 14): the preview card, the undo window, the two-person rule, can-i."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import sqlalchemy as sa

from bot.config import async_database_url
from bot.model import Hold, State
from bot.slack.messages.blocks import APPROVE_ACTION, DENY_ACTION, HOLD_BLOCK, UNDO_ACTION
from bot.slack.messages.safe import CARD_CANCEL_ACTION, DISMISS_ACTION
from bot.store import Store
from bot.store.schema import cancellations
from tests.fakes import modelslab as ml
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack, error
from tests.harness import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    TRAINING,
    Bot,
    card_button,
    post_notification,
    running_bot,
)
from tests.integration.listeners.test_actions import buttons

DAVE = "U0DAVE001"  # owns trainings, not on the allow-list


async def settings(bot: Bot, **values: Any) -> None:
    """Change the workspace's safe-cancel settings as an admin would."""
    await bot.runtime.deps.workspaces.set_safety(bot.slack.team_id, by=ALICE, **values)


async def held_notice(bot: Bot, thread_ts: str | None = None) -> dict[str, Any]:
    """The thread reply with the Undo / Approve / Deny buttons, once the reporter posted it."""

    def is_notice(call: Any) -> bool:
        blocks = call.args.get("blocks") or []
        return any(b.get("block_id") == HOLD_BLOCK for b in blocks) and (
            thread_ts is None or call.args.get("thread_ts") == thread_ts
        )

    [call] = await bot.slack.wait_for("chat.postMessage", where=is_notice)
    message = bot.slack.find_message(call.args["channel"], _posted_ts(bot, call.args))
    return {"ts": message.ts, "thread_ts": message.thread_ts, "blocks": message.blocks}


def _posted_ts(bot: Bot, args: dict[str, Any]) -> str:
    for message in bot.slack.messages[args["channel"]]:
        if message.text == args["text"] and message.thread_ts == args.get("thread_ts"):
            return message.ts
    raise AssertionError("notice not stored")


async def press(bot: Bot, notice: dict[str, Any], action_id: str, user_id: str) -> list[dict]:
    """Press a button of the held notice; return the private answers the presser got."""
    [button] = [b for b in buttons(notice["blocks"]) if b["action_id"] == action_id]
    name = f"hold-{action_id}-{user_id}-{time.monotonic_ns()}"
    status = await bot.click(
        value=button["value"],
        action_id=action_id,
        user_id=user_id,
        message_ts=notice["ts"],
        thread_ts=notice["thread_ts"],
        blocks=notice["blocks"],
        response_url=bot.slack.response_url(name),
    )
    assert status == 200
    return await bot.slack.wait_for_response(name)


async def row_of(bot: Bot) -> Any:
    [row] = await bot.runtime.store.cancellations.recent(bot.slack.team_id)
    return row


# -- the preview card ------------------------------------------------------------------------


async def test_a_typed_id_answers_with_a_card_and_calls_nothing_until_its_button(bot: Bot) -> None:
    await post_notification(bot, owner=DAVE)
    card = await bot.command(TRAINING)
    assert card["response_type"] == "ephemeral"
    shown = json.dumps(card["blocks"])
    assert TRAINING in shown and "LoRA run" in shown and f"<@{DAVE}>" in shown
    assert "10 minutes" in shown  # the status call answered within the ack budget
    [cancel, dismiss] = buttons(card["blocks"])
    assert cancel["action_id"] == CARD_CANCEL_ACTION and cancel["style"] == "danger"
    assert "confirm" in cancel and dismiss["action_id"] == DISMISS_ACTION
    assert bot.modelslab.cancel_calls() == []
    assert await bot.runtime.store.cancellations.recent(bot.slack.team_id) == []

    answer = await bot.cancel(TRAINING)
    assert "Cancelling training" in answer["text"]
    await bot.slack.wait_for(
        "chat.postMessage", where=lambda c: "cancel accepted" in c.args["text"]
    )
    assert len(bot.modelslab.cancel_calls(TRAINING)) == 1
    assert (await row_of(bot)).origin == "command"


async def test_the_card_says_unknown_when_modelslab_does_not_answer_in_time(bot: Bot) -> None:
    bot.modelslab.script_status(TRAINING, ml.hang())
    started = time.monotonic()
    card = await bot.command(TRAINING)
    assert time.monotonic() - started < 2.5
    text = json.dumps(card["blocks"])
    assert "unknown" in text and "no notification" in text
    assert card_button(card) is not None


async def test_a_typo_is_never_a_request_and_dismiss_removes_the_card(bot: Bot) -> None:
    bad = await bot.command("not/an/id")
    assert "not a training id" in bad["text"] and card_button(bad) is None
    await bot.command(TRAINING)
    status = await bot.click(
        value="dismiss",
        action_id=DISMISS_ACTION,
        ephemeral=True,
        response_url=bot.slack.response_url("dismiss"),
    )
    assert status == 200
    [posted] = await bot.slack.wait_for_response("dismiss")
    assert posted.get("delete_original") is True
    assert bot.modelslab.cancel_calls() == []


async def test_a_refused_user_gets_no_card_and_the_refusal_names_the_rule(bot: Bot) -> None:
    answer = await bot.command(TRAINING, user_id=CAROL, user_name="carol")
    assert card_button(answer) is None and "allow-list" in answer["text"]


# -- the undo window --------------------------------------------------------------------------


async def test_undo_inside_the_window_calls_nothing_and_the_thread_says_undone(bot: Bot) -> None:
    await settings(bot, undo_seconds=60)
    ts = await post_notification(bot)
    await bot.click(message_ts=ts)  # BOB presses the notification's Cancel training
    notice = await held_notice(bot, ts)
    assert "in 60 s" in json.dumps(notice["blocks"]) and f"<@{BOB}>" in json.dumps(notice["blocks"])
    await bot.slack.wait_for(
        "chat.update", where=lambda c: "Undo" in json.dumps(c.args.get("blocks"))
    )
    answers = await press(bot, notice, UNDO_ACTION, BOB)
    assert answers[0].get("replace_original") is True and "Undone" in answers[0]["text"]
    [reply] = await bot.slack.wait_for(
        "chat.postMessage", where=lambda c: "undone by" in c.args["text"]
    )
    assert reply.args["thread_ts"] == ts and "nothing was cancelled" in reply.args["text"]
    row = await row_of(bot)
    assert row.state == State.WITHDRAWN and row.decided_by == BOB
    assert bot.modelslab.cancel_calls() == []
    # The notification offers Cancel again; a new request is a new claim.
    await bot.slack.wait_for(
        "chat.update", where=lambda c: "Not cancelled" in json.dumps(c.args.get("blocks"))
    )
    assert [b["action_id"] for b in buttons(bot.slack.find_message(CHANNEL, ts).blocks)] == [
        "cancel_training"
    ]


async def test_someone_off_the_list_cannot_undo(bot: Bot) -> None:
    await settings(bot, undo_seconds=60)
    ts = await post_notification(bot, owner=DAVE)
    await bot.click(message_ts=ts)
    notice = await held_notice(bot, ts)
    [answer] = await press(bot, notice, UNDO_ACTION, CAROL)
    assert "may undo" in answer["text"] and answer["response_type"] == "ephemeral"
    assert (await row_of(bot)).state == State.HELD


async def test_a_window_that_ended_while_the_bot_was_down_proceeds_once_on_start(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> None:
    async with running_bot(slack, modelslab, sqlite_url) as first:
        await settings(first, undo_seconds=60)
        answer = await first.cancel(TRAINING)
        assert "in 60 s" in answer["text"]
        row = await row_of(first)
        assert row.state == State.HELD and row.hold is Hold.UNDO
    # The window ends while no bot runs.
    store = Store.from_url(async_database_url(sqlite_url))
    try:
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.update(cancellations).values(
                    held_until=time.time() - 1, next_attempt_at=time.time() - 1
                )
            )
    finally:
        await store.close()
    assert modelslab.cancel_calls() == []
    async with running_bot(slack, modelslab, sqlite_url) as second:
        settled = await second.runtime.service.wait_settled(row.id, timeout=10)
        assert settled is not None and settled.state == State.CANCELLED
    assert len(modelslab.cancel_calls(TRAINING)) == 1


async def test_the_first_click_still_wins_while_held(bot: Bot) -> None:
    await settings(bot, undo_seconds=60)
    ts = await post_notification(bot)
    await bot.click(message_ts=ts)
    await bot.click(message_ts=ts, user_id=ALICE)
    [told] = await bot.slack.wait_for_response(f"click-{ALICE}")
    assert "already being cancelled" in told["text"]
    assert len(await bot.runtime.store.cancellations.recent(bot.slack.team_id)) == 1


# -- the two-person rule --------------------------------------------------------------------


async def test_someone_elses_training_waits_and_self_approval_is_refused(bot: Bot) -> None:
    await settings(bot, two_person=True)
    ts = await post_notification(bot, owner=DAVE)
    await bot.click(message_ts=ts)  # BOB asks to cancel DAVE's training
    notice = await held_notice(bot, ts)
    assert f"<@{DAVE}>" in json.dumps(notice["blocks"])
    assert (await row_of(bot)).hold is Hold.APPROVAL
    [answer] = await press(bot, notice, APPROVE_ACTION, BOB)
    assert "cannot approve it yourself" in answer["text"]
    [answer] = await press(bot, notice, APPROVE_ACTION, CAROL)  # not allowed, not the owner
    assert "may approve" in answer["text"]
    assert (await row_of(bot)).state == State.HELD and bot.modelslab.cancel_calls() == []


async def test_a_second_allowed_user_approves_and_exactly_one_call_is_made(bot: Bot) -> None:
    await settings(bot, two_person=True)
    ts = await post_notification(bot, owner=DAVE)
    await bot.click(message_ts=ts)
    notice = await held_notice(bot, ts)
    [answer] = await press(bot, notice, APPROVE_ACTION, ALICE)
    assert "Approved by" in answer["text"] and answer.get("replace_original") is True
    [reply] = await bot.slack.wait_for(
        "chat.postMessage", where=lambda c: "cancel accepted" in c.args["text"]
    )
    assert f"Approved by <@{ALICE}>" in reply.args["text"]
    assert len(bot.modelslab.cancel_calls(TRAINING)) == 1
    again = await press(bot, notice, APPROVE_ACTION, ALICE)
    assert "no longer waiting" in again[0]["text"]
    assert len(bot.modelslab.cancel_calls(TRAINING)) == 1


async def test_the_owner_may_approve_and_deny_ends_it_with_nothing_cancelled(bot: Bot) -> None:
    await settings(bot, two_person=True)
    ts = await post_notification(bot, owner=DAVE)
    await bot.click(message_ts=ts)
    notice = await held_notice(bot, ts)
    [answer] = await press(bot, notice, DENY_ACTION, DAVE)
    assert "Denied" in answer["text"]
    await bot.slack.wait_for("chat.postMessage", where=lambda c: "denied by" in c.args["text"])
    row = await row_of(bot)
    assert row.state == State.WITHDRAWN and row.outcome == "denied"
    assert bot.modelslab.cancel_calls() == []


async def test_the_allow_list_is_checked_again_at_approval(bot: Bot) -> None:
    await settings(bot, two_person=True)
    await bot.runtime.deps.workspaces.allow(bot.slack.team_id, [CAROL], by=ALICE)
    ts = await post_notification(bot, owner=DAVE)
    await bot.click(message_ts=ts, user_id=CAROL)
    notice = await held_notice(bot, ts)
    await bot.runtime.deps.workspaces.deny(bot.slack.team_id, [CAROL], by=ALICE)
    [answer] = await press(bot, notice, APPROVE_ACTION, ALICE)
    assert "no longer on the allow-list" in answer["text"]
    assert bot.modelslab.cancel_calls() == []


async def test_expiry_cancels_nothing(bot: Bot) -> None:
    await settings(bot, two_person=True)
    team = bot.slack.team_id
    await bot.runtime.store.workspaces.update(team, approval_seconds=1)
    bot.runtime.deps.workspaces.forget_cached(team)
    ts = await post_notification(bot, owner=DAVE)
    await bot.click(message_ts=ts)
    row = await row_of(bot)
    settled = await bot.runtime.service.wait_settled(row.id, timeout=10)
    assert settled is not None and settled.state == State.WITHDRAWN
    assert settled.outcome == "expired"
    await bot.slack.wait_for(
        "chat.postMessage", where=lambda c: "not approved in time" in c.args["text"]
    )
    assert bot.modelslab.cancel_calls() == []


async def test_the_owner_cancelling_their_own_training_needs_no_approval(bot: Bot) -> None:
    await settings(bot, two_person=True)
    ts = await post_notification(bot, owner=BOB)
    await bot.click(message_ts=ts)
    await bot.slack.wait_for(
        "chat.postMessage", where=lambda c: "cancel accepted" in c.args["text"]
    )
    assert len(bot.modelslab.cancel_calls(TRAINING)) == 1
    assert (await row_of(bot)).hold is None


# -- can-i and who-can ------------------------------------------------------------------------


async def can_i(bot: Bot, text: str, user_id: str) -> str:
    assert await bot.command(text, user_id=user_id) == {}
    [posted] = await bot.slack.wait_for_response("cmd")
    bot.slack.response_posts["cmd"].clear()
    return str(posted["text"])


async def test_can_i_names_the_rule_for_each_case(bot: Bot) -> None:
    group = "S0ONCALL1"
    bot.slack.usergroups[group] = [CAROL]
    await bot.runtime.deps.workspaces.allow(bot.slack.team_id, [group], by=ALICE)
    assert "listed on the allow-list by your user ID" in await can_i(bot, "can-i", ALICE)
    assert f"member of the allowed user group <!subteam^{group}>" in await can_i(
        bot, "can-i", CAROL
    )
    assert "not on the allow-list" in await can_i(bot, "can-i", DAVE)
    await settings(bot, two_person=True)
    await post_notification(bot, owner=DAVE)
    assert "two-person rule" in await can_i(bot, f"can-i {TRAINING}", ALICE)
    await bot.runtime.deps.workspaces.deny(bot.slack.team_id, [group], by=ALICE)


async def test_can_i_says_when_a_group_could_not_be_looked_up(bot: Bot) -> None:
    group = "S0PAID001"
    bot.slack.paid_plan = False
    await bot.runtime.deps.workspaces.allow(bot.slack.team_id, [group], by=ALICE)
    text = await can_i(bot, "can-i", DAVE)
    assert "could not be looked up" in text and "paid plan" in text


async def test_who_can_lists_people_and_groups(bot: Bot) -> None:
    await bot.runtime.deps.workspaces.allow(bot.slack.team_id, ["S0ONCALL1"], by=ALICE)
    assert await bot.command("who-can", user_id=DAVE) == {}
    [posted] = await bot.slack.wait_for_response("cmd")
    assert f"<@{ALICE}>" in posted["text"] and f"<@{BOB}>" in posted["text"]
    assert "<!subteam^S0ONCALL1>" in posted["text"]


# -- App Home (admins) ------------------------------------------------------------------------


async def test_admins_set_the_undo_window_and_two_person_rule_in_app_home(bot: Bot) -> None:
    from tests.fakes.slack_requests import form_payload_body
    from tests.integration.listeners.test_home import home_action_payload, open_home

    bot.slack.users[ALICE] = {"is_admin": True}
    home = await open_home(bot, ALICE)
    assert "home_undo_window" in home and "home_two_person" in home
    for action_id, value in (("home_undo_window", "30"), ("home_two_person", "on")):
        payload = home_action_payload(bot, action_id, ALICE)
        payload["actions"][0].update(
            type="static_select",
            selected_option={"text": {"type": "plain_text", "text": value}, "value": value},
        )
        status, _ = await bot.post(form_payload_body(payload), "application/x-www-form-urlencoded")
        assert status == 200
    await bot.slack.wait_for(
        "views.publish", count=3, where=lambda c: c.args.get("user_id") == ALICE
    )
    safety = await bot.runtime.deps.workspaces.safety(bot.slack.team_id)
    assert (safety.undo_seconds, safety.two_person) == (30, True)
    # Someone who is not an admin changes nothing.
    payload = home_action_payload(bot, "home_undo_window", BOB)
    payload["actions"][0].update(
        type="static_select",
        selected_option={"text": {"type": "plain_text", "text": "Off"}, "value": "0"},
    )
    await bot.post(form_payload_body(payload), "application/x-www-form-urlencoded")
    await bot.slack.wait_for("views.open")
    assert (await bot.runtime.deps.workspaces.safety(bot.slack.team_id)).undo_seconds == 30


# -- the Cancel button shows to those who may press it ---------------------------------------


def _cancel_buttons(blocks: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [b for b in buttons(blocks or []) if b["action_id"] == "cancel_training"]


def test_the_cancel_button_names_its_viewers_up_to_the_cap_then_shows_to_everyone() -> None:
    from bot.model import Notification
    from bot.slack.messages import text as policy
    from bot.slack.messages.blocks import build_notification
    from tests.fakes.slack_rules import message_problems

    note = Notification("T0A1B2C3D", TRAINING, CHANNEL, "1.2", ALICE, "LoRA run", None, 0.0)
    few = build_notification(note, None, visible_to=[ALICE, BOB])
    [button] = _cancel_buttons(few["blocks"])
    assert button["visible_to_user_ids"] == [ALICE, BOB]
    many = [f"U0MANY{i:04d}" for i in range(policy.VISIBLE_USERS + 1)]
    [button] = _cancel_buttons(build_notification(note, None, visible_to=many)["blocks"])
    assert "visible_to_user_ids" not in button
    assert message_problems(few) == []
    # What Slack would be sent beyond the cap is refused by the strict fake.
    over = json.loads(json.dumps(few))
    over["blocks"][-1]["elements"][0]["visible_to_user_ids"] = many
    assert any("visible_to_user_ids" in p for p in message_problems(over))


async def test_the_viewers_follow_allow_list_changes(bot: Bot) -> None:
    from tests.integration.listeners.test_home import submit_allow

    bot.slack.users[ALICE] = {"is_admin": True}
    ts = await post_notification(bot)
    assert await submit_allow(bot, [CAROL]) == (200, "")

    def shows_to(users: list[str]) -> Any:
        def check(call: Any) -> bool:
            found = _cancel_buttons(call.args.get("blocks"))
            return (
                call.args.get("ts") == ts
                and bool(found)
                and (found[0].get("visible_to_user_ids") == users)
            )

        return check

    await bot.slack.wait_for("chat.update", where=shows_to(sorted([ALICE, BOB, CAROL])))
    assert await submit_allow(bot, []) == (200, "")
    await bot.slack.wait_for("chat.update", where=shows_to(sorted([ALICE, BOB])))


async def test_groups_count_once_their_membership_is_cached(slack: FakeSlack) -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    from bot.service.access import AccessPolicy, GroupMembers, static_entries
    from bot.slack.usergroups import SlackGroupMembers

    group = "S0ONCALL1"
    slack.usergroups[group] = [CAROL, DAVE]
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url, retry_handlers=[])

    async def clients(team_id: str) -> AsyncWebClient:
        return client

    policy = AccessPolicy(
        entries=static_entries("T0A1B2C3D", [ALICE, group]),
        groups=GroupMembers(lookup=SlackGroupMembers(clients=clients)),
    )
    # Not cached yet: shown to everyone rather than to a list missing the group's members.
    assert await policy.visible_users("T0A1B2C3D") is None
    await slack.wait_for("usergroups.users.list")
    deadline = time.monotonic() + 5
    while (shown := await policy.visible_users("T0A1B2C3D")) is None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert shown == sorted([ALICE, CAROL, DAVE])


async def test_the_held_notice_and_its_end_reach_the_audit_channel(bot: Bot) -> None:
    audit = "C0AUDIT01"
    await bot.runtime.store.workspaces.update(bot.slack.team_id, audit_channel=audit)
    bot.runtime.deps.workspaces.forget_cached(bot.slack.team_id)
    await settings(bot, undo_seconds=60)
    ts = await post_notification(bot)
    await bot.click(message_ts=ts)
    notice = await held_notice(bot, ts)
    [held] = await bot.slack.wait_for(
        "chat.postMessage", where=lambda c: c.args["channel"] == audit
    )
    assert "in 60 s" in held.args["text"] and "blocks" not in held.args
    await press(bot, notice, UNDO_ACTION, ALICE)
    posts = await bot.slack.wait_for(
        "chat.postMessage", count=2, where=lambda c: c.args["channel"] == audit
    )
    assert f"undone by <@{ALICE}>" in posts[1].args["text"]


# -- review fixes (issue 14): who may undo, where the buttons show, what refusals say ----------


async def test_the_owner_off_the_list_may_undo_under_the_undo_window_alone(bot: Bot) -> None:
    await settings(bot, undo_seconds=60)
    ts = await post_notification(bot, owner=DAVE)
    await bot.click(message_ts=ts)  # BOB asks to cancel DAVE's training
    notice = await held_notice(bot, ts)
    [answer] = await press(bot, notice, UNDO_ACTION, DAVE)
    assert "Undone" in answer["text"]
    row = await row_of(bot)
    assert row.owner_id == DAVE and row.state == State.WITHDRAWN and row.decided_by == DAVE
    assert bot.modelslab.cancel_calls() == []


async def test_the_requesters_private_answer_carries_undo_and_undoes(bot: Bot) -> None:
    await settings(bot, undo_seconds=60)
    answer = await bot.cancel(TRAINING)
    [hold] = [b for b in answer["blocks"] if b.get("block_id") == HOLD_BLOCK]
    [undo] = hold["elements"]
    assert undo["action_id"] == UNDO_ACTION and "in 60 s" in answer["text"]
    status = await bot.click(
        value=undo["value"],
        action_id=UNDO_ACTION,
        user_id=ALICE,
        ephemeral=True,
        response_url=bot.slack.response_url("undo-private"),
    )
    assert status == 200
    [undone] = await bot.slack.wait_for_response("undo-private")
    assert undone.get("replace_original") is True and "Undone" in undone["text"]
    assert (await row_of(bot)).state == State.WITHDRAWN and bot.modelslab.cancel_calls() == []


async def test_without_a_thread_the_fallback_notice_still_carries_undo(bot: Bot) -> None:
    await settings(bot, undo_seconds=60)
    bot.slack.channels_without_bot.add("C0NOBOT01")
    await bot.cancel(TRAINING, channel_id="C0NOBOT01", response_name="nobot")
    # The card's replacement first, then the held notice through the response_url.
    posts = await bot.slack.wait_for_response("nobot", count=2)
    notice = posts[1]
    assert notice["response_type"] == "ephemeral" and "in 60 s" in notice["text"]
    assert [b["action_id"] for b in buttons(notice["blocks"])] == [UNDO_ACTION]


async def test_a_second_click_on_an_approval_hold_is_told_it_waits_for_approval(bot: Bot) -> None:
    await settings(bot, two_person=True)
    ts = await post_notification(bot, owner=DAVE)
    await bot.click(message_ts=ts)  # BOB
    await held_notice(bot, ts)
    await bot.click(message_ts=ts, user_id=ALICE)
    [told] = await bot.slack.wait_for_response(f"click-{ALICE}")
    assert "waiting for approval" in told["text"] and f"<@{DAVE}>" in told["text"]
    assert "already being cancelled" not in told["text"]
    card = await bot.command(TRAINING, user_id=ALICE)
    assert "waiting for approval" in json.dumps(card["blocks"]) and card_button(card) is None


async def test_a_second_click_on_an_undo_window_names_the_seconds_left(bot: Bot) -> None:
    await settings(bot, undo_seconds=60)
    ts = await post_notification(bot)
    await bot.click(message_ts=ts)
    await bot.click(message_ts=ts, user_id=ALICE)
    [told] = await bot.slack.wait_for_response(f"click-{ALICE}")
    assert "being cancelled in" in told["text"] and "Undo" in told["text"]


async def test_a_failed_group_look_up_at_approval_is_not_called_off_the_list(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> None:
    erin = "U0ERIN001"
    slack.usergroups["S0REQ0001"] = [CAROL]
    async with running_bot(slack, modelslab, sqlite_url) as first:
        await settings(first, two_person=True)
        await first.runtime.deps.workspaces.allow(first.slack.team_id, ["S0REQ0001"], by=ALICE)
        ts = await post_notification(first, owner=DAVE)
        await first.click(message_ts=ts, user_id=CAROL)
        notice = await held_notice(first, ts)
    # A fresh process has no cached membership, and Slack fails every look-up now.
    slack.fail("usergroups.users.list", *[error("internal_error")] * 50)
    async with running_bot(slack, modelslab, sqlite_url) as second:
        [answer] = await press(second, notice, APPROVE_ACTION, ALICE)
        assert "could not be confirmed" in answer["text"], answer["text"]
        assert "no longer on the allow-list" not in answer["text"]
        [answer] = await press(second, notice, DENY_ACTION, erin)
        assert "may deny" in answer["text"] and "could not be confirmed" in answer["text"]
        assert (await row_of(second)).state == State.HELD
    assert modelslab.cancel_calls() == []


async def test_refused_hold_presses_reach_the_audit_channel(bot: Bot) -> None:
    audit = "C0AUDIT01"
    await bot.runtime.store.workspaces.update(bot.slack.team_id, audit_channel=audit)
    bot.runtime.deps.workspaces.forget_cached(bot.slack.team_id)
    await settings(bot, two_person=True)
    ts = await post_notification(bot, owner=DAVE)
    await bot.click(message_ts=ts)  # BOB
    notice = await held_notice(bot, ts)
    await press(bot, notice, APPROVE_ACTION, BOB)  # self-approval
    await press(bot, notice, DENY_ACTION, CAROL)  # not allowed, not the owner

    def refused(call: Any) -> bool:
        return call.args["channel"] == audit and "was refused" in call.args["text"]

    posts = await bot.slack.wait_for("chat.postMessage", count=2, where=refused)
    texts = sorted(p.args["text"] for p in posts)
    assert f"<@{BOB}> was refused approving the cancellation of training" in texts[0]
    assert "cannot approve it yourself" in texts[0]
    assert f"<@{CAROL}> was refused denying the cancellation of training" in texts[1]


async def test_an_approval_after_its_time_ended_says_when_it_ended(bot: Bot) -> None:
    await settings(bot, two_person=True)
    ts = await post_notification(bot, owner=DAVE)
    await bot.click(message_ts=ts)
    notice = await held_notice(bot, ts)
    ended = int(time.time()) - 5
    # The approval time is over, but the worker has not withdrawn the row yet.
    async with bot.runtime.store.engine.begin() as conn:
        await conn.execute(sa.update(cancellations).values(held_until=ended))
    [answer] = await press(bot, notice, APPROVE_ACTION, ALICE)
    assert "approval time ended at" in answer["text"] and f"<!date^{ended}^" in answer["text"]
    assert (await row_of(bot)).state == State.HELD and bot.modelslab.cancel_calls() == []


async def test_a_hold_button_with_a_non_ascii_digit_is_answered_not_crashed(bot: Bot) -> None:
    await settings(bot, undo_seconds=60)
    ts = await post_notification(bot)
    await bot.click(message_ts=ts)
    notice = await held_notice(bot, ts)
    [button] = buttons(notice["blocks"])
    status = await bot.click(
        value="\u00b2",
        action_id=button["action_id"],
        message_ts=notice["ts"],
        thread_ts=notice["thread_ts"],
        blocks=notice["blocks"],
        response_url=bot.slack.response_url("superscript"),
    )
    assert status == 200
    [answer] = await bot.slack.wait_for_response("superscript")
    assert "does not belong" in answer["text"]
    assert (await row_of(bot)).state == State.HELD
