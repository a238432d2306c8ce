"""`python -m bot check [--offline]` and `bot.cli.check.checklist` (design §3: commands, exit codes).

Shapes of every setting, the database, the warnings an operator should see, and (online) the bot
token, the app token and the ModelsLab key against the fakes. Most cases run `checklist`/`run_check`
in-process (fast, table-driven); a few run the real command as a subprocess to show the exit code,
the absence of tracebacks and that no secret is ever printed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.cli.check import Item, checklist, run_check
from bot.config import ENV_VARS, async_database_url
from bot.service.workspaces import TEAM_ID_META
from bot.store import Store
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.harness import bot_env, free_port
from tests.processes import run_bot_cli

FERNET_KEY = Fernet.generate_key().decode()
SIGNING_SECRET = "8f742231b10e8888abcd99aaabbb85a5"
BOT_TOKEN = "xoxb-1111-2222-validbottoken"
APP_TOKEN = "xapp-1-A0APP0001-3333-validapptoken"
MODELSLAB_KEY = "ml-key-Vx83kq0Zp"
WEBHOOK_TOKEN = "webhook-token-Qm4rT7yU"
METRICS_TOKEN = "metrics-token-Lp2sD9wE"
SECRETS = (
    BOT_TOKEN,
    APP_TOKEN,
    MODELSLAB_KEY,
    FERNET_KEY,
    SIGNING_SECRET,
    WEBHOOK_TOKEN,
    METRICS_TOKEN,
)


def valid_env(tmp_path: Path) -> dict[str, str]:
    """Every setting present and well-formed; the SQLite file does not exist yet."""
    return {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_API_URL": "https://slack.com/api/",
        "MODELSLAB_API_KEY": MODELSLAB_KEY,
        "MODELSLAB_API_URL": "https://modelslab.com/api/v3",
        "MODELSLAB_V6_URL": "https://modelslab.com/api/v6",
        "CANCEL_ALLOWED_USERS": "U0ALICE01, W0BOB0001,S0GROUP01",
        "CANCEL_DRY_RUN": "0",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "BOT_ENCRYPTION_KEY": FERNET_KEY,
        "BOT_ADMINS": "U0ADMIN01",
        "AUDIT_CHANNEL": "C0AUDIT01",
        "NOTIFY_CHANNEL": "G0PRIVATE1",
        "MODELSLAB_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "METRICS_TOKEN": METRICS_TOKEN,
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "json",
        "PORT": "8080",
    }


def mark(item: Item) -> str:
    """The mark `run_check` prints for an item."""
    return "ok" if item.ok and not item.warning else ("warn" if item.ok else "FAIL")


def describe(items: list[Item]) -> str:
    return "\n".join(f"[{mark(i)}] {i.text}" for i in items)


def assert_no_secret(text: str, *extra: str) -> None:
    for secret in (*SECRETS, *extra):
        assert secret not in text, f"a secret was printed: {secret!r} in\n{text}"


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A process environment with none of the bot's variables (nor DYNO), in an empty directory
    (so no `.env` file is found); `run_check` reads os.environ."""
    for name in (*ENV_VARS, "DYNO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def set_environ(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


async def first_start_done(database_url: str | None, cwd: Path, team: str = "T0TEAM001") -> None:
    """The database as a first start leaves it: migrated, the workspace learned from Slack."""
    store = Store.from_url(async_database_url(database_url, cwd=cwd))
    try:
        await store.migrate()
        await store.meta.set(TEAM_ID_META, team)
    finally:
        await store.close()


# --- offline: a valid configuration ------------------------------------------------------


async def test_offline_check_of_a_valid_configuration_exits_0(
    slack: FakeSlack, modelslab: FakeModelsLab, tmp_path: Path
) -> None:
    env = valid_env(tmp_path)
    # Point the URLs at the fakes: offline must not call them at all.
    env["SLACK_API_URL"], env["MODELSLAB_API_URL"] = slack.base_url, modelslab.base_url
    env["MODELSLAB_V6_URL"] = modelslab.v6_url
    await first_start_done(env["DATABASE_URL"], tmp_path)
    run = await run_bot_cli(env, "check", "--offline", cwd=tmp_path)
    assert run.code == 0, run
    lines = run.out.strip().splitlines()
    assert lines[-1] == "All checks passed.", run
    assert all(line.startswith("[ok  ] ") for line in lines[:-1]), run
    assert any("database" in line for line in lines), run
    assert slack.calls == [] and modelslab.calls == []
    assert "Traceback" not in run.err
    assert_no_secret(run.out + run.err)


# --- offline: one broken setting at a time -----------------------------------------------


@dataclass(frozen=True)
class Broken:
    """One broken setting: what to set, the variable the line must name, and the hint."""

    id: str
    overrides: dict[str, str]
    variable: str
    hints: tuple[str, ...]
    secret: str | None = None  # a value that must never be echoed


BROKEN = [
    Broken(
        "user-token-as-bot-token",
        {"SLACK_BOT_TOKEN": "xoxp-1234-5678-usertokensecret"},
        "SLACK_BOT_TOKEN",
        ("xoxb-", "OAuth & Permissions"),
        "xoxp-1234-5678-usertokensecret",
    ),
    Broken(
        "bot-token-as-app-token",
        {"SLACK_APP_TOKEN": "xoxb-9999-pastedinthewrongslot"},
        "SLACK_APP_TOKEN",
        ("xapp-", "App-Level Tokens", "connections:write"),
        "xoxb-9999-pastedinthewrongslot",
    ),
    Broken(
        "not-a-fernet-key",
        {"BOT_ENCRYPTION_KEY": "my-password-is-not-a-key"},
        "BOT_ENCRYPTION_KEY",
        ("Fernet", "generate_key"),
        "my-password-is-not-a-key",
    ),
    Broken(
        "second-fernet-key-broken",
        {"BOT_ENCRYPTION_KEY": f"{FERNET_KEY},short-old-key-zz"},
        "BOT_ENCRYPTION_KEY",
        ("Fernet", "entry 2"),
        "short-old-key-zz",
    ),
    Broken(
        "slack-url-without-scheme",
        {"SLACK_API_URL": "slack.com/api"},
        "SLACK_API_URL",
        ("http(s) URL",),
    ),
    Broken(
        "modelslab-url-ftp",
        {"MODELSLAB_API_URL": "ftp://modelslab.com/api/v3"},
        "MODELSLAB_API_URL",
        ("http(s) URL",),
    ),
    Broken(
        "v6-url-not-a-url",
        {"MODELSLAB_V6_URL": "modelslab v6"},
        "MODELSLAB_V6_URL",
        ("http(s) URL",),
    ),
    Broken(
        "v6-url-needed-without-v3",
        {"MODELSLAB_API_URL": "https://proxy.example/modelslab", "MODELSLAB_V6_URL": ""},
        "MODELSLAB_V6_URL",
        ("/v3",),
    ),
    Broken(
        "audit-channel-name",
        {"AUDIT_CHANNEL": "#ml-alerts"},
        "AUDIT_CHANNEL",
        ("channel ID", "C0123ABCD"),
    ),
    Broken(
        "notify-channel-name",
        {"NOTIFY_CHANNEL": "ml-training"},
        "NOTIFY_CHANNEL",
        ("channel ID", "C0123ABCD"),
    ),
    Broken(
        "allow-list-of-names",
        {"CANCEL_ALLOWED_USERS": "U0ALICE01,@bob"},
        "CANCEL_ALLOWED_USERS",
        ("U…", "S…", "@bob"),
    ),
    Broken("admins-by-name", {"BOT_ADMINS": "carol"}, "BOT_ADMINS", ("U…", "carol")),
    Broken(
        "unknown-log-level",
        {"LOG_LEVEL": "VERBOSE"},
        "LOG_LEVEL",
        ("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Broken("unknown-log-format", {"LOG_FORMAT": "xml"}, "LOG_FORMAT", ("text", "json")),
    Broken(
        "mysql-database",
        {"DATABASE_URL": "mysql://bot:hunter2pw@db.example/bot"},
        "DATABASE_URL",
        ("sqlite:///", "postgresql://"),
        "hunter2pw",
    ),
    Broken(
        "sqlite-url-without-path",
        {"DATABASE_URL": "sqlite://bot.db"},
        "DATABASE_URL",
        ("sqlite:///",),
    ),
    Broken(
        "database-path-not-url",
        {"DATABASE_URL": "./bot.db"},
        "DATABASE_URL",
        ("sqlite:///", "postgresql://"),
    ),
    Broken("dry-run-word", {"CANCEL_DRY_RUN": "maybe"}, "CANCEL_DRY_RUN", ("1", "0")),
    Broken("port-not-a-number", {"PORT": "http"}, "PORT", ("1-65535",)),
    Broken("port-out-of-range", {"PORT": "70000"}, "PORT", ("1-65535",)),
    Broken(
        "signing-secret-not-hex",
        {"SLACK_SIGNING_SECRET": "not-the-signing-secret!"},
        "SLACK_SIGNING_SECRET",
        ("Signing Secret", "Basic Information"),
        "not-the-signing-secret!",
    ),
    Broken(
        "bot-token-missing",
        {"SLACK_BOT_TOKEN": ""},
        "SLACK_BOT_TOKEN",
        ("missing", "xoxb-"),
    ),
    Broken(
        "oauth-without-encryption-key",
        {"SLACK_CLIENT_ID": "1234.5678", "SLACK_CLIENT_SECRET": "abcdef", "BOT_ENCRYPTION_KEY": ""},
        "BOT_ENCRYPTION_KEY",
        ("OAuth",),
        "abcdef",
    ),
]


@pytest.mark.parametrize("case", BROKEN, ids=[c.id for c in BROKEN])
async def test_a_broken_setting_is_one_fail_line_naming_it_and_what_to_do(
    case: Broken,
    environ: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {k: v for k, v in {**valid_env(tmp_path), **case.overrides}.items() if v}
    items = await checklist(offline=True, env=env)
    failed = [i for i in items if not i.ok]
    assert len(failed) == 1, describe(items)
    [line] = failed
    assert case.variable in line.text, line
    for hint in case.hints:
        assert hint in line.text, (hint, line.text)
    assert "\n" not in line.text

    # The command itself: the same line marked FAIL, exit status 1, the secret never shown.
    set_environ(environ, env)
    code = await run_check(offline=True)
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert f"[FAIL] {line.text}" in out.splitlines(), out
    assert "1 problem(s) found." in err
    assert_no_secret(out + err, *([case.secret] if case.secret else []))


async def test_every_problem_is_listed_at_once_without_a_traceback(tmp_path: Path) -> None:
    env = {
        **valid_env(tmp_path),
        "SLACK_BOT_TOKEN": "xoxp-1234-5678-usertokensecret",
        "SLACK_APP_TOKEN": "xoxb-9999-pastedinthewrongslot",
        "BOT_ENCRYPTION_KEY": "my-password-is-not-a-key",
        "SLACK_API_URL": "slack.com/api",
        "AUDIT_CHANNEL": "#ml-alerts",
        "LOG_LEVEL": "VERBOSE",
        "DATABASE_URL": "mysql://bot:hunter2pw@db.example/bot",
    }
    run = await run_bot_cli(env, "check", "--offline", cwd=tmp_path)
    assert run.code != 0, run
    assert "Traceback" not in run.out + run.err, run
    failed = [line for line in run.out.splitlines() if line.startswith("[FAIL] ")]
    for variable in (
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "BOT_ENCRYPTION_KEY",
        "SLACK_API_URL",
        "AUDIT_CHANNEL",
        "LOG_LEVEL",
        "DATABASE_URL",
    ):
        assert sum(variable in line.split()[1] for line in failed) == 1, (variable, run.out)
    assert len(failed) == 7, run.out
    assert_no_secret(
        run.out + run.err,
        "xoxp-1234-5678-usertokensecret",
        "xoxb-9999-pastedinthewrongslot",
        "my-password-is-not-a-key",
        "hunter2pw",
    )


# --- offline: the database ---------------------------------------------------------------


async def test_an_unreachable_postgresql_is_a_clear_fail_line_in_bounded_time(
    tmp_path: Path,
) -> None:
    env = {
        **valid_env(tmp_path),
        "DATABASE_URL": "postgresql://cancelbot:pg-pass-Xy77@127.0.0.1:1/cancelbot",
    }
    started = time.monotonic()
    run = await run_bot_cli(env, "check", "--offline", cwd=tmp_path)
    took = time.monotonic() - started
    assert run.code != 0, run
    assert took < 20, (took, run)
    assert "Traceback" not in run.out + run.err, run
    failed = [line for line in run.out.splitlines() if line.startswith("[FAIL] ")]
    assert len(failed) == 1, run.out
    assert "DATABASE_URL" in failed[0] and "not reachable" in failed[0], failed
    assert "127.0.0.1" in failed[0], failed  # says which server it tried
    assert_no_secret(run.out + run.err, "pg-pass-Xy77")


async def test_a_sqlite_file_that_does_not_exist_yet_is_fine(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "fresh.db"
    env = {**valid_env(tmp_path), "DATABASE_URL": f"sqlite:///{path}"}
    items = await checklist(offline=True, env=env)
    # Fine, except that offline nothing can say which workspace the token is for (a warning).
    assert all(mark(i) == "ok" for i in items if "must reach Slack" not in i.text), describe(items)
    assert any("database" in i.text for i in items), describe(items)

    # Once migrated and the workspace learned (as the first start does), all is ok.
    await first_start_done(env["DATABASE_URL"], tmp_path)
    items = await checklist(offline=True, env=env)
    assert all(mark(i) == "ok" for i in items), describe(items)
    assert any("schema current" in i.text for i in items), describe(items)

    # The default database (DATABASE_URL unset) is a SQLite file in the working directory.
    env.pop("DATABASE_URL")
    await first_start_done(None, tmp_path)
    items = await checklist(offline=True, env=env)
    assert all(mark(i) == "ok" for i in items), describe(items)


# --- warnings ----------------------------------------------------------------------------


async def test_heroku_with_sqlite_is_a_warning(
    environ: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = valid_env(tmp_path)
    await first_start_done(env["DATABASE_URL"], tmp_path)
    await first_start_done(None, tmp_path)  # the default database, in the working directory
    items = await checklist(offline=True, env=env)
    assert not any("Heroku" in i.text for i in items), describe(items)

    env = {**env, "DYNO": "web.1"}  # Heroku sets DYNO on every dyno
    without_url = {k: v for k, v in env.items() if k != "DATABASE_URL"}  # the default: SQLite
    for run_env in (env, without_url):
        items = await checklist(offline=True, env=run_env)
        warnings = [i for i in items if mark(i) == "warn"]
        assert len(warnings) == 1, describe(items)
        assert "Heroku" in warnings[0].text and "PostgreSQL" in warnings[0].text, warnings
        assert all(i.ok for i in items), describe(items)

    # A warning is printed as such and does not fail the check.
    set_environ(environ, env)
    environ.setenv("DYNO", "web.1")
    code = await run_check(offline=True)
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert any(line.startswith("[warn] ") and "Heroku" in line for line in out.splitlines()), out
    assert "All checks passed." in out


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"CANCEL_ALLOWED_USERS": ""}, ("CANCEL_ALLOWED_USERS", "nobody")),
        ({"CANCEL_DRY_RUN": "1"}, ("CANCEL_DRY_RUN", "never")),
        ({"MODELSLAB_API_KEY": ""}, ("MODELSLAB_API_KEY", "set-key")),
        ({"SLACK_CLIENT_ID": "1234.5678"}, ("SLACK_CLIENT_SECRET",)),
    ],
    ids=["empty-allow-list", "dry-run", "no-modelslab-key", "half-oauth"],
)
async def test_warnings(
    overrides: dict[str, str],
    words: tuple[str, ...],
    environ: pytest.MonkeyPatch,
    tmp_path: Path,
    slack: FakeSlack,
    modelslab: FakeModelsLab,
) -> None:
    env = {k: v for k, v in {**valid_env(tmp_path), **overrides}.items() if v}
    await first_start_done(env["DATABASE_URL"], tmp_path)
    # A missing key is reported offline and online: that case runs against the fakes.
    online = "MODELSLAB_API_KEY" in overrides
    if online:
        env.update(SLACK_API_URL=slack.base_url, MODELSLAB_API_URL=modelslab.base_url)
        env.update(SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=slack.app_token)
        env.pop("MODELSLAB_V6_URL")
    items = await checklist(offline=not online, env=env)
    assert all(i.ok for i in items), describe(items)
    warnings = [i for i in items if mark(i) == "warn"]
    assert len(warnings) == 1, describe(items)
    for word in words:
        assert word in warnings[0].text, (word, warnings[0].text)


# --- online, against the fakes -----------------------------------------------------------


def online_env(slack: FakeSlack, modelslab: FakeModelsLab, database_url: str) -> dict[str, str]:
    return bot_env(
        slack,
        modelslab,
        database_url,
        SLACK_APP_TOKEN=slack.app_token,
        MODELSLAB_API_KEY=MODELSLAB_KEY,
    )


async def test_online_check_with_everything_working_exits_0(
    slack: FakeSlack, sqlite_url: str, tmp_path: Path
) -> None:
    async with FakeModelsLab(valid_keys=[MODELSLAB_KEY]) as modelslab:
        run = await run_bot_cli(online_env(slack, modelslab, sqlite_url), "check", cwd=tmp_path)
        assert run.code == 0, run
        assert [c.token for c in slack.calls_to("auth.test")] == [slack.bot_token]
        assert [c.token for c in slack.calls_to("apps.connections.open")] == [slack.app_token]
        assert [(c.path, c.key) for c in modelslab.calls] == [
            ("/api/v3/finetune_list", MODELSLAB_KEY)
        ]
    lines = run.out.strip().splitlines()
    assert lines[-1] == "All checks passed." and all(
        line.startswith("[ok  ] ") for line in lines[:-1]
    ), run
    assert any("Slack token works" in line for line in lines), run
    assert "Traceback" not in run.err
    assert_no_secret(run.out + run.err, slack.bot_token, slack.app_token)


ONLINE_FAILURES = {
    "revoked-bot-token": ("SLACK_BOT_TOKEN", "token_revoked"),
    "revoked-app-token": ("SLACK_APP_TOKEN", "token_revoked"),
    "invalid-modelslab-key": ("MODELSLAB_API_KEY", "Invalid Api Key"),
    "modelslab-unreachable": ("ModelsLab", "could not connect"),
    "slack-unreachable": ("Slack could not be reached", "ClientConnectorError"),
}


@pytest.mark.parametrize("case", list(ONLINE_FAILURES))
async def test_online_problem_is_a_fail_line_and_exit_1(
    case: str,
    slack: FakeSlack,
    sqlite_url: str,
    environ: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with FakeModelsLab(valid_keys=[MODELSLAB_KEY]) as modelslab:
        env = online_env(slack, modelslab, sqlite_url)
        if case == "revoked-bot-token":
            slack.revoke(slack.bot_token)
        elif case == "revoked-app-token":
            slack.revoke(slack.app_token)
        elif case == "invalid-modelslab-key":
            env["MODELSLAB_API_KEY"] = "wrong-key-Jd73hs"
        elif case == "modelslab-unreachable":
            env["MODELSLAB_API_URL"] = f"http://127.0.0.1:{free_port()}/api/v3"
        else:
            env["SLACK_API_URL"] = f"http://127.0.0.1:{free_port()}/api/"
        set_environ(environ, env)
        started = time.monotonic()
        code = await run_check(offline=False)
        took = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert took < 15, (took, out)
    failed = [line for line in out.splitlines() if line.startswith("[FAIL] ")]
    # Slack unreachable fails both Slack checks; everything else fails exactly one line.
    assert len(failed) == (2 if case == "slack-unreachable" else 1), out
    name, reason = ONLINE_FAILURES[case]
    assert name in failed[0] and reason in failed[0], failed
    assert "Traceback" not in out + err
    assert_no_secret(out + err, slack.bot_token, slack.app_token, "wrong-key-Jd73hs")


# --- the mode, and the same verdict as the start ----------------------------------------------


MODES = {
    # id: (overrides on the single-workspace HTTP environment, mode words, transport words, needs)
    "single-http": ({}, "single workspace", "HTTP server", ("SLACK_SIGNING_SECRET",)),
    "single-socket": (
        {"SLACK_APP_TOKEN": APP_TOKEN},
        "single workspace",
        "Socket Mode",
        ("SLACK_APP_TOKEN",),
    ),
    "oauth-http": (
        {"SLACK_CLIENT_ID": "1234.5678", "SLACK_CLIENT_SECRET": "abcdef0123"},
        "OAuth",
        "HTTP server",
        ("BOT_ENCRYPTION_KEY", "SLACK_SIGNING_SECRET"),
    ),
    "oauth-socket": (
        {
            "SLACK_CLIENT_ID": "1234.5678",
            "SLACK_CLIENT_SECRET": "abcdef0123",
            "SLACK_APP_TOKEN": APP_TOKEN,
        },
        "OAuth",
        "Socket Mode",
        ("BOT_ENCRYPTION_KEY", "SLACK_APP_TOKEN"),
    ),
}


@pytest.mark.parametrize("case", list(MODES))
async def test_check_names_the_mode_it_found_and_what_that_mode_needs(
    case: str, environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    overrides, mode, transport, needs = MODES[case]
    env = {**valid_env(tmp_path), **overrides}
    if "SLACK_APP_TOKEN" not in overrides:
        env.pop("SLACK_APP_TOKEN")
    items = await checklist(offline=True, env=env)
    [line] = [i.text for i in items if i.text.startswith("mode: ")]
    assert mode in line and transport in line, line
    for name in needs:
        assert name in line, (name, line)
    # Single workspace: SLACK_BOT_TOKEN is needed (and said); OAuth: installs bring their own.
    assert ("SLACK_BOT_TOKEN" in line.split("needs")[1]) is (mode == "single workspace"), line
    assert "what `python -m bot` runs" in line, line


async def test_with_no_app_token_check_fails_without_the_signing_secret(
    environ: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12: with no SLACK_APP_TOKEN, `python -m bot` is the HTTP server, which refuses to
    start without SLACK_SIGNING_SECRET; `check` used to say "All checks passed"."""
    env = {
        k: v
        for k, v in valid_env(tmp_path).items()
        if k not in ("SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET")
    }
    set_environ(environ, env)
    code = await run_check(offline=True)
    out, _ = capsys.readouterr()
    assert code == 1, out
    [failed] = [line for line in out.splitlines() if line.startswith("[FAIL] ")]
    assert "SLACK_SIGNING_SECRET is missing" in failed, out
    assert "HTTP server" in out


async def test_offline_says_the_first_start_must_reach_slack_until_it_has(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = valid_env(tmp_path)
    items = await checklist(offline=True, env=env)
    [note] = [i for i in items if "must reach Slack" in i.text]
    assert mark(note) == "warn" and "first start" in note.text and "auth.test" in note.text
    await first_start_done(env["DATABASE_URL"], tmp_path, team="T0LEARNED")
    items = await checklist(offline=True, env=env)
    assert not any("must reach Slack" in i.text for i in items), describe(items)
    assert any("workspace T0LEARNED" in i.text and mark(i) == "ok" for i in items), describe(items)


async def test_oauth_check_does_not_check_the_key_it_says_is_ignored(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    env = {
        **online_env(slack, modelslab, sqlite_url),
        "SLACK_CLIENT_ID": "1234.5678",
        "SLACK_CLIENT_SECRET": "abcdef0123",
        "BOT_ENCRYPTION_KEY": FERNET_KEY,
    }
    env.pop("SLACK_APP_TOKEN")
    run = await run_bot_cli(env, "check", cwd=tmp_path)
    assert run.code == 0, run
    assert modelslab.calls == [], "the ignored MODELSLAB_API_KEY was sent to ModelsLab"
    assert slack.calls_to("auth.test") == [], "the ignored SLACK_BOT_TOKEN was tried"
    lines = run.out.splitlines()
    assert any(ln.startswith("[warn] ") and "ignored" in ln for ln in lines), run.out
    assert not any("ModelsLab key" in ln and "accepted" in ln for ln in lines), run.out
    assert not any(ln.startswith("[ok  ] ") and "token works" in ln for ln in lines), run.out


async def test_an_oauth_workspace_without_key_or_allow_list_is_a_warning(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {
        **valid_env(tmp_path),
        "SLACK_CLIENT_ID": "1234.5678",
        "SLACK_CLIENT_SECRET": "abcdef0123",
    }
    await first_start_done(env["DATABASE_URL"], tmp_path)
    store = Store.from_url(async_database_url(env["DATABASE_URL"]))
    try:
        await store.workspaces.ensure("T0NOKEY01", name="No key", installed=True)
        await store.workspaces.ensure("T0GONE001", name="Uninstalled", installed=False)
    finally:
        await store.close()
    items = await checklist(offline=True, env=env)
    warnings = [i.text for i in items if mark(i) == "warn"]
    assert any("No ModelsLab key for workspace T0NOKEY01" in w for w in warnings), warnings
    assert any("allow-list of workspace T0NOKEY01" in w for w in warnings), warnings
    assert not any("T0GONE001" in w for w in warnings), warnings
    assert all(i.ok for i in items), describe(items)


async def test_a_key_or_allow_list_stored_in_the_database_is_no_warning(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bot.config import Purpose, load_settings
    from bot.crypto import SecretBox
    from bot.service.workspaces import Workspaces

    env = {
        k: v
        for k, v in valid_env(tmp_path).items()
        if k not in ("MODELSLAB_API_KEY", "CANCEL_ALLOWED_USERS")
    }
    await first_start_done(env["DATABASE_URL"], tmp_path, team="T0TEAM001")
    items = await checklist(offline=True, env=env)
    warnings = [i.text for i in items if mark(i) == "warn"]
    assert len(warnings) == 2, describe(items)
    assert "No ModelsLab key for workspace T0TEAM001" in warnings[0], warnings
    assert "allow-list of workspace T0TEAM001 is empty" in warnings[1], warnings

    settings = load_settings(Purpose.ADMIN, env)
    store = Store.from_url(settings.database_url)
    try:
        ws = Workspaces(store=store, box=SecretBox(settings.encryption_keys), settings=settings)
        await ws.set_key("T0TEAM001", MODELSLAB_KEY, by="cli:ops")
        await ws.allow("T0TEAM001", ["U0DAVE001"], by="cli:ops")
    finally:
        await store.close()
    items = await checklist(offline=True, env=env)
    assert all(mark(i) == "ok" for i in items), describe(items)


async def test_a_schema_from_a_newer_version_fails_the_check(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = valid_env(tmp_path)
    await first_start_done(env["DATABASE_URL"], tmp_path)
    store = Store.from_url(async_database_url(env["DATABASE_URL"]))
    try:
        async with store.engine.begin() as conn:
            await conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0999'")
    finally:
        await store.close()
    items = await checklist(offline=True, env=env)
    [failed] = [i for i in items if not i.ok]
    assert "DATABASE_URL" in failed.text and "0999" in failed.text and "newer" in failed.text


@dataclass(frozen=True)
class StartCase:
    """An environment, `check`'s arguments and the start command that must agree."""

    id: str
    overrides: dict[str, str]
    start: tuple[str, ...] = ()  # () = `python -m bot`, which picks the transport
    check: tuple[str, ...] = ()
    revoke: str | None = None  # "bot" or "app": Slack refuses that token


def _oauth(**more: str) -> dict[str, str]:
    return {
        "SLACK_CLIENT_ID": "1234.5678",
        "SLACK_CLIENT_SECRET": "abcdef0123",
        "BOT_ENCRYPTION_KEY": FERNET_KEY,
        "SLACK_BOT_TOKEN": "",
        "MODELSLAB_API_KEY": "",
        **more,
    }


START_CASES = [
    StartCase("single-http", {}),
    StartCase("single-http-no-signing-secret", {"SLACK_SIGNING_SECRET": ""}),
    StartCase("single-http-revoked-bot-token", {}, revoke="bot"),
    StartCase("single-socket", {"SLACK_APP_TOKEN": "app", "SLACK_SIGNING_SECRET": ""}),
    StartCase("single-socket-revoked-app-token", {"SLACK_APP_TOKEN": "app"}, revoke="app"),
    StartCase(
        "serve-with-an-app-token-but-no-signing-secret",
        {"SLACK_APP_TOKEN": "app", "SLACK_SIGNING_SECRET": ""},
        start=("serve",),
        check=("--serve",),
    ),
    StartCase("oauth-http", _oauth()),
    StartCase("oauth-http-no-encryption-key", _oauth(BOT_ENCRYPTION_KEY="")),
    StartCase("oauth-socket", _oauth(SLACK_APP_TOKEN="app", SLACK_SIGNING_SECRET="")),
]


async def start_verdict(env: dict[str, str], args: tuple[str, ...], cwd: Path) -> tuple[bool, str]:
    """Start the bot; True once it says it is ready, False if it exits first (then its stderr)."""
    from tests.harness import wait_until
    from tests.processes import bot_process

    port = free_port()
    async with bot_process({**env, "PORT": str(port)}, *args, cwd=cwd, port=None) as bot:
        await wait_until(
            lambda: bot.proc.returncode is not None or " ready: " in bot.err,
            timeout=30,
            what="the bot to start or exit",
        )
        if bot.proc.returncode is not None:
            await bot.terminate()
            return False, bot.err
        return True, bot.err


@pytest.mark.parametrize("case", START_CASES, ids=[c.id for c in START_CASES])
async def test_check_passes_exactly_when_the_bot_then_starts(
    case: StartCase, slack: FakeSlack, modelslab: FakeModelsLab, tmp_path: Path
) -> None:
    overrides = dict(case.overrides)
    if overrides.get("SLACK_APP_TOKEN") == "app":
        overrides["SLACK_APP_TOKEN"] = slack.app_token
    if case.revoke:
        slack.revoke(slack.bot_token if case.revoke == "bot" else slack.app_token)
    env = bot_env(slack, modelslab, f"sqlite:///{tmp_path / 'bot.db'}", **overrides)
    checked = await run_bot_cli(env, "check", *case.check, cwd=tmp_path)
    started, log = await start_verdict(env, case.start, tmp_path)
    assert (checked.code == 0) is started, (checked, log)
    assert "Traceback" not in checked.err + log
    if not started:
        # What stops the start is what `check` failed on.
        failed = [ln[7:] for ln in checked.out.splitlines() if ln.startswith("[FAIL] ")]
        assert failed, checked
        assert any(f.split(":")[0] in log for f in failed), (failed, log)


async def test_no_key_and_nobody_allowed_are_warned_by_check_the_start_up_log_and_readyz(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    """Once the bot started silently and the first cancel said "No modelslab api key is set"."""
    import aiohttp

    from tests.processes import serving

    bare = {"MODELSLAB_API_KEY": "", "CANCEL_ALLOWED_USERS": ""}
    checked = await run_bot_cli(
        bot_env(slack, modelslab, sqlite_url, **bare), "check", cwd=tmp_path
    )
    assert checked.code == 0, checked  # warnings: it starts, but no cancel can succeed
    warned = [ln[7:] for ln in checked.out.splitlines() if ln.startswith("[warn] ")]
    assert len(warned) == 2, checked.out
    assert "No ModelsLab key for workspace T0A1B2C3D" in warned[0], warned
    assert "allow-list of workspace T0A1B2C3D is empty" in warned[1], warned

    async with serving(slack, modelslab, sqlite_url, tmp_path, **bare) as bot:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{bot.url}/readyz") as resp,
        ):
            assert resp.status == 200
            ready = await resp.json()
        for warning in warned:
            assert warning in bot.err, (warning, bot.err)
            assert warning in ready["warnings"], ready

    # Both given: no such warning anywhere.
    async with serving(slack, modelslab, sqlite_url, tmp_path) as bot:
        async with aiohttp.ClientSession() as session, session.get(f"{bot.url}/readyz") as resp:
            ready = await resp.json()
        assert ready["warnings"] == [], ready
        assert "No ModelsLab key" not in bot.err and "nobody may cancel" not in bot.err


async def test_a_database_from_an_older_version_is_read_without_its_newer_tables(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from alembic import command

    from bot.store.migrations import alembic_config

    env = {k: v for k, v in valid_env(tmp_path).items() if k != "MODELSLAB_API_KEY"}
    store = Store.from_url(async_database_url(env["DATABASE_URL"]))
    try:
        async with store.engine.connect() as conn:  # the schema of an early version: no workspaces
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0002"))
            await conn.commit()
        await store.meta.set(TEAM_ID_META, "T0OLDSTORE")
    finally:
        await store.close()
    items = await checklist(offline=True, env=env)
    assert all(i.ok for i in items), describe(items)
    assert any("schema 0002" in i.text and "migrated" in i.text for i in items), describe(items)
    assert any("No ModelsLab key for workspace T0OLDSTORE" in i.text for i in items), describe(
        items
    )


async def test_an_offline_check_leaves_no_database_behind(tmp_path: Path) -> None:
    # Connecting to SQLite creates the file: a check of a fresh setup must not, or the first
    # start in another directory would look for data in the wrong place unnoticed.
    env = valid_env(tmp_path)
    items = await checklist(offline=True, env=env)
    assert not (tmp_path / "bot.db").exists()
    assert any("does not exist yet" in i.text and i.ok for i in items), describe(items)
