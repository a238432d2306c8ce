"""Per-workspace settings (bot.workspaces.Workspaces) on SQLite and PostgreSQL, against the fakes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from cryptography.fernet import Fernet
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import Mode, Purpose, Settings, load_settings
from bot.crypto import SecretBox
from bot.errors import BotError, ConfigError, InvalidKey, SecretStorageDisabled
from bot.modelslab import ModelsLabClient
from bot.service.workspaces import TEAM_ID_META, Workspaces, hash_token
from bot.slack.identity import BotTokenIdentity, user_info
from bot.slack.messages.home import key_wording
from bot.slack.oauth import build_installation_store
from bot.store import Store
from bot.store.schema import bot_meta
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack

TEAM = "T0WORKSP1"
OTHER = "T0OTHER01"
ALICE, BOB, DAVE = "U0ALICE01", "U0BOB0001", "U0DAVE001"
GROUP = "S0GROUP01"
KEY = "ml-SECRET-value-9f3a"
BOT_TOKEN = "xoxb-9999-rotation-Tk8sT0k3n"


def settings_for(modelslab: FakeModelsLab, database_url: str, **env: str) -> Settings:
    base = {"DATABASE_URL": database_url, "MODELSLAB_API_URL": modelslab.base_url}
    base.update(env)
    return load_settings(Purpose.ADMIN, {k: v for k, v in base.items() if v != ""})


@pytest.fixture
async def client(modelslab: FakeModelsLab) -> AsyncIterator[ModelsLabClient]:
    async with ModelsLabClient(base_url=modelslab.base_url) as c:
        yield c


def workspaces(
    store: Store,
    settings: Settings,
    client: ModelsLabClient | None,
    *,
    keys: tuple[str, ...] | None = None,
    single_id: str | None = None,
) -> Workspaces:
    box = SecretBox(settings.encryption_keys if keys is None else keys)
    return Workspaces(
        store=store,
        box=box,
        settings=settings,
        modelslab=client,
        single_workspace_id=single_id,
        key_wording=key_wording,
        user_info=user_info,
    )


async def test_rotation_old_key_still_reads_and_rotate_rewrites_everything(
    store: Store, modelslab: FakeModelsLab, database_url: str, client: ModelsLabClient
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    modelslab.valid_keys.add(KEY)
    before = settings_for(modelslab, database_url, BOT_ENCRYPTION_KEY=old)
    ws_old = workspaces(store, before, client)
    await ws_old.set_key(TEAM, KEY, by=ALICE)
    webhook = await ws_old.rotate_webhook_token(TEAM, by=ALICE)
    response_url = "https://hooks.slack.com/commands/T0WORKSP1/123/SecretPath"
    claim = await store.cancellations.enqueue(
        workspace_id=TEAM,
        training_id="run1",
        requested_by=ALICE,
        origin="command",
        response_url=SecretBox(before.encryption_keys).encrypt(response_url),
    )
    installs_old = build_installation_store(
        client_id="111.222", store=store, box=SecretBox(before.encryption_keys)
    )
    await installs_old.async_save(
        Installation(
            app_id="A0APP0001",
            team_id=TEAM,
            user_id=ALICE,
            bot_token=BOT_TOKEN,
            bot_id="B0BOT0001",
            bot_user_id="U0BOTUSER",
            installed_at=time.time(),
        )
    )

    # The operator adds a new key in front: everything written with the old one still reads.
    during = settings_for(modelslab, database_url, BOT_ENCRYPTION_KEY=f"{new},{old}")
    assert during.encryption_keys == (new, old)
    ws_both = workspaces(store, during, client)
    assert await ws_both.key_for(TEAM) == KEY
    assert await ws_both.webhook_token(TEAM) == webhook
    installs_both = build_installation_store(
        client_id="111.222", store=store, box=SecretBox(during.encryption_keys)
    )
    found = await installs_both.async_find_bot(enterprise_id=None, team_id=TEAM)
    assert found is not None and found.bot_token == BOT_TOKEN

    # rotate-keys re-encrypts every stored secret with the newest key ...
    rotated = await store.workspaces.rotate_ciphertexts(SecretBox(during.encryption_keys).rotate)
    # the key, the webhook token, the response_url, the installation's and the bot's token
    assert rotated >= 5

    # ... so that the old key can be removed.
    after = settings_for(modelslab, database_url, BOT_ENCRYPTION_KEY=new)
    ws_new = workspaces(store, after, client)
    assert await ws_new.key_for(TEAM) == KEY
    assert await ws_new.webhook_token(TEAM) == webhook
    installs_new = build_installation_store(
        client_id="111.222", store=store, box=SecretBox(after.encryption_keys)
    )
    found = await installs_new.async_find_bot(enterprise_id=None, team_id=TEAM)
    assert found is not None and found.bot_token == BOT_TOKEN
    installation = await installs_new.async_find_installation(enterprise_id=None, team_id=TEAM)
    assert installation is not None and installation.bot_token == BOT_TOKEN
    row = await store.cancellations.get(claim.cancellation.id)
    assert row is not None and row.response_url
    assert SecretBox(after.encryption_keys).decrypt(row.response_url) == response_url
    # Nothing is left that only the old key can read.
    with pytest.raises(BotError):
        await workspaces(store, before, client).key_for(TEAM)


async def test_set_key_refuses_an_invalid_key_with_modelslabs_reason_and_stores_nothing(
    store: Store, modelslab: FakeModelsLab, database_url: str, client: ModelsLabClient
) -> None:
    settings = settings_for(
        modelslab, database_url, BOT_ENCRYPTION_KEY=Fernet.generate_key().decode()
    )
    ws = workspaces(store, settings, client)
    with pytest.raises(InvalidKey) as refused:
        await ws.set_key(TEAM, "wrong-key-123", by=ALICE)
    assert "Invalid Api Key" in str(refused.value) and "wrong-key-123" not in str(refused.value)
    assert [c.path for c in modelslab.calls] == ["/api/v3/finetune_list"]
    assert modelslab.calls[0].key == "wrong-key-123"
    assert modelslab.cancel_calls() == []
    # Not a key at all: refused without asking ModelsLab.
    with pytest.raises(InvalidKey):
        await ws.set_key(TEAM, "two words", by=ALICE)
    with pytest.raises(InvalidKey):
        await ws.set_key(TEAM, "   ", by=ALICE)
    assert len(modelslab.calls) == 1
    row = await store.workspaces.get(TEAM)
    assert row is None or (row.key_ciphertext is None and row.key_hint is None)
    assert await store.workspaces.admin_events(TEAM) == []
    assert await ws.key_for(TEAM) is None


async def test_set_key_when_modelslab_cannot_be_reached_stores_nothing(
    store: Store, modelslab: FakeModelsLab, database_url: str
) -> None:
    settings = settings_for(
        modelslab, database_url, BOT_ENCRYPTION_KEY=Fernet.generate_key().decode()
    )
    async with ModelsLabClient(base_url="http://127.0.0.1:1/api/v3", budget=3.0) as down:
        ws = workspaces(store, settings, down)
        with pytest.raises(InvalidKey) as refused:
            await ws.set_key(TEAM, KEY, by=ALICE)
    assert "try again" in str(refused.value) and KEY not in str(refused.value)
    row = await store.workspaces.get(TEAM)
    assert row is None or row.key_ciphertext is None


async def test_set_key_without_an_encryption_key_is_refused(
    store: Store, modelslab: FakeModelsLab, database_url: str, client: ModelsLabClient
) -> None:
    settings = settings_for(modelslab, database_url, MODELSLAB_API_KEY="good-key")
    ws = workspaces(store, settings, client)
    with pytest.raises(SecretStorageDisabled) as refused:
        await ws.set_key(TEAM, "good-key", by=ALICE)
    assert "BOT_ENCRYPTION_KEY" in str(refused.value)
    assert modelslab.calls == []  # refused before the key went anywhere
    row = await store.workspaces.get(TEAM)
    assert row is None or row.key_ciphertext is None
    assert await store.workspaces.admin_events(TEAM) == []


async def test_describe_key_shows_only_the_last_four_characters(
    store: Store, modelslab: FakeModelsLab, database_url: str, client: ModelsLabClient
) -> None:
    modelslab.valid_keys.add(KEY)
    settings = settings_for(
        modelslab,
        database_url,
        BOT_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        MODELSLAB_API_KEY="env-key-Zz11",
    )
    ws = workspaces(store, settings, client, single_id=TEAM)
    described = await ws.describe_key(TEAM)
    assert (
        "MODELSLAB_API_KEY" in described and "env-key" not in described and "Zz11" not in described
    )
    assert await ws.describe_key(OTHER) == "not set"

    assert await ws.set_key(TEAM, KEY, by=ALICE) == "9f3a"
    described = await ws.describe_key(TEAM)
    assert described.endswith("ends …9f3a") and f"<@{ALICE}>" in described
    assert "SECRET" not in described and "value" not in described
    row = await store.workspaces.get(TEAM)
    assert row is not None and row.key_hint == "9f3a" and KEY not in (row.key_ciphertext or "")
    await ws.set_key(TEAM, KEY, by="cli:root")
    described = await ws.describe_key(TEAM)
    assert "cli:" not in described and "ends …9f3a" in described
    events = await store.workspaces.admin_events(TEAM)
    assert [e["action"] for e in events] == ["set_key", "set_key"]
    assert all(KEY not in (e["detail"] or "") for e in events)


async def test_single_workspace_entries_are_the_operators_plus_the_stored_ones(
    store: Store, modelslab: FakeModelsLab, database_url: str
) -> None:
    settings = settings_for(modelslab, database_url, CANCEL_ALLOWED_USERS=f"{ALICE},{GROUP}")
    assert settings.mode is Mode.SINGLE
    ws = workspaces(store, settings, None, single_id=TEAM)
    assert ws.fixed_entries(TEAM) == (ALICE, GROUP)
    assert list(await ws.entries(TEAM) or ()) == [ALICE, GROUP]
    assert await ws.allow(TEAM, [DAVE, ALICE], by=BOB) == [DAVE, ALICE]
    entries = list(await ws.entries(TEAM) or ())
    assert set(entries) == {ALICE, GROUP, DAVE} and entries[:2] == [ALICE, GROUP]
    # Removing an operator entry in the app cannot take it out of force.
    assert await ws.deny(TEAM, [ALICE, DAVE], by=BOB) == [ALICE, DAVE]
    assert await ws.deny(TEAM, [ALICE], by=BOB) == []
    assert list(await ws.entries(TEAM) or ()) == [ALICE, GROUP]
    # Another workspace is not served by a single-workspace deployment.
    assert await ws.entries(OTHER) is None and ws.fixed_entries(OTHER) == ()
    actions = [e["action"] for e in reversed(await store.workspaces.admin_events(TEAM))]
    assert actions == ["allow", "deny"]


async def test_allowing_someone_already_listed_changes_nothing(
    store: Store, modelslab: FakeModelsLab, database_url: str, request: pytest.FixtureRequest
) -> None:
    ws = workspaces(store, settings_for(modelslab, database_url), None, single_id=TEAM)
    assert await ws.allow(TEAM, [DAVE], by=BOB) == [DAVE]
    assert await ws.allow(TEAM, [DAVE, GROUP], by=BOB) == [GROUP]
    assert await ws.allow(TEAM, [DAVE], by=BOB) == []
    assert await store.workspaces.allow_list(TEAM) == [DAVE, GROUP]
    events = list(reversed(await store.workspaces.admin_events(TEAM)))
    assert [(e["action"], e["detail"]) for e in events] == [("allow", DAVE), ("allow", GROUP)]


async def test_oauth_entries_are_the_workspaces_own_and_only_once_installed(
    store: Store, modelslab: FakeModelsLab, database_url: str
) -> None:
    settings = settings_for(
        modelslab,
        database_url,
        SLACK_CLIENT_ID="111.222",
        SLACK_CLIENT_SECRET="sec",
        BOT_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        CANCEL_ALLOWED_USERS=ALICE,
    )
    assert settings.mode is Mode.OAUTH
    ws = workspaces(store, settings, None)
    await ws.allow(TEAM, [DAVE], by="cli:ops")  # possible before the workspace installs
    assert await ws.entries(TEAM) is None
    await store.workspaces.ensure(TEAM, installed=True)
    assert list(await ws.entries(TEAM) or ()) == [DAVE]  # CANCEL_ALLOWED_USERS not applied
    await store.workspaces.ensure(OTHER, installed=True)
    assert list(await ws.entries(OTHER) or ()) == []


async def test_the_environment_is_imported_once_into_the_existing_workspace(
    store: Store, modelslab: FakeModelsLab, database_url: str
) -> None:
    await store.meta.set(TEAM_ID_META, TEAM)  # it ran in single-workspace mode before
    settings = settings_for(
        modelslab,
        database_url,
        SLACK_CLIENT_ID="111.222",
        SLACK_CLIENT_SECRET="sec",
        BOT_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        MODELSLAB_API_KEY="env-key-Zz11",
        CANCEL_ALLOWED_USERS=f"{ALICE},{BOB}",
    )
    ws = workspaces(store, settings, None)
    await ws.import_environment()
    assert await ws.key_for(TEAM) == "env-key-Zz11"
    row = await store.workspaces.get(TEAM)
    assert (
        row is not None and row.key_hint == "Zz11" and "env-key" not in (row.key_ciphertext or "")
    )
    assert await store.workspaces.allow_list(TEAM) == [ALICE, BOB]
    assert await ws.key_for(OTHER) is None and await store.workspaces.allow_list(OTHER) == []
    # Once: an admin's later change is not undone by the next start.
    await ws.deny(TEAM, [BOB], by=ALICE)
    await ws.import_environment()
    assert await store.workspaces.allow_list(TEAM) == [ALICE]


async def test_webhook_token_rotation_changes_the_lookup(
    store: Store, modelslab: FakeModelsLab, database_url: str
) -> None:
    settings = settings_for(
        modelslab, database_url, BOT_ENCRYPTION_KEY=Fernet.generate_key().decode()
    )
    ws = workspaces(store, settings, None)
    first = await ws.rotate_webhook_token(TEAM, by=ALICE)
    found = await store.workspaces.by_webhook_hash(hash_token(first))
    assert found is not None and found.workspace_id == TEAM
    second = await ws.rotate_webhook_token(TEAM, by=ALICE)
    assert second != first and len(second) >= 24
    assert await store.workspaces.by_webhook_hash(hash_token(first)) is None
    found = await store.workspaces.by_webhook_hash(hash_token(second))
    assert found is not None and found.workspace_id == TEAM
    assert await ws.webhook_token(TEAM) == second
    row = await store.workspaces.get(TEAM)
    assert row is not None and second not in (row.webhook_token_ciphertext or "")
    assert row.webhook_token_hash == hash_token(second)
    # Each workspace has its own token.
    other = await ws.rotate_webhook_token(OTHER, by=BOB)
    found = await store.workspaces.by_webhook_hash(hash_token(other))
    assert found is not None and found.workspace_id == OTHER
    assert [e["action"] for e in await store.workspaces.admin_events(TEAM)] == [
        "rotate_webhook_token"
    ] * 2


async def test_webhook_token_needs_an_encryption_key(
    store: Store, modelslab: FakeModelsLab, database_url: str
) -> None:
    ws = workspaces(store, settings_for(modelslab, database_url), None)
    with pytest.raises(SecretStorageDisabled):
        await ws.rotate_webhook_token(TEAM, by=ALICE)
    row = await store.workspaces.get(TEAM)
    assert row is None or row.webhook_token_hash is None


async def test_is_admin_follows_users_info_and_bot_admins(
    store: Store, modelslab: FakeModelsLab, database_url: str, slack: FakeSlack
) -> None:
    slack.users = {
        ALICE: {"is_admin": True},
        BOB: {"is_owner": True},
        "U0FOREIGN": {"is_admin": True, "team_id": "T0ELSEWHE"},
    }
    settings = settings_for(modelslab, database_url, BOT_ADMINS="U0OPERATR")
    ws = workspaces(store, settings, None)
    team = slack.team_id
    web = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    assert await ws.is_admin(team, "U0OPERATR", web)
    assert slack.calls_to("users.info") == []  # BOT_ADMINS needs no lookup
    assert await ws.is_admin(team, ALICE, web)
    assert await ws.is_admin(team, BOB, web)
    assert not await ws.is_admin(team, DAVE, web)
    # An admin of another workspace is no admin here.
    assert not await ws.is_admin(team, "U0FOREIGN", web)
    # Slack refusing the lookup fails closed.
    broken = AsyncWebClient(token="xoxb-revoked", base_url=slack.base_url)
    assert not await ws.is_admin(team, "U0NEWUSER", broken)


async def test_identify_asks_slack_at_a_start_and_the_cache_from_a_terminal(
    store: Store, modelslab: FakeModelsLab, database_url: str, slack: FakeSlack
) -> None:

    settings = settings_for(modelslab, database_url)
    identity = BotTokenIdentity.standalone(token=slack.bot_token, base_url=slack.base_url)
    ws = Workspaces(store=store, box=SecretBox(()), settings=settings, ask_team_id=identity)
    # A start asks Slack, caches the id, and serves it.
    assert await ws.identify(fresh=True) == slack.team_id
    assert await store.meta.get(TEAM_ID_META) == slack.team_id
    assert ws.single_workspace_id == slack.team_id
    assert identity.last is not None and identity.last.team_id == slack.team_id
    calls = len(slack.calls_to("auth.test"))
    # A terminal command reads the cache first: no second call.
    assert await ws.identify(fresh=False) == slack.team_id
    assert len(slack.calls_to("auth.test")) == calls

    # Slack unreachable: a start falls back to the cached id; a terminal without one is told.
    unreachable = BotTokenIdentity.standalone(token=slack.bot_token, base_url="http://127.0.0.1:9/")
    ws.ask_team_id = unreachable
    assert await ws.identify(fresh=True) == slack.team_id
    async with store.engine.begin() as conn:
        await conn.execute(bot_meta.delete())
    with pytest.raises(BotError, match="pass --team"):
        await ws.identify(fresh=False)
    assert await ws.identify(fresh=False, required=False) is None
    with pytest.raises(BotError, match="identify the workspace"):
        await ws.identify(fresh=True)
    # A refused token is a configuration problem, named as such.
    ws.ask_team_id = BotTokenIdentity.standalone(token="xoxb-revoked", base_url=slack.base_url)
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN was refused"):
        await ws.identify(fresh=True)
