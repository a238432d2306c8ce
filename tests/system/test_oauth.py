"""Many workspaces: OAuth install, per-workspace keys and allow-lists, tokens encrypted, uninstall.

Everything goes through the bot's HTTP routes as a browser and Slack use them (install page,
OAuth redirect, signed commands, events and modal submissions), against the fake Slack and the
fake ModelsLab, on SQLite and (when TEST_DATABASE_URL is set) PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store import Installation
from sqlalchemy.ext.asyncio import create_async_engine

from bot.config import async_database_url
from bot.crypto import SecretBox
from bot.errors import ConfigError
from bot.slack.oauth import BOT_SCOPES, build_installation_store
from bot.store import Store
from tests import REPO
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import (
    FORM,
    JSON,
    block_actions_payload,
    event_body,
    form_payload_body,
    plain_text_value,
    slash_command_body,
    users_value,
    view_submission_payload,
)
from tests.harness import ALICE, Bot, card_button, install, running_bot, wait_until

CLIENT_ID, CLIENT_SECRET = "111.222", "sec"
TEAM_A, TEAM_B = "T0TEAMA01", "T0TEAMB02"
TOKEN_A, TOKEN_B = "xoxb-1111-team-a-Qm4tT0k3nA9", "xoxb-2222-team-b-Zp7wT0k3nB8"
TOKEN_A2 = "xoxb-1111-team-a-again-Hx5rT0k3nA6"
KEY_A, KEY_B = "key-a-Vq81xLm3", "key-b-Rt52nPz7"
ADMIN_A, ADMIN_B = "U0ADMINA1", "U0ADMINB1"
USER_A, USER_B = "U0USERA01", "U0USERB01"
CHANNEL_A, CHANNEL_B = "C0CHANA01", "C0CHANB01"
RUN_A, RUN_B = "runTeamA01", "runTeamB01"
USER_TOKEN = "xoxp-3333-user-b-Kj2uT0k3nU7"


def oauth_env(encryption_key: str | None) -> dict[str, str]:
    """running_bot overrides for OAuth mode ("" removes a variable).

    CANCEL_ALLOWED_USERS stays set (ALICE, BOB): in OAuth mode it must not apply to any
    installed workspace.
    """
    return {
        "SLACK_BOT_TOKEN": "",
        "MODELSLAB_API_KEY": "",
        "SLACK_CLIENT_ID": CLIENT_ID,
        "SLACK_CLIENT_SECRET": CLIENT_SECRET,
        "BOT_ENCRYPTION_KEY": encryption_key or "",
    }


@pytest.fixture
def encryption_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
async def oauth_bot(
    slack: FakeSlack,
    modelslab: FakeModelsLab,
    database_url: str,
    store: Store,  # an empty, migrated database of this kind
    encryption_key: str,
) -> AsyncIterator[Bot]:
    slack.oauth_teams = {
        "code-a": {
            "team_id": TEAM_A,
            "team_name": "Team A",
            "bot_token": TOKEN_A,
            "authed_user": ADMIN_A,
        },
        "code-b": {
            "team_id": TEAM_B,
            "team_name": "Team B",
            "bot_token": TOKEN_B,
            "authed_user": ADMIN_B,
        },
    }
    slack.users = {
        ADMIN_A: {"is_admin": True, "team_id": TEAM_A},
        ADMIN_B: {"is_admin": True, "team_id": TEAM_B},
    }
    modelslab.valid_keys |= {KEY_A, KEY_B}
    async with running_bot(slack, modelslab, database_url, **oauth_env(encryption_key)) as bot:
        yield bot


# --- helpers -----------------------------------------------------------------------------


async def command(
    bot: Bot, text: str, *, team: str, user: str, channel: str, name: str
) -> dict[str, Any]:
    """Send /cancel-training from a workspace; its response_url is response_url(name)."""
    body = slash_command_body(
        text=text,
        team_id=team,
        user_id=user,
        channel_id=channel,
        response_url=bot.slack.response_url(name),
    )
    status, answer = await bot.post(body, FORM)
    assert status == 200, (status, answer)
    return json.loads(answer) if answer else {}


async def cancel(
    bot: Bot, text: str, *, team: str, user: str, channel: str, name: str
) -> dict[str, Any]:
    """Type the id, then press the preview card's Cancel training; return what replaced the card."""
    card = await command(bot, text, team=team, user=user, channel=channel, name=name)
    button = card_button(card)
    assert button is not None, card
    payload = block_actions_payload(
        value=button["value"],
        action_id=button["action_id"],
        team_id=team,
        user_id=user,
        channel_id=channel,
        ephemeral=True,
        response_url=bot.slack.response_url(f"{name}-card"),
    )
    status, _ = await bot.post(form_payload_body(payload), FORM)
    assert status == 200
    return (await bot.slack.wait_for_response(f"{name}-card"))[0]


async def submit(bot: Bot, payload: dict[str, Any]) -> tuple[int, str]:
    """Post an interactivity payload (a modal submission)."""
    return await bot.post(form_payload_body(payload), FORM)


async def send_event(bot: Bot, event: dict[str, Any], *, team: str, event_id: str) -> None:
    status, answer = await bot.post(event_body(event, team_id=team, event_id=event_id), JSON)
    assert status == 200, (status, answer)


async def raw_rows(database_url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables that hold tokens and keys, read with a separate engine."""
    engine = create_async_engine(async_database_url(database_url))
    try:
        async with engine.connect() as conn:
            out: dict[str, list[dict[str, Any]]] = {}
            for table in ("slack_installations", "slack_bots", "workspaces"):
                rows = await conn.execute(sa.text(f"SELECT * FROM {table}"))  # noqa: S608
                out[table] = [dict(r._mapping) for r in rows]
            return out
    finally:
        await engine.dispose()


def rows_of(rows: list[dict[str, Any]], team: str) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("team_id") == team]


async def cancelled_and_reported(
    bot: Bot, training: str, channel: str, *, calls: int
) -> tuple[str | None, list[Any]]:
    """Wait for the ModelsLab call and the thread outcome; return the key used and the posts."""
    await bot.modelslab.wait_for_calls(calls)
    [call] = bot.modelslab.cancel_calls(training)
    posts = await bot.slack.wait_for(
        "chat.postMessage", count=2, where=lambda c: c.args.get("channel") == channel
    )
    return call.key, posts


# --- tests -------------------------------------------------------------------------------


async def test_two_workspaces_install_and_stay_apart(
    oauth_bot: Bot, database_url: str, encryption_key: str
) -> None:
    bot = oauth_bot
    query = await install(bot, "code-a")
    await install(bot, "code-b")

    # The install link asks for exactly the manifest's bot scopes, and no user scopes.
    assert sorted(query["scope"][0].split(",")) == sorted(BOT_SCOPES)
    assert query.get("user_scope", [""]) == [""]
    assert query["client_id"] == [CLIENT_ID]
    for team, name in ((TEAM_A, "Team A"), (TEAM_B, "Team B")):
        row = await bot.runtime.store.workspaces.get(team)
        assert row is not None and row.installed and row.name == name

    # A's admin sets A's key and allow-list in App Home's modals ...
    status, answer = await submit(
        bot,
        view_submission_payload(
            callback_id="set_key_modal",
            values={"key_block": {"key_input": plain_text_value(KEY_A)}},
            user_id=ADMIN_A,
            team_id=TEAM_A,
        ),
    )
    assert (status, answer) == (200, "")
    status, answer = await submit(
        bot,
        view_submission_payload(
            callback_id="allow_modal",
            values={"users_block": {"users_input": users_value([USER_A])}},
            user_id=ADMIN_A,
            team_id=TEAM_A,
        ),
    )
    assert (status, answer) == (200, "")
    # ... and B's operator does the same for B.
    workspaces = bot.runtime.deps.workspaces
    assert await workspaces.set_key(TEAM_B, KEY_B, by=ADMIN_B) == KEY_B[-4:]
    await workspaces.allow(TEAM_B, [USER_B], by=ADMIN_B)
    await wait_until(lambda: _allowed(bot, TEAM_A, USER_A), timeout=5.0)
    # Each admin change republished the admin's Home (with A's token; checked below).
    await bot.slack.wait_for("views.publish", count=2)

    # A command from A cancels with A's key and reports with A's bot token; same for B.
    ack = await cancel(bot, RUN_A, team=TEAM_A, user=USER_A, channel=CHANNEL_A, name="a1")
    assert "Cancelling training" in ack["text"], ack
    key, posts_a = await cancelled_and_reported(bot, RUN_A, CHANNEL_A, calls=1)
    assert key == KEY_A
    ack = await cancel(bot, RUN_B, team=TEAM_B, user=USER_B, channel=CHANNEL_B, name="b1")
    assert "Cancelling training" in ack["text"], ack
    key, posts_b = await cancelled_and_reported(bot, RUN_B, CHANNEL_B, calls=2)
    assert key == KEY_B
    assert [c.token for c in posts_a] == [TOKEN_A, TOKEN_A]
    assert [c.token for c in posts_b] == [TOKEN_B, TOKEN_B]
    assert "cancel accepted" in posts_a[1].args["text"] and RUN_A in posts_a[1].args["text"]
    assert "cancel accepted" in posts_b[1].args["text"] and RUN_B in posts_b[1].args["text"]
    assert [c.key for c in bot.modelslab.cancel_calls()] == [KEY_A, KEY_B]

    # Nothing of A is visible from B, and the reverse.
    assert (
        await command(bot, "history", team=TEAM_B, user=USER_B, channel=CHANNEL_B, name="h-b") == {}
    )
    [history_b] = await bot.slack.wait_for_response("h-b")
    assert RUN_B in history_b["text"] and RUN_A not in history_b["text"]
    assert (
        await command(bot, "history", team=TEAM_A, user=USER_A, channel=CHANNEL_A, name="h-a") == {}
    )
    [history_a] = await bot.slack.wait_for_response("h-a")
    assert RUN_A in history_a["text"] and RUN_B not in history_a["text"]
    # A's allowed user is refused in B; the operator's CANCEL_ALLOWED_USERS count in neither.
    refused = await command(bot, "runX", team=TEAM_B, user=USER_A, channel=CHANNEL_B, name="x1")
    assert refused["response_type"] == "ephemeral" and "allow-list" in refused["text"], refused
    refused = await command(bot, "runY", team=TEAM_A, user=ALICE, channel=CHANNEL_A, name="x2")
    assert "allow-list" in refused["text"], refused
    assert len(bot.modelslab.cancel_calls()) == 2

    # App Home is per workspace too: A's admin sees A's cancellations and A's key hint only.
    home_a = await open_home(bot, ADMIN_A, TEAM_A)
    assert RUN_A in home_a and RUN_B not in home_a and "Settings (admins only)" in home_a
    assert f"ends …{KEY_A[-4:]}" in home_a and KEY_A not in home_a and KEY_B[-4:] not in home_a
    home_b = await open_home(bot, USER_B, TEAM_B)
    assert "You may cancel" in home_b and RUN_B in home_b and RUN_A not in home_b
    assert "Settings" not in home_b
    # A's admin is no admin in B.
    assert "Settings" not in await open_home(bot, ADMIN_A, TEAM_B)
    # (the modals above republished A's admin's Home too, with A's token)
    publishes = bot.slack.calls_to("views.publish")
    assert [c.token for c in publishes[-3:]] == [TOKEN_A, TOKEN_B, TOKEN_B]
    assert {c.token for c in publishes[:-3]} == {TOKEN_A}

    # At rest, tokens and keys are ciphertexts that decrypt to them, never the plain values.
    rows = await raw_rows(database_url)
    dump = json.dumps(rows, default=str)
    for secret in (TOKEN_A, TOKEN_B, KEY_A, KEY_B, CLIENT_SECRET + '"'):
        assert secret not in dump
    fernet = Fernet(encryption_key.encode())
    for team, token in ((TEAM_A, TOKEN_A), (TEAM_B, TOKEN_B)):
        [bot_row] = rows_of(rows["slack_bots"], team)
        assert fernet.decrypt(bot_row["bot_token"].encode()).decode() == token
        [installation] = rows_of(rows["slack_installations"], team)
        assert fernet.decrypt(installation["bot_token"].encode()).decode() == token
    keys = {r["workspace_id"]: r for r in rows["workspaces"]}
    assert fernet.decrypt(keys[TEAM_A]["key_ciphertext"].encode()).decode() == KEY_A
    assert keys[TEAM_A]["key_hint"] == KEY_A[-4:] and keys[TEAM_B]["key_hint"] == KEY_B[-4:]


async def open_home(bot: Bot, user: str, team: str) -> str:
    """Open the Home tab as `user` of `team`; return the published view as text."""
    before = len(bot.slack.calls_to("views.publish"))
    event = {"type": "app_home_opened", "user": user, "channel": "D0HOME001", "tab": "home"}
    await send_event(bot, event, team=team, event_id=f"Ev0HOME{before:04d}")
    published = await bot.slack.wait_for("views.publish", count=before + 1)
    return json.dumps(published[-1].args["view"], ensure_ascii=False)


async def _allowed(bot: Bot, team: str, user: str) -> bool:
    return user in await bot.runtime.store.workspaces.allow_list(team)


async def test_uninstall_forgets_the_workspace_but_keeps_its_history(
    oauth_bot: Bot, database_url: str
) -> None:
    bot = oauth_bot
    store, workspaces = bot.runtime.store, bot.runtime.deps.workspaces
    await install(bot, "code-a")
    await install(bot, "code-b")
    for team, key, user in ((TEAM_A, KEY_A, USER_A), (TEAM_B, KEY_B, USER_B)):
        await workspaces.set_key(team, key, by="cli:ops")
        await workspaces.allow(team, [user], by="cli:ops")
    old_webhook_token = await workspaces.rotate_webhook_token(TEAM_A, by="cli:ops")
    await store.workspaces.update(TEAM_A, audit_channel="C0AUDITA1")
    await cancel(bot, RUN_A, team=TEAM_A, user=USER_A, channel=CHANNEL_A, name="a1")
    await cancelled_and_reported(bot, RUN_A, CHANNEL_A, calls=1)

    await send_event(bot, {"type": "app_uninstalled"}, team=TEAM_A, event_id="Ev0UNINST1")

    async def a_forgotten() -> bool:
        rows = await raw_rows(database_url)
        return not rows_of(rows["slack_installations"], TEAM_A) and not rows_of(
            rows["slack_bots"], TEAM_A
        )

    await wait_until(a_forgotten, timeout=5.0)
    await wait_until(lambda: _uninstalled(store, TEAM_A), timeout=5.0)
    row = await store.workspaces.get(TEAM_A)
    assert row is not None
    assert (row.key_ciphertext, row.key_hint, row.audit_channel) == (None, None, None)
    assert (row.webhook_token_hash, row.webhook_token_ciphertext) == (None, None)
    assert await store.workspaces.allow_list(TEAM_A) == []
    assert await workspaces.key_for(TEAM_A) is None
    assert await workspaces.webhook_token(TEAM_A) is None
    from bot.service.workspaces import hash_token

    assert await store.workspaces.by_webhook_hash(hash_token(old_webhook_token)) is None
    # The cancellation history stays as the audit record.
    assert [c.training_id for c in await store.cancellations.recent(TEAM_A)] == [RUN_A]

    # A later command from A does nothing and says the app is not installed.
    answer = await command(
        bot, "runTeamA02", team=TEAM_A, user=USER_A, channel=CHANNEL_A, name="a2"
    )
    told = answer.get("text") or (await bot.slack.wait_for_response("a2"))[0]["text"]
    assert "install" in told.lower(), told
    await asyncio.sleep(0.2)
    assert len(bot.modelslab.cancel_calls()) == 1

    # B is untouched: installed, its key, its list, its token.
    rows = await raw_rows(database_url)
    assert rows_of(rows["slack_bots"], TEAM_B) and rows_of(rows["slack_installations"], TEAM_B)
    assert await store.workspaces.allow_list(TEAM_B) == [USER_B]
    ack = await cancel(bot, RUN_B, team=TEAM_B, user=USER_B, channel=CHANNEL_B, name="b1")
    assert "Cancelling training" in ack["text"], ack
    key, posts = await cancelled_and_reported(bot, RUN_B, CHANNEL_B, calls=2)
    assert key == KEY_B and {c.token for c in posts} == {TOKEN_B}

    # Reinstalling A starts from scratch: a new token, and no key or allow-list of old.
    bot.slack.oauth_teams["code-a2"] = {
        "team_id": TEAM_A,
        "team_name": "Team A",
        "bot_token": TOKEN_A2,
        "authed_user": ADMIN_A,
    }
    await install(bot, "code-a2")
    row = await store.workspaces.get(TEAM_A)
    assert row is not None and row.installed and row.key_ciphertext is None
    refused = await command(
        bot, "runTeamA03", team=TEAM_A, user=USER_A, channel=CHANNEL_A, name="a3"
    )
    assert "allow-list is empty" in refused["text"], refused
    await workspaces.set_key(TEAM_A, KEY_A, by="cli:ops")
    await workspaces.allow(TEAM_A, [USER_A], by="cli:ops")
    await cancel(bot, "runTeamA04", team=TEAM_A, user=USER_A, channel=CHANNEL_A, name="a4")
    key, _ = await cancelled_and_reported(bot, "runTeamA04", CHANNEL_A, calls=3)
    assert key == KEY_A
    reports = await bot.slack.wait_for(
        "chat.postMessage",
        where=lambda c: c.args.get("channel") == CHANNEL_A and "runTeamA04" in c.args["text"],
        count=2,
    )
    assert {c.token for c in reports} == {TOKEN_A2}


async def _uninstalled(store: Store, team: str) -> bool:
    row = await store.workspaces.get(team)
    return row is not None and not row.installed


async def test_revoked_user_tokens_delete_only_those(
    oauth_bot: Bot, database_url: str, encryption_key: str
) -> None:
    bot = oauth_bot
    await install(bot, "code-b")
    await bot.runtime.deps.workspaces.set_key(TEAM_B, KEY_B, by="cli:ops")
    await bot.runtime.deps.workspaces.allow(TEAM_B, [USER_B], by="cli:ops")
    # A user of B also granted the app a user token (a user-scope install).
    installations = build_installation_store(
        client_id=CLIENT_ID, store=bot.runtime.store, box=SecretBox([encryption_key])
    )
    await installations.async_save(
        Installation(
            app_id="A0APP0001",
            team_id=TEAM_B,
            team_name="Team B",
            user_id=USER_B,
            user_token=USER_TOKEN,
            user_scopes=["search:read"],
            installed_at=time.time() + 1,
        )
    )
    before = await raw_rows(database_url)
    assert USER_TOKEN not in json.dumps(before, default=str)
    assert [r["user_id"] for r in rows_of(before["slack_installations"], TEAM_B)].count(USER_B) == 1

    await send_event(
        bot,
        {"type": "tokens_revoked", "tokens": {"oauth": [USER_B], "bot": []}},
        team=TEAM_B,
        event_id="Ev0REVOKE1",
    )

    async def user_row_gone() -> bool:
        rows = await raw_rows(database_url)
        return USER_B not in [r["user_id"] for r in rows_of(rows["slack_installations"], TEAM_B)]

    await wait_until(user_row_gone, timeout=5.0)
    after = await raw_rows(database_url)
    assert [r["user_id"] for r in rows_of(after["slack_installations"], TEAM_B)] == [ADMIN_B]
    assert len(rows_of(after["slack_bots"], TEAM_B)) == len(rows_of(before["slack_bots"], TEAM_B))
    row = await bot.runtime.store.workspaces.get(TEAM_B)
    assert row is not None and row.installed and row.key_ciphertext
    assert await bot.runtime.store.workspaces.allow_list(TEAM_B) == [USER_B]
    ack = await cancel(bot, RUN_B, team=TEAM_B, user=USER_B, channel=CHANNEL_B, name="b1")
    assert "Cancelling training" in ack["text"], ack
    key, posts = await cancelled_and_reported(bot, RUN_B, CHANNEL_B, calls=1)
    assert key == KEY_B and {c.token for c in posts} == {TOKEN_B}

    # A revoked bot token is an uninstall.
    await send_event(
        bot,
        {"type": "tokens_revoked", "tokens": {"bot": ["U0BOTUSER"]}},
        team=TEAM_B,
        event_id="Ev0REVOKE2",
    )

    async def b_forgotten() -> bool:
        rows = await raw_rows(database_url)
        return not rows_of(rows["slack_bots"], TEAM_B)

    await wait_until(b_forgotten, timeout=5.0)
    await wait_until(lambda: _uninstalled(bot.runtime.store, TEAM_B), timeout=5.0)
    assert await bot.runtime.deps.workspaces.key_for(TEAM_B) is None
    assert await bot.runtime.store.workspaces.allow_list(TEAM_B) == []


async def test_oauth_mode_without_an_encryption_key_refuses_to_start(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as raised:
        async with running_bot(slack, modelslab, sqlite_url, **oauth_env(None)):
            pytest.fail("the bot started without BOT_ENCRYPTION_KEY in OAuth mode")
    assert any("BOT_ENCRYPTION_KEY" in p for p in raised.value.problems)

    # The operator running the server sees one readable message and exit code 2.
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env = {
        **keep,
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": sqlite_url,
        "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99aaabbb85a5",
        "SLACK_CLIENT_ID": CLIENT_ID,
        "SLACK_CLIENT_SECRET": CLIENT_SECRET,
        "SLACK_API_URL": slack.base_url,
        "MODELSLAB_API_URL": modelslab.base_url,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2, (out, err)
    assert b"BOT_ENCRYPTION_KEY" in err and b"Traceback" not in err
    assert slack.calls_to("oauth.v2.access") == []


async def test_a_redirect_without_the_browsers_state_installs_nothing(oauth_bot: Bot) -> None:
    bot = oauth_bot
    async with bot.session.get(f"{bot.url}/slack/install") as resp:
        page = await resp.text()
    state = re.search(r"state=([0-9a-f-]{36})", page)
    assert state is not None, page
    # Right state, no cookie (another browser): refused, and the code is never redeemed.
    async with bot.session.get(
        f"{bot.url}/slack/oauth_redirect", params={"code": "code-a", "state": state.group(1)}
    ) as resp:
        assert 400 <= resp.status < 500 and "Thank you" not in await resp.text()
    # A made-up state with a made-up cookie: refused too.
    async with bot.session.get(
        f"{bot.url}/slack/oauth_redirect",
        params={"code": "code-a", "state": "forged"},
        headers={"Cookie": "slack-app-oauth-state=forged"},
    ) as resp:
        assert 400 <= resp.status < 500 and "Thank you" not in await resp.text()
    assert bot.slack.calls_to("oauth.v2.access") == []
    assert await bot.runtime.store.workspaces.get(TEAM_A) is None


async def test_single_workspace_mode_has_no_install_routes(bot: Bot) -> None:
    for path in ("/slack/install", "/slack/oauth_redirect?code=code-a&state=x"):
        async with bot.session.get(f"{bot.url}{path}") as resp:
            assert resp.status == 404, path


async def test_bolt_uses_our_database_oauth_flow_even_with_the_variables_in_the_environment(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bolt builds its own file-based OAuth flow when it sees SLACK_CLIENT_ID/SECRET in os.environ."""
    from bot.slack.oauth import EncryptedInstallationStore

    oauth_env = {"SLACK_CLIENT_ID": "111.222", "SLACK_CLIENT_SECRET": "sec"}
    for name, value in oauth_env.items():
        monkeypatch.setenv(name, value)
    key = Fernet.generate_key().decode()
    async with running_bot(
        slack,
        modelslab,
        sqlite_url,
        SLACK_BOT_TOKEN="",
        MODELSLAB_API_KEY="",
        BOT_ENCRYPTION_KEY=key,
        **oauth_env,
    ) as bot:
        flow = bot.runtime.bolt_app.oauth_flow
        assert flow is not None
        assert isinstance(flow.settings.installation_store, EncryptedInstallationStore)


async def test_a_real_oauth_process_installs_into_its_database_not_home_files(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    """`python -m bot serve` in OAuth mode, end to end: install, stored in the bot's database."""
    from tests.harness import bot_env, free_port
    from tests.processes import bot_process

    home = tmp_path / "home"
    home.mkdir()
    env = bot_env(
        slack,
        modelslab,
        sqlite_url,
        SLACK_BOT_TOKEN="",
        MODELSLAB_API_KEY="",
        SLACK_CLIENT_ID="111.222",
        SLACK_CLIENT_SECRET="sec",
        BOT_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        HOME=str(home),
    )
    slack.oauth_teams = {
        "code-p": {"team_id": "T0PROC001", "team_name": "Proc", "bot_token": "xoxb-proc"}
    }
    port = free_port()
    async with bot_process(
        env, "serve", "--host", "127.0.0.1", "--port", str(port), cwd=tmp_path, port=port
    ) as proc:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            async with session.get(f"{proc.url}/slack/install") as resp:
                page = await resp.text()
                cookie = resp.headers["Set-Cookie"].split(";")[0]
            state = re.search(r"state=([\w-]+)", page).group(1)  # type: ignore[union-attr]
            async with session.get(
                f"{proc.url}/slack/oauth_redirect?code=code-p&state={state}",
                headers={"Cookie": cookie},
            ) as resp:
                assert resp.status == 200, await resp.text()
    assert "oauth mode" in proc.err.lower()
    assert list(home.iterdir()) == [], "Bolt wrote OAuth files under $HOME"
    store = Store.from_url(async_database_url(sqlite_url))
    try:
        [(workspace, _)] = await store.workspaces.all()
    finally:
        await store.close()
    assert workspace.workspace_id == "T0PROC001" and workspace.installed
