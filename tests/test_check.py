"""`python -m bot check [--offline]` and `bot.check.checklist` (design §3: commands, exit codes).

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

from bot.check import Item, checklist, run_check
from bot.config import ENV_VARS, async_database_url
from bot.store import Store
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.harness import bot_env
from tests.processes import free_port, run_bot_cli

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


# --- offline: a valid configuration ------------------------------------------------------


async def test_offline_check_of_a_valid_configuration_exits_0(
    slack: FakeSlack, modelslab: FakeModelsLab, tmp_path: Path
) -> None:
    env = valid_env(tmp_path)
    # Point the URLs at the fakes: offline must not call them at all.
    env["SLACK_API_URL"], env["MODELSLAB_API_URL"] = slack.base_url, modelslab.base_url
    env["MODELSLAB_V6_URL"] = modelslab.v6_url
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
    assert all(mark(i) == "ok" for i in items), describe(items)
    assert any("database" in i.text for i in items), describe(items)

    # Once migrated (as the bot does at start), the schema is reported current.
    store = Store.from_url(async_database_url(env["DATABASE_URL"]))
    try:
        await store.migrate()
    finally:
        await store.close()
    items = await checklist(offline=True, env=env)
    assert all(mark(i) == "ok" for i in items), describe(items)
    assert any("schema current" in i.text for i in items), describe(items)

    # The default database (DATABASE_URL unset) is a SQLite file in the working directory.
    env.pop("DATABASE_URL")
    items = await checklist(offline=True, env=env)
    assert all(mark(i) == "ok" for i in items), describe(items)


# --- warnings ----------------------------------------------------------------------------


async def test_heroku_with_sqlite_is_a_warning(
    environ: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = valid_env(tmp_path)
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
    # A missing key is only reported online: that case runs against the fakes.
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
