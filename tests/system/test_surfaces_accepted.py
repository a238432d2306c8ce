"""Every surface, driven end to end with hostile and huge inputs, sends only what real Slack accepts.

Each test ends by putting every Web API call and every response_url post the fake received
through the strict fake's validator (tests/fakes/slack_rules.py), so a payload Slack would refuse
or misrender fails the test wherever it came from.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.fakes import modelslab as ml
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import (
    FORM,
    form_payload_body,
    users_value,
    view_submission_payload,
)
from tests.fakes.slack_rules import message_problems, problems_for
from tests.harness import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    TRAINING,
    Bot,
    bot_env,
    running_bot,
    wait_until,
)
from tests.integration.listeners.test_home import click_home, open_home
from tests.processes import run_bot_cli

AUDIT = "C0AUDIT01"
BROADCAST_TITLE = ("<!channel> ship it & merge > main " * 400)[:10_000]
HOSTILE_REASON = "<!here> quota & limits > 0 " * 200


def assert_slack_accepted_everything(slack: FakeSlack) -> None:
    """Every call and response_url post so far is one real Slack takes and renders as meant."""
    for call in slack.calls:
        problems = problems_for(call.method, call.args)
        assert problems == [], (call.method, problems[:5])
    for name, posts in slack.response_posts.items():
        for body in posts:
            problems = message_problems(body, surface="response_url")
            assert problems == [], (name, problems[:5])
    everything = json.dumps([c.args for c in slack.calls] + list(slack.response_posts.values()))
    for broadcast in ("<!channel>", "<!here>", "<!everyone>"):
        assert broadcast not in everything


@pytest.fixture
async def bot(slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str) -> AsyncIterator[Bot]:
    """A single-workspace bot with an audit channel; ALICE is a workspace admin."""
    slack.users[ALICE] = {"is_admin": True}
    async with running_bot(
        slack,
        modelslab,
        sqlite_url,
        AUDIT_CHANNEL=AUDIT,
        BOT_ENCRYPTION_KEY=Fernet.generate_key().decode(),
    ) as running:
        yield running


async def test_cli_notify_with_a_huge_broadcast_title_posts_it_truncated_and_pings_nobody(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    env = bot_env(slack, modelslab, sqlite_url)
    run = await run_bot_cli(
        env, "notify", TRAINING, "--channel", CHANNEL, "--title", BROADCAST_TITLE, cwd=tmp_path
    )
    assert run.code == 0, (
        run
    )  # before the text policy: "Slack could not be reached", nothing posted
    [message] = slack.messages[CHANNEL]
    section = message.blocks[0]["text"]["text"] if message.blocks else ""
    assert "&lt;!channel&gt; ship it &amp; merge &gt; main" in section and "…" in section
    assert "&lt;!channel&gt;" in message.text
    assert_slack_accepted_everything(slack)


async def test_a_modelslab_refusal_with_markup_reaches_thread_notification_and_audit_escaped(
    bot: Bot,
) -> None:
    bot.modelslab.script(TRAINING, ml.error(HOSTILE_REASON))
    await bot.runtime.store.notifications.save(
        workspace_id=bot.slack.team_id,
        training_id=TRAINING,
        channel_id=CHANNEL,
        message_ts=bot.slack.add_message(CHANNEL, "Training", user=bot.slack.bot_user_id).ts,
        title=BROADCAST_TITLE,
    )
    card = await bot.command(TRAINING, user_id=ALICE, user_name="alice", channel_id=CHANNEL)
    assert message_problems(card, surface="ack") == []
    ack = await bot.cancel(TRAINING, user_id=ALICE, user_name="alice", channel_id=CHANNEL)
    assert "Cancelling training" in ack["text"], ack
    assert message_problems(ack, surface="response_url") == []
    posts = await bot.slack.wait_for(
        "chat.postMessage", count=2, where=lambda c: c.args.get("channel") in (CHANNEL, AUDIT)
    )
    await bot.slack.wait_for("chat.update")
    reply = next(c for c in posts if c.args["channel"] == CHANNEL)
    assert 'ModelsLab said: "&lt;!here&gt; quota &amp; limits &gt; 0' in reply.args["text"]
    assert_slack_accepted_everything(bot.slack)


async def test_a_refusal_reads_cleanly_in_the_audit_channel(bot: Bot) -> None:
    ack = await bot.command("someRun01", user_id=CAROL, user_name="carol", channel_id=CHANNEL)
    assert ack["text"].startswith(":no_entry: ") and "allow-list" in ack["text"]
    [post] = await bot.slack.wait_for(
        "chat.postMessage", where=lambda c: c.args.get("channel") == AUDIT
    )
    text = post.args["text"]
    # Before: ":no_entry: <@…> was refused … (via command): :no_entry: You are not …"
    assert text.count(":no_entry:") == 1, text
    assert f"<@{CAROL}>" in text and "someRun01" in text and "allow-list" in text
    assert_slack_accepted_everything(bot.slack)


async def test_usage_history_and_list_answers_are_accepted(bot: Bot) -> None:
    usage = await bot.command("help", user_id=ALICE, user_name="alice")
    assert "&lt;training_id&gt;" in usage["text"] and "<training_id>" not in usage["text"]
    await bot.command("", user_id=ALICE, user_name="alice", channel_id=CHANNEL)  # the bare list
    await bot.command("history", user_id=BOB, user_name="bob", channel_id=CHANNEL)
    await bot.slack.wait_for_response("cmd", count=2)
    assert_slack_accepted_everything(bot.slack)


async def test_home_and_the_editor_work_with_a_thousand_entry_allow_list(bot: Bot) -> None:
    team = bot.slack.team_id
    ws, store = bot.runtime.deps.workspaces, bot.runtime.store
    people = [f"U{i:09d}" for i in range(600)]
    groups = [f"S{i:09d}" for i in range(400)]
    await ws.allow(team, people + groups, by=ALICE)
    await bot.runtime.deps.workspaces.set_channel(team, audit=True, channel=AUDIT, by=ALICE)

    admin_home = await open_home(bot, ALICE)  # before: views.publish refused, no Home at all
    assert "…and" in admin_home and "more" in admin_home
    await open_home(bot, CAROL)

    await click_home(bot, "home_edit_allow", ALICE)
    [opened] = await bot.slack.wait_for("views.open")
    editor = opened.args["view"]
    [users] = [b for b in editor["blocks"] if b.get("block_id") == "users_block"]
    shown = users["element"]["initial_users"]
    assert 0 < len(shown) < len(people)

    # Unselect one shown person; everyone the editor could not show stays on the list.
    kept = [u for u in shown if u != shown[0]]
    groups_shown = [
        o["value"]
        for b in editor["blocks"]
        if b.get("block_id") == "groups_block"
        for o in b["element"].get("initial_options", [])
    ]
    payload = view_submission_payload(
        callback_id="allow_modal",
        values={
            "users_block": {"users_input": users_value(kept)},
            "groups_block": {
                "groups_input": {
                    "type": "multi_external_select",
                    "selected_options": [
                        {"text": {"type": "plain_text", "text": g}, "value": g}
                        for g in groups_shown
                    ],
                }
            },
        },
        user_id=ALICE,
        team_id=team,
        private_metadata=editor["private_metadata"],
    )
    assert await bot.post(form_payload_body(payload), FORM) == (200, "")

    async def removed_only_the_unselected() -> bool:
        stored = await store.workspaces.allow_list(team)
        return shown[0] not in stored and len(stored) == len(people) + len(groups) - 1

    await wait_until(removed_only_the_unselected, timeout=10)
    await bot.slack.wait_for("views.publish", count=3)
    assert_slack_accepted_everything(bot.slack)


async def test_a_stored_key_hint_with_markup_is_shown_escaped(bot: Bot) -> None:
    key = "ml-key-with-<&>"
    bot.modelslab.valid_keys.add(key)
    await bot.runtime.deps.workspaces.set_key(bot.slack.team_id, key, by=ALICE)
    shown = await open_home(bot, ALICE)
    assert "ends …-&lt;&amp;&gt;" in shown and key not in shown
    assert_slack_accepted_everything(bot.slack)
