"""`GET /audit` (design §3): JSON lines behind a bearer token, in pages; wrong or another
workspace's token → 401; no AUDIT_TOKEN → 404."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.model import AuditAction, AuditEntry, AuditRecord
from bot.service.audit import AuditTrail
from bot.service.workspaces import hash_token
from bot.store import Store
from bot.web.audit import add_audit_routes
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.harness import running_bot

AUDIT_TOKEN = "audit-token-Zq81mXc3Vb7nP2"
TEAM_A = "T0WEBAUD1"
TEAM_B = "T0WEBAUD2"


async def get(
    session: aiohttp.ClientSession, url: str, token: str | None, **query: str
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with session.get(f"{url}/audit", headers=headers, params=query) as resp:
        return resp.status, await resp.text()


def lines(body: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in body.splitlines()]


async def test_single_workspace_serves_its_log_with_audit_token_only(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> None:
    async with running_bot(slack, modelslab, sqlite_url, AUDIT_TOKEN=AUDIT_TOKEN) as bot:
        team = bot.runtime.workspace_id
        store = bot.runtime.store
        written = await store.audit.append(
            *(
                AuditEntry(team, "U0ALICE01", AuditAction.REQUEST, training_id=f"t{i}")
                for i in range(5)
            )
        )
        await store.audit.append(AuditEntry("T0ELSEWHERE", "U0X", AuditAction.REFUSAL))
        for token in (None, "", "wrong", AUDIT_TOKEN[:-1], AUDIT_TOKEN + "x"):
            status, body = await get(bot.session, bot.url, token)
            assert status == 401, (token, status)
            assert AUDIT_TOKEN not in body
        status, body = await get(bot.session, bot.url, AUDIT_TOKEN, team="T0ELSEWHERE")
        assert status == 401
        status, body = await get(bot.session, bot.url, AUDIT_TOKEN)
        assert status == 200
        assert lines(body) == [r.to_json() for r in written]  # this workspace's only
        status, body = await get(bot.session, bot.url, AUDIT_TOKEN, limit="2")
        assert [line["seq"] for line in lines(body)] == [1, 2]
        status, body = await get(bot.session, bot.url, AUDIT_TOKEN, after="2", limit="2")
        assert [line["seq"] for line in lines(body)] == [3, 4]
        status, body = await get(bot.session, bot.url, AUDIT_TOKEN, after="4", limit="2")
        assert [line["seq"] for line in lines(body)] == [5]
        status, body = await get(bot.session, bot.url, AUDIT_TOKEN, since="2999-01-01")
        assert (status, body) == (200, "")
        for bad in ({"since": "soon"}, {"after": "-1"}, {"limit": "0"}, {"limit": "x"}):
            status, body = await get(bot.session, bot.url, AUDIT_TOKEN, **bad)
            assert status == 400, (bad, status, body)


async def test_without_audit_token_the_route_is_not_there(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> None:
    async with running_bot(slack, modelslab, sqlite_url) as bot:
        for token in (None, "anything"):
            status, body = await get(bot.session, bot.url, token)
            assert status == 404 and "AUDIT_TOKEN" in body


@pytest.fixture
async def oauth_audit(store: Store) -> AsyncIterator[tuple[str, Store]]:
    """GET /audit as OAuth mode serves it: each workspace's token, stored hashed."""
    app = web.Application()
    add_audit_routes(app, trail=AuditTrail(store=store, per_workspace_tokens=True))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", store
    finally:
        await runner.cleanup()


async def test_oauth_each_token_reads_its_own_workspace_only(
    oauth_audit: tuple[str, Store], tmp_path: Path
) -> None:
    url, store = oauth_audit
    from tests.integration.test_audit import workspaces_service

    workspaces = workspaces_service(store, tmp_path)
    written: dict[str, list[AuditRecord]] = {}
    tokens = {}
    for team in (TEAM_A, TEAM_B):
        await store.workspaces.ensure(team, installed=True)
        tokens[team] = await workspaces.rotate_audit_token(team, by="U0ADMIN01")
        written[team] = await store.audit.append(AuditEntry(team, "U0ALICE01", AuditAction.KEY_SET))
    # Stored only as its hash.
    row = await store.workspaces.get(TEAM_A)
    assert row is not None and row.audit_token_hash == hash_token(tokens[TEAM_A])
    async with aiohttp.ClientSession() as session:
        status, body = await get(session, url, tokens[TEAM_A])
        assert status == 200
        assert [line["workspace"] for line in lines(body)] == [TEAM_A, TEAM_A]
        assert lines(body)[-1] == written[TEAM_A][0].to_json()
        # Workspace B's token never reads A's log.
        status, _ = await get(session, url, tokens[TEAM_B], team=TEAM_A)
        assert status == 401
        status, _ = await get(session, url, "not-a-token")
        assert status == 401
        # A rotated token stops working at once; an uninstalled workspace's token too.
        old = tokens[TEAM_A]
        tokens[TEAM_A] = await workspaces.rotate_audit_token(TEAM_A, by="U0ADMIN01")
        assert (await get(session, url, old))[0] == 401
        assert (await get(session, url, tokens[TEAM_A]))[0] == 200
        await store.workspaces.forget(TEAM_B)
        assert (await get(session, url, tokens[TEAM_B]))[0] == 401


async def test_an_oauth_admin_issues_the_token_in_app_home_and_it_reads_only_their_log(
    slack: FakeSlack, modelslab: FakeModelsLab, database_url: str, store: Store
) -> None:
    from cryptography.fernet import Fernet

    from tests.fakes.slack_requests import form_payload_body
    from tests.harness import install
    from tests.integration.listeners.test_home import FORM, home_action_payload
    from tests.system.test_oauth import ADMIN_A, ADMIN_B, TEAM_A, TEAM_B, TOKEN_A, TOKEN_B
    from tests.system.test_oauth import oauth_env as env_for_oauth

    slack.oauth_teams = {
        "code-a": {
            "team_id": TEAM_A,
            "team_name": "A",
            "bot_token": TOKEN_A,
            "authed_user": ADMIN_A,
        },
        "code-b": {
            "team_id": TEAM_B,
            "team_name": "B",
            "bot_token": TOKEN_B,
            "authed_user": ADMIN_B,
        },
    }
    slack.users = {
        ADMIN_A: {"is_admin": True, "team_id": TEAM_A},
        ADMIN_B: {"is_admin": True, "team_id": TEAM_B},
    }
    env = env_for_oauth(Fernet.generate_key().decode())
    async with running_bot(slack, modelslab, database_url, **env) as bot:
        await install(bot, "code-a")
        await install(bot, "code-b")

        async def issue(team: str, admin: str) -> str:
            payload = home_action_payload(bot, "home_rotate_audit_token", admin)
            payload["user"]["team_id"] = payload["team"]["id"] = team
            payload["view"]["team_id"] = payload["view"]["app_installed_team_id"] = team
            before = len(slack.calls_to("views.publish"))
            status, _ = await bot.post(form_payload_body(payload), FORM)
            assert status == 200
            [*_, published] = await slack.wait_for("views.publish", count=before + 1)
            view = json.dumps(published.args["view"])
            found = re.search(r"copy it now\): `([A-Za-z0-9_-]{30,})`", view)
            assert found is not None, view
            return found.group(1)

        token_a = await issue(TEAM_A, ADMIN_A)
        token_b = await issue(TEAM_B, ADMIN_B)
        status, body = await get(bot.session, bot.url, token_a)
        assert status == 200
        log = lines(body)
        assert {line["workspace"] for line in log} == {TEAM_A}
        assert [line["action"] for line in log] == ["installed", "audit_token_rotated"]
        assert log[0]["actor"] == ADMIN_A and log[1]["actor"] == ADMIN_A
        assert (await get(bot.session, bot.url, token_b, team=TEAM_A))[0] == 401
        assert (await get(bot.session, bot.url, token_a, team=TEAM_B))[0] == 401
        # Stored hashed only; the token is in no table.
        async with bot.runtime.store.engine.connect() as conn:
            for table in ("workspaces", "audit_log", "admin_events"):
                dump = str((await conn.exec_driver_sql(f"SELECT * FROM {table}")).all())  # noqa: S608
                assert token_a not in dump and token_b not in dump
