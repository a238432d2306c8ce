"""The terminal admin commands as an operator runs them: `python -m bot set-key|allow|deny|
workspaces|rotate-keys` in a subprocess, against the fake ModelsLab and a real database."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.config import Purpose, async_database_url, load_settings
from bot.crypto import SecretBox
from bot.service.workspaces import Workspaces
from bot.store import Store
from tests import REPO
from tests.fakes.modelslab import FakeModelsLab
from tests.processes import run_bot_cli

TEAM = "T0NEWTEAM"
OTHER = "T0OLDTEAM"
KEY = "ml-cli-SECRET-key-4Rb9"
DAVE, ERIN = "U0DAVE001", "U0ERIN001"
GROUP = "S0GROUP01"


@pytest.fixture
def encryption_key() -> str:
    return Fernet.generate_key().decode()


def operator_env(
    modelslab: FakeModelsLab, database_url: str, encryption_key: str
) -> dict[str, str]:
    """A single-workspace operator's environment for the terminal commands."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "USER")}
    modelslab.valid_keys.add(KEY)
    return {
        **keep,
        "DATABASE_URL": database_url,
        "MODELSLAB_API_URL": modelslab.base_url,
        "BOT_ENCRYPTION_KEY": encryption_key,
        "PYTHONPATH": str(REPO),
    }


@pytest.fixture
def cli_env(
    modelslab: FakeModelsLab, database_url: str, store: Store, encryption_key: str
) -> dict[str, str]:
    """On SQLite and PostgreSQL; `store` gives it a migrated, empty database."""
    return operator_env(modelslab, database_url, encryption_key)


@pytest.fixture
async def local_store(sqlite_url: str) -> AsyncIterator[Store]:
    """A migrated SQLite store, for the checks that do not depend on the database kind."""
    s = Store.from_url(async_database_url(sqlite_url))
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def local_env(
    modelslab: FakeModelsLab, sqlite_url: str, local_store: Store, encryption_key: str
) -> dict[str, str]:
    """On SQLite only (refusals that happen before anything is stored)."""
    return operator_env(modelslab, sqlite_url, encryption_key)


def workspaces_for(env: dict[str, str], store: Store) -> Workspaces:
    """Read the store as the bot does with this environment."""
    settings = load_settings(Purpose.ADMIN, env)
    return Workspaces(store=store, box=SecretBox(settings.encryption_keys), settings=settings)


# --- set-key -----------------------------------------------------------------------------


async def test_set_key_reads_stdin_works_before_install_and_never_prints_the_key(
    cli_env: dict[str, str], store: Store, modelslab: FakeModelsLab, tmp_path: Path
) -> None:
    oauth = {**cli_env, "SLACK_CLIENT_ID": "111.222", "SLACK_CLIENT_SECRET": "sec"}
    run = await run_bot_cli(oauth, "set-key", "--team", TEAM, stdin=KEY + "\n", cwd=tmp_path)
    assert run.code == 0, run
    assert TEAM in run.out and "…4Rb9" in run.out
    assert KEY not in run.text and "SECRET" not in run.text and "Traceback" not in run.err
    # Checked with ModelsLab's side-effect-free call, then stored encrypted for that workspace.
    assert [c.path for c in modelslab.calls] == ["/api/v3/finetune_list"]
    assert modelslab.calls[0].key == KEY and modelslab.cancel_calls() == []
    row = await store.workspaces.get(TEAM)
    assert row is not None and not row.installed
    assert row.key_hint == "4Rb9" and KEY not in (row.key_ciphertext or "")
    assert await workspaces_for(oauth, store).key_for(TEAM) == KEY
    [event] = await store.workspaces.admin_events(TEAM)
    assert event["action"] == "set_key" and event["actor"].startswith("cli:")
    assert KEY not in str(event)

    # The workspace list shows it: not installed yet, key set (hint only), nobody allowed.
    listed = await run_bot_cli(oauth, "workspaces", cwd=tmp_path)
    assert listed.code == 0, listed
    [line] = [ln for ln in listed.out.splitlines() if ln.startswith(TEAM)]
    assert line.split()[-3:] == ["no", "…4Rb9", "0"]
    assert KEY not in listed.text

    # When the workspace installs, its key is already there.
    await store.workspaces.ensure(TEAM, name="New Team", installed=True)
    assert await workspaces_for(oauth, store).key_for(TEAM) == KEY


async def test_set_key_refuses_an_invalid_key_with_exit_1(
    local_env: dict[str, str], local_store: Store, tmp_path: Path
) -> None:
    run = await run_bot_cli(
        local_env, "set-key", "--team", TEAM, stdin="wrong-SECRET-key\n", cwd=tmp_path
    )
    assert run.code == 1, run
    assert "Invalid Api Key" in run.err and "Not stored" in run.err
    assert "wrong-SECRET-key" not in run.text and "Traceback" not in run.err
    row = await local_store.workspaces.get(TEAM)
    assert row is None or row.key_ciphertext is None
    # Empty input is refused too, before anything is asked.
    empty = await run_bot_cli(local_env, "set-key", "--team", TEAM, stdin="\n", cwd=tmp_path)
    assert empty.code == 1 and "Not stored" in empty.err, empty


async def test_set_key_without_an_encryption_key_exits_2_and_stores_nothing(
    local_env: dict[str, str], local_store: Store, modelslab: FakeModelsLab, tmp_path: Path
) -> None:
    env = {k: v for k, v in local_env.items() if k != "BOT_ENCRYPTION_KEY"}
    run = await run_bot_cli(env, "set-key", "--team", TEAM, stdin=KEY + "\n", cwd=tmp_path)
    assert run.code == 2, run
    assert "BOT_ENCRYPTION_KEY" in run.err and "Traceback" not in run.err
    assert KEY not in run.text
    assert modelslab.calls == []
    row = await local_store.workspaces.get(TEAM)
    assert row is None or row.key_ciphertext is None


async def test_set_key_needs_a_team_when_the_workspace_is_unknown(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    run = await run_bot_cli(local_env, "set-key", stdin=KEY + "\n", cwd=tmp_path)
    assert run.code == 2 and "--team" in run.err, run
    assert KEY not in run.text


# --- allow / deny ------------------------------------------------------------------------


async def test_allow_and_deny_change_the_list(
    cli_env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    run = await run_bot_cli(cli_env, "allow", "--team", TEAM, DAVE, GROUP, cwd=tmp_path)
    assert run.code == 0, run
    assert DAVE in run.out and GROUP in run.out and TEAM in run.out
    assert sorted(await store.workspaces.allow_list(TEAM)) == [GROUP, DAVE]

    run = await run_bot_cli(cli_env, "deny", "--team", TEAM, DAVE, cwd=tmp_path)
    assert run.code == 0 and "Removed" in run.out and DAVE in run.out, run
    assert await store.workspaces.allow_list(TEAM) == [GROUP]

    assert await store.workspaces.allow_list(TEAM) == [GROUP]

    events = list(reversed(await store.workspaces.admin_events(TEAM)))
    assert [e["action"] for e in events] == ["allow", "deny"]
    assert all(e["actor"].startswith("cli:") for e in events)


async def test_allow_and_deny_reject_malformed_ids(
    local_env: dict[str, str], local_store: Store, tmp_path: Path
) -> None:
    await local_store.workspaces.allow(TEAM, [DAVE], by="cli:ops")
    before = await local_store.workspaces.admin_events(TEAM)
    # One bad id refuses the whole command; each bad id is named.
    run = await run_bot_cli(
        local_env, "allow", "--team", TEAM, ERIN, "alice", "C0CHANNEL", "@dave", cwd=tmp_path
    )
    assert run.code == 2, run
    assert "Not a Slack user" in run.err and "Traceback" not in run.err
    assert "alice" in run.err and "C0CHANNEL" in run.err and ERIN not in run.err
    run = await run_bot_cli(local_env, "deny", "--team", TEAM, DAVE, "U0DAVE001;DROP", cwd=tmp_path)
    assert run.code == 2 and "Not a Slack user" in run.err, run
    assert await local_store.workspaces.allow_list(TEAM) == [DAVE]
    assert await local_store.workspaces.admin_events(TEAM) == before


async def test_allowing_an_id_already_listed_says_nothing_new(
    cli_env: dict[str, str], store: Store, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    oauth = {**cli_env, "SLACK_CLIENT_ID": "111.222", "SLACK_CLIENT_SECRET": "sec"}
    await store.workspaces.allow(TEAM, [DAVE], by="cli:ops")
    before = await store.workspaces.admin_events(TEAM)
    run = await run_bot_cli(oauth, "allow", "--team", TEAM, DAVE, cwd=tmp_path)
    assert run.code == 0, run
    assert "nothing new" in run.out and "1 entries" in run.out, run
    assert await store.workspaces.admin_events(TEAM) == before


async def test_allow_in_single_workspace_mode_reports_the_list_size(
    local_env: dict[str, str], local_store: Store, tmp_path: Path
) -> None:
    env = {**local_env, "CANCEL_ALLOWED_USERS": ERIN}
    run = await run_bot_cli(env, "allow", "--team", TEAM, DAVE, cwd=tmp_path)
    assert run.code == 0 and DAVE in run.out, run
    assert await local_store.workspaces.allow_list(TEAM) == [DAVE]
    # ERIN (the operator's, always in force) and DAVE: the operator must not read "0 entries".
    assert "2 entries" in run.out, run


# --- workspaces --------------------------------------------------------------------------


async def test_workspaces_lists_key_state_and_list_size_never_the_key(
    cli_env: dict[str, str], store: Store, tmp_path: Path
) -> None:
    empty = await run_bot_cli(cli_env, "workspaces", cwd=tmp_path)
    assert empty.code == 0 and "No workspaces yet" in empty.out, empty

    ws = workspaces_for(cli_env, store)
    await store.workspaces.ensure(TEAM, name="New Team", installed=True)
    await ws.set_key(TEAM, KEY, by="cli:ops")  # no ModelsLab client: stored without a check
    await ws.allow(TEAM, [DAVE, GROUP], by="cli:ops")
    await store.workspaces.ensure(OTHER, name="Old Team", installed=False)
    run = await run_bot_cli(cli_env, "workspaces", cwd=tmp_path)
    assert run.code == 0, run
    lines = {ln.split()[0]: ln for ln in run.out.splitlines()[1:]}
    assert lines[TEAM].split()[-3:] == ["yes", "…4Rb9", "2"] and "New Team" in lines[TEAM]
    assert lines[OTHER].split()[-4:] == ["no", "not", "set", "0"] and "Old Team" in lines[OTHER]
    assert KEY not in run.text and "SECRET" not in run.text


# --- rotate-keys -------------------------------------------------------------------------


async def test_rotate_keys_re_encrypts_so_the_old_key_can_go(
    cli_env: dict[str, str], store: Store, tmp_path: Path, encryption_key: str
) -> None:
    old = encryption_key
    ws_old = workspaces_for(cli_env, store)
    await ws_old.set_key(TEAM, KEY, by="cli:ops")
    webhook = await ws_old.rotate_webhook_token(TEAM, by="cli:ops")

    new = Fernet.generate_key().decode()
    both = {**cli_env, "BOT_ENCRYPTION_KEY": f"{new},{old}"}
    run = await run_bot_cli(both, "rotate-keys", cwd=tmp_path)
    assert run.code == 0, run
    assert "Re-encrypted 2" in run.out
    assert KEY not in run.text and webhook not in run.text and new not in run.text

    only_new = workspaces_for({**cli_env, "BOT_ENCRYPTION_KEY": new}, store)
    assert await only_new.key_for(TEAM) == KEY
    assert await only_new.webhook_token(TEAM) == webhook
    row = await store.workspaces.get(TEAM)
    assert row is not None
    with pytest.raises(Exception):  # noqa: B017, PT011 - the old key alone reads nothing now
        Fernet(old.encode()).decrypt((row.key_ciphertext or "").encode())

    unset = {k: v for k, v in cli_env.items() if k != "BOT_ENCRYPTION_KEY"}
    run = await run_bot_cli(unset, "rotate-keys", cwd=tmp_path)
    assert run.code == 2 and "BOT_ENCRYPTION_KEY" in run.err, run


async def test_rotate_keys_with_a_key_that_cannot_read_the_data_fails_readably(
    local_env: dict[str, str], local_store: Store, tmp_path: Path
) -> None:
    await workspaces_for(local_env, local_store).set_key(TEAM, KEY, by="cli:ops")
    wrong = {**local_env, "BOT_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    run = await run_bot_cli(wrong, "rotate-keys", cwd=tmp_path)
    # Nothing was rewritten: the data still reads with the right key.
    assert await workspaces_for(local_env, local_store).key_for(TEAM) == KEY
    assert "Traceback" not in run.err, run.err
    assert run.code == 1 and "BOT_ENCRYPTION_KEY" in run.err, run


# --- single-workspace truths ------------------------------------------------------------------


async def serves(store: Store, team: str = TEAM) -> None:
    """The database as a start leaves it: the bot has learned which workspace it serves."""
    from bot.service.workspaces import TEAM_ID_META

    await store.meta.set(TEAM_ID_META, team)


async def test_allow_counts_an_id_in_cancel_allowed_users_once(
    local_env: dict[str, str], local_store: Store, tmp_path: Path
) -> None:
    await serves(local_store)
    env = {**local_env, "CANCEL_ALLOWED_USERS": f"{ERIN},{GROUP}"}
    run = await run_bot_cli(env, "allow", ERIN, DAVE, cwd=tmp_path)
    assert run.code == 0, run
    # ERIN and GROUP from the environment, DAVE added: three, not four.
    assert "now has 3 entries" in run.out, run
    assert f"{ERIN} also in CANCEL_ALLOWED_USERS" in run.out, run


async def test_deny_of_someone_allowed_through_the_environment_says_they_stay_allowed(
    local_env: dict[str, str], local_store: Store, tmp_path: Path
) -> None:
    await serves(local_store)
    await local_store.workspaces.allow(TEAM, [DAVE], by="cli:ops")
    env = {**local_env, "CANCEL_ALLOWED_USERS": ERIN}
    run = await run_bot_cli(env, "deny", ERIN, cwd=tmp_path)
    assert run.code == 1, run
    assert "Removed" not in run.out, run
    assert "Still allowed" in run.err and ERIN in run.err and "CANCEL_ALLOWED_USERS" in run.err
    # A stored entry is removed as asked, and the one from the environment is still named.
    run = await run_bot_cli(env, "deny", DAVE, ERIN, cwd=tmp_path)
    assert run.code == 1 and f"Removed {DAVE}" in run.out and ERIN in run.err, run
    assert await local_store.workspaces.allow_list(TEAM) == []
    run = await run_bot_cli(env, "deny", DAVE, cwd=tmp_path)
    assert run.code == 0 and "not on it" in run.out and "Removed" not in run.out, run


@pytest.mark.parametrize("command", ["allow", "deny", "set-key"])
async def test_a_workspace_this_bot_does_not_serve_is_refused_naming_the_served_one(
    command: str,
    local_env: dict[str, str],
    local_store: Store,
    modelslab: FakeModelsLab,
    tmp_path: Path,
) -> None:
    await serves(local_store)
    args = [DAVE] if command != "set-key" else []
    run = await run_bot_cli(
        local_env, command, "--team", OTHER, *args, stdin=KEY + "\n", cwd=tmp_path
    )
    assert run.code == 2, run
    assert TEAM in run.err and OTHER in run.err and "single-workspace" in run.err, run
    assert "Traceback" not in run.err and KEY not in run.text
    assert await local_store.workspaces.get(OTHER) is None
    assert modelslab.calls == []
    # The served one, named or not, works.
    ok = await run_bot_cli(
        local_env, command, "--team", TEAM, *args, stdin=KEY + "\n", cwd=tmp_path
    )
    assert ok.code == 0, ok


async def test_workspaces_shows_the_served_workspace_with_its_key_state(
    local_env: dict[str, str], local_store: Store, tmp_path: Path
) -> None:
    env = {**local_env, "MODELSLAB_API_KEY": KEY, "CANCEL_ALLOWED_USERS": f"{ERIN},{GROUP}"}
    # Before the first start: the bot cannot know which workspace it serves, and says so.
    run = await run_bot_cli(env, "workspaces", cwd=tmp_path)
    assert run.code == 0 and "not known yet" in run.out, run

    await serves(local_store)
    run = await run_bot_cli(env, "workspaces", cwd=tmp_path)
    assert run.code == 0, run
    rows = {ln.split()[0]: ln.split() for ln in run.out.splitlines()[1:] if ln.startswith("T")}
    # workspace, name, served, installed, key, allowed
    assert rows[TEAM][2] == "yes" and rows[TEAM][-2:] == ["MODELSLAB_API_KEY", "2"], run.out
    assert KEY not in run.text

    # A stored key wins over the environment's; the list counts each id once.
    ws = workspaces_for(env, local_store)
    await ws.set_key(TEAM, KEY, by="cli:ops")
    await ws.allow(TEAM, [ERIN, DAVE], by="cli:ops")
    await local_store.workspaces.ensure(OTHER, name="Old Team", installed=False)
    run = await run_bot_cli(env, "workspaces", cwd=tmp_path)
    rows = {ln.split()[0]: ln.split() for ln in run.out.splitlines()[1:] if ln.startswith("T")}
    assert rows[TEAM][2] == "yes" and rows[TEAM][-2:] == ["…4Rb9", "3"], run.out
    assert rows[OTHER][-5:] == ["no", "no", "not", "set", "0"], run.out  # served, installed, …
    assert KEY not in run.text


# --- safety --------------------------------------------------------------------------------


async def test_safety_sets_the_undo_window_and_two_person_rule(
    local_env: dict[str, str], local_store: Store, tmp_path: Path
) -> None:
    run = await run_bot_cli(local_env, "safety", "--team", TEAM, cwd=tmp_path)
    assert run.code == 0 and "undo window off; two-person rule off" in run.out, run
    run = await run_bot_cli(
        local_env, "safety", "--team", TEAM, "--undo", "30", "--two-person", "on", cwd=tmp_path
    )
    assert run.code == 0 and "undo window 30 s" in run.out and "within 15 min" in run.out, run
    safety = await workspaces_for(local_env, local_store).safety(TEAM)
    assert (safety.undo_seconds, safety.two_person, safety.approval_seconds) == (30, True, 900)
    run = await run_bot_cli(local_env, "safety", "--team", TEAM, "--undo", "off", cwd=tmp_path)
    assert run.code == 0 and "undo window off" in run.out, run
    bad = await run_bot_cli(local_env, "safety", "--team", TEAM, "--undo", "9999", cwd=tmp_path)
    assert bad.code == 2 and "Not changed" in bad.err and "Traceback" not in bad.err, bad
    events = await local_store.workspaces.admin_events(TEAM)
    assert any(e["action"] == "set_safety" for e in events), events
