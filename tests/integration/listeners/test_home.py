"""App Home: what each user sees, and the admin settings (buttons, modals, audit) over signed HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.model import Workspace
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import ApiCall, FakeSlack
from tests.fakes.slack_requests import (
    APP_ID,
    BOT_ID,
    FORM,
    JSON,
    TEAM_DOMAIN,
    event_body,
    form_payload_body,
    plain_text_value,
    users_value,
    view_submission_payload,
)
from tests.harness import ALICE, BOB, CAROL, CHANNEL, TRAINING, Bot, running_bot, wait_until

DAVE = "U0DAVE001"
AUDIT = "C0AUDIT01"
NEW_KEY = "ml-home-key-Wd7fQ"
ENV_KEY = "good-key"


@pytest.fixture
def encryption_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
async def bot(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, encryption_key: str
) -> AsyncIterator[Bot]:
    """A single-workspace bot that may store secrets; ALICE is a workspace admin."""
    slack.users[ALICE] = {"is_admin": True}
    modelslab.valid_keys.add(NEW_KEY)
    async with running_bot(
        slack, modelslab, sqlite_url, BOT_ENCRYPTION_KEY=encryption_key
    ) as running:
        yield running


# --- helpers -----------------------------------------------------------------------------


def team(bot: Bot) -> str:
    return bot.slack.team_id


_event_ids = iter(range(1, 10_000))


async def open_home(bot: Bot, user: str) -> str:
    """Open the Home tab as `user`; return the published view as JSON text."""
    before = len(_publishes(bot, user))
    event = {
        "type": "app_home_opened",
        "user": user,
        "channel": "D0HOME001",
        "tab": "home",
        "event_ts": f"{time.time():.6f}",
    }
    body = event_body(event, team_id=team(bot), event_id=f"Ev0HOME{next(_event_ids):04d}")
    status, _ = await bot.post(body, JSON)
    assert status == 200
    published = await bot.slack.wait_for(
        "views.publish", count=before + 1, where=lambda c: c.args.get("user_id") == user
    )
    view = published[-1].args["view"]
    assert view["type"] == "home"
    return json.dumps(view, ensure_ascii=False)


def _publishes(bot: Bot, user: str) -> list[ApiCall]:
    return [c for c in bot.slack.calls_to("views.publish") if c.args.get("user_id") == user]


def home_action_payload(
    bot: Bot, action_id: str, user: str, *, selected_conversation: str | None = None
) -> dict[str, Any]:
    """A block_actions payload for a control on the Home tab: a view container, no channel,
    no message, no response_url (as Slack sends it)."""
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": "settings",
        "action_ts": f"{time.time():.6f}",
    }
    if selected_conversation is None:
        action.update(type="button", text={"type": "plain_text", "text": "x"})
    else:
        action.update(type="conversations_select", selected_conversation=selected_conversation)
    return {
        "type": "block_actions",
        "api_app_id": APP_ID,
        "token": "legacy-token",
        "trigger_id": f"1111.2222.{action_id}.{user}",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team(bot)},
        "team": {"id": team(bot), "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "container": {"type": "view", "view_id": "V0HOME0001"},
        "view": {
            "id": "V0HOME0001",
            "team_id": team(bot),
            "type": "home",
            "blocks": [],
            "private_metadata": "",
            "callback_id": "",
            "state": {"values": {}},
            "hash": "1764201600.abcdef12",
            "app_id": APP_ID,
            "app_installed_team_id": team(bot),
            "bot_id": BOT_ID,
        },
        "actions": [action],
    }


async def click_home(bot: Bot, action_id: str, user: str, **kw: Any) -> None:
    payload = home_action_payload(bot, action_id, user, **kw)
    status, _ = await bot.post(form_payload_body(payload), FORM)
    assert status == 200


async def submit_key(bot: Bot, key: str, user: str = ALICE) -> tuple[int, str]:
    payload = view_submission_payload(
        callback_id="set_key_modal",
        values={"key_block": {"key_input": plain_text_value(key)}},
        user_id=user,
        team_id=team(bot),
    )
    return await bot.post(form_payload_body(payload), FORM)


async def submit_allow(bot: Bot, users: list[str], user: str = ALICE) -> tuple[int, str]:
    payload = view_submission_payload(
        callback_id="allow_modal",
        values={"users_block": {"users_input": users_value(users)}},
        user_id=user,
        team_id=team(bot),
    )
    return await bot.post(form_payload_body(payload), FORM)


async def snapshot(bot: Bot) -> tuple[Workspace | None, list[str], list[dict[str, Any]]]:
    store = bot.runtime.store
    return (
        await store.workspaces.get(team(bot)),
        await store.workspaces.allow_list(team(bot)),
        await store.workspaces.admin_events(team(bot), limit=100),
    )


def audit_posts(bot: Bot) -> list[ApiCall]:
    return [c for c in bot.slack.calls_to("chat.postMessage") if c.args.get("channel") == AUDIT]


# --- what everyone sees ------------------------------------------------------------------


async def test_home_says_who_may_cancel_lists_recent_cancellations_and_hides_settings(
    bot: Bot,
) -> None:
    await bot.cancel(TRAINING)  # ALICE cancels one
    await bot.slack.wait_for("chat.postMessage", count=2)

    allowed = await open_home(bot, BOB)
    assert "You may cancel" in allowed
    assert TRAINING in allowed and f"<@{ALICE}>" in allowed and "cancel accepted" in allowed
    assert "Settings" not in allowed and "home_set_key" not in allowed

    refused = await open_home(bot, CAROL)
    assert "You may cancel" not in refused and "allow-list" in refused
    assert TRAINING in refused  # reading history is open to everyone in the workspace
    assert "Settings" not in refused and "home_set_key" not in refused

    admin = await open_home(bot, ALICE)
    assert "Settings (admins only)" in admin
    for action in ("home_set_key", "home_remove_key", "home_edit_allow", "home_rotate_webhook"):
        assert action in admin
    assert "MODELSLAB_API_KEY" in admin and ENV_KEY not in admin
    # The operator's CANCEL_ALLOWED_USERS are shown as always in force.
    assert "always in force" in admin and f"<@{BOB}>" in admin


async def test_home_before_any_cancellation_says_so(bot: Bot) -> None:
    home = await open_home(bot, BOB)
    assert "None yet" in home and "You may cancel" in home


# --- admin controls ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action_id", "extra"),
    [
        ("home_set_key", {}),
        ("home_remove_key", {}),
        ("home_edit_allow", {}),
        ("home_rotate_webhook", {}),
        ("home_audit_channel", {"selected_conversation": "C0EVIL001"}),
    ],
)
async def test_non_admin_clicking_an_admin_control_gets_a_notice_and_nothing_changes(
    bot: Bot, action_id: str, extra: dict[str, Any]
) -> None:
    await bot.runtime.deps.workspaces.set_key(team(bot), NEW_KEY, by=ALICE)
    before = await snapshot(bot)
    await click_home(bot, action_id, CAROL, **extra)
    [opened] = await bot.slack.wait_for("views.open")
    view = opened.args["view"]
    assert opened.args["trigger_id"].endswith(f".{action_id}.{CAROL}")
    assert view.get("callback_id") in (None, "") and "submit" not in view
    assert "Only workspace admins" in json.dumps(view, ensure_ascii=False)
    await asyncio.sleep(0.2)
    assert await snapshot(bot) == before
    assert audit_posts(bot) == [] and _publishes(bot, CAROL) == []


async def test_admin_clicking_set_key_gets_the_key_modal(bot: Bot) -> None:
    await click_home(bot, "home_set_key", ALICE)
    [opened] = await bot.slack.wait_for("views.open")
    view = opened.args["view"]
    assert view["callback_id"] == "set_key_modal"
    [block] = [b for b in view["blocks"] if b.get("block_id") == "key_block"]
    assert block["element"]["action_id"] == "key_input"


async def test_key_modal_refuses_an_invalid_key_with_modelslabs_reason(bot: Bot) -> None:
    status, body = await submit_key(bot, "not-a-valid-key")
    assert status == 200
    answer = json.loads(body)
    assert answer["response_action"] == "errors"
    assert "Invalid Api Key" in answer["errors"]["key_block"]
    assert "not-a-valid-key" not in body
    row, _, events = await snapshot(bot)
    assert row is None or (row.key_ciphertext is None and row.key_hint is None)
    assert [e for e in events if e["action"] == "set_key"] == []
    # The bot still cancels with the operator's key.
    assert await bot.runtime.deps.workspaces.key_for(team(bot)) == ENV_KEY


async def test_key_modal_stores_a_valid_key_encrypted_and_closes(
    bot: Bot, encryption_key: str
) -> None:
    status, body = await submit_key(bot, f"  {NEW_KEY} ")
    assert (status, body) == (200, "")
    row = await bot.runtime.store.workspaces.get(team(bot))
    assert row is not None and row.key_ciphertext and NEW_KEY not in row.key_ciphertext
    assert Fernet(encryption_key.encode()).decrypt(row.key_ciphertext.encode()).decode() == NEW_KEY
    assert row.key_hint == NEW_KEY[-4:] and row.key_set_by == ALICE
    # Home is republished for the admin: the hint, never the key.
    [published] = await bot.slack.wait_for("views.publish")
    shown = json.dumps(published.args["view"], ensure_ascii=False)
    assert f"ends …{NEW_KEY[-4:]}" in shown and NEW_KEY not in shown
    # From now on cancellations use the stored key.
    await bot.cancel(TRAINING)
    [call] = await bot.modelslab.wait_for_calls(1)
    assert call.key == NEW_KEY


async def test_non_admin_cannot_submit_the_admin_modals(bot: Bot) -> None:
    status, body = await submit_key(bot, NEW_KEY, user=CAROL)
    assert status == 200 and json.loads(body)["response_action"] == "errors"
    status, body = await submit_allow(bot, [CAROL, DAVE], user=CAROL)
    assert status == 200 and json.loads(body)["response_action"] == "errors"
    row, allowed, events = await snapshot(bot)
    assert (row is None or row.key_ciphertext is None) and allowed == [] and events == []


async def test_allow_modal_replaces_the_stored_list(bot: Bot) -> None:
    store, ws = bot.runtime.store, bot.runtime.deps.workspaces
    await ws.allow(team(bot), [DAVE], by=ALICE)
    await click_home(bot, "home_edit_allow", ALICE)
    [opened] = await bot.slack.wait_for("views.open")
    editor = opened.args["view"]
    assert editor["callback_id"] == "allow_modal"
    [users] = [b for b in editor["blocks"] if b.get("block_id") == "users_block"]
    assert users["element"]["initial_users"] == [DAVE]  # the operator's entries are not editable

    assert await submit_allow(bot, [CAROL]) == (200, "")

    async def replaced() -> bool:
        return await store.workspaces.allow_list(team(bot)) == [CAROL]

    await wait_until(replaced, timeout=5.0)
    assert list(await ws.entries(team(bot)) or ()) == [ALICE, BOB, CAROL]
    # CAROL may cancel now; DAVE may not any more.
    ack = await bot.cancel(TRAINING, user_id=CAROL, user_name="carol")
    assert "Cancelling training" in ack["text"], ack
    ack = await bot.command("otherRun1", user_id=DAVE, user_name="dave")
    assert "allow-list" in ack["text"], ack


async def test_every_admin_change_is_recorded_and_posted_to_the_audit_channel(bot: Bot) -> None:
    store, ws = bot.runtime.store, bot.runtime.deps.workspaces

    async def events() -> list[str]:
        return [
            e["action"] for e in reversed(await store.workspaces.admin_events(team(bot), limit=100))
        ]

    async def posted(n: int) -> list[ApiCall]:
        return await bot.slack.wait_for(
            "chat.postMessage", count=n, where=lambda c: c.args.get("channel") == AUDIT
        )

    await click_home(bot, "home_audit_channel", ALICE, selected_conversation=AUDIT)
    [post] = await posted(1)
    assert f"<@{ALICE}>" in post.args["text"] and AUDIT in post.args["text"]
    row = await store.workspaces.get(team(bot))
    assert row is not None and row.audit_channel == AUDIT

    assert await submit_key(bot, NEW_KEY) == (200, "")
    post = (await posted(2))[-1]
    assert NEW_KEY[-4:] in post.args["text"] and NEW_KEY not in post.args["text"]

    await ws.allow(team(bot), [DAVE], by=ALICE)  # what an earlier edit left
    assert await submit_allow(bot, [CAROL]) == (200, "")
    post = (await posted(3))[-1]
    assert f"<@{CAROL}>" in post.args["text"] and f"<@{DAVE}>" in post.args["text"]

    await click_home(bot, "home_rotate_webhook", ALICE)
    post = (await posted(4))[-1]
    assert "webhook" in post.args["text"]
    token = await ws.webhook_token(team(bot))
    assert token and token not in post.args["text"]

    await click_home(bot, "home_remove_key", ALICE)
    post = (await posted(5))[-1]
    assert "removed" in post.args["text"] and "key" in post.args["text"]

    async def all_recorded() -> bool:
        return len(await events()) >= 7

    await wait_until(all_recorded, timeout=5.0)
    assert await events() == [
        "set_audit_channel",
        "set_key",
        "allow",  # DAVE, from the terminal/API
        "allow",  # CAROL, from the modal
        "deny",  # DAVE, from the modal
        "rotate_webhook_token",
        "remove_key",
    ]
    recorded = json.dumps(await store.workspaces.admin_events(team(bot), limit=100))
    assert NEW_KEY not in recorded and token not in recorded
    assert all(c.token == bot.slack.bot_token for c in audit_posts(bot))
    assert len(audit_posts(bot)) == 5
    # The audit channel also gets refusals, with the workspace's own token.
    await bot.command("someRun01", user_id=DAVE, user_name="dave", channel_id=CHANNEL)
    refusal = (await posted(6))[-1]
    assert f"<@{DAVE}>" in refusal.args["text"] and "someRun01" in refusal.args["text"]
