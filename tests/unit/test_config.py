"""Configuration: one clear error for every problem, URLs as users paste them, .env underneath."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Mode, Purpose, async_database_url, load_settings, read_environment
from bot.errors import ConfigError

GOOD = {
    "SLACK_BOT_TOKEN": "xoxb-1-abc",
    "SLACK_SIGNING_SECRET": "0123456789abcdef0123",
    "MODELSLAB_API_KEY": "ml-key",
}


def test_every_problem_is_named_at_once() -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxp-user",
        "CANCEL_ALLOWED_USERS": "alice,U123",
        "LOG_FORMAT": "xml",
    }
    with pytest.raises(ConfigError) as info:
        load_settings(Purpose.SERVE, env)
    text = "\n".join(info.value.problems)
    assert "xoxb-" in text and "SLACK_SIGNING_SECRET" in text
    assert "alice" in text and "LOG_FORMAT" in text
    assert len(info.value.problems) == 4


def test_serve_needs_token_and_signing_secret_but_cancel_does_not() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(Purpose.SERVE, {})
    assert {p.split()[0] for p in info.value.problems} == {
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
    }
    assert load_settings(Purpose.CANCEL, {"MODELSLAB_API_KEY": "k"}).modelslab_api_key == "k"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("postgres://u:p@h:5432/db", "postgresql+psycopg://u:p@h:5432/db"),
        ("postgresql://u@h/db?sslmode=require", "postgresql+psycopg://u@h/db?sslmode=require"),
    ],
)
def test_database_urls_as_users_write_them(raw: str, expected: str) -> None:
    assert async_database_url(raw) == expected


def test_default_database_is_a_sqlite_file_in_the_working_directory(tmp_path: Path) -> None:
    assert (
        async_database_url(None, cwd=tmp_path)
        == f"sqlite+aiosqlite:///{tmp_path}/cancel-training.db"
    )


@pytest.mark.parametrize("raw", ["mysql://h/db", "cancel.db", "sqlite://"])
def test_unsupported_database_urls_are_explained(raw: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        load_settings(Purpose.CANCEL, {"DATABASE_URL": raw})


def test_oauth_mode_is_explicit_and_drops_the_bot_token() -> None:
    from cryptography.fernet import Fernet

    env = {
        **GOOD,
        "SLACK_CLIENT_ID": "1.2",
        "SLACK_CLIENT_SECRET": "s3",
        "BOT_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    settings = load_settings(Purpose.SERVE, env)
    assert settings.mode is Mode.OAUTH and settings.slack_bot_token is None
    assert any("ignored" in w for w in settings.warnings)


def test_oauth_without_encryption_key_is_refused() -> None:
    env = {**GOOD, "SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s3"}
    with pytest.raises(ConfigError, match="BOT_ENCRYPTION_KEY"):
        load_settings(Purpose.SERVE, env)


def test_secrets_stay_out_of_repr() -> None:
    settings = load_settings(Purpose.SERVE, GOOD)
    assert "xoxb-1-abc" not in repr(settings) and "ml-key" not in repr(settings)
    assert "ml-key" in settings.secrets


def test_v6_url_is_needed_when_the_v3_url_has_no_v3() -> None:
    with pytest.raises(ConfigError, match="MODELSLAB_V6_URL"):
        load_settings(Purpose.CANCEL, {"MODELSLAB_API_URL": "http://127.0.0.1:9/api"})


def test_dotenv_never_overrides_the_real_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("MODELSLAB_API_KEY=from-file\nLOG_LEVEL=DEBUG\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELSLAB_API_KEY", "from-env")
    env = read_environment()
    assert env["MODELSLAB_API_KEY"] == "from-env" and env["LOG_LEVEL"] == "DEBUG"


# --- where settings come from, and what an empty one means -----------------------------------


def test_dotenv_is_read_from_the_working_directory_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `.env` in a parent directory is not used: with it, a run from a subdirectory would use
    that checkout's settings but a second, empty default database in the subdirectory."""
    (tmp_path / ".env").write_text("MODELSLAB_API_KEY=from-parent\n")
    sub = tmp_path / "scripts"
    sub.mkdir()
    monkeypatch.chdir(sub)
    monkeypatch.delenv("MODELSLAB_API_KEY", raising=False)
    assert "MODELSLAB_API_KEY" not in read_environment()
    monkeypatch.chdir(tmp_path)
    assert read_environment()["MODELSLAB_API_KEY"] == "from-parent"


def test_an_empty_real_variable_is_unset_so_dotenv_still_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `docker run --env-file` with `PORT=` sets PORT to "": that is no value, not "no port".
    (tmp_path / ".env").write_text("PORT=8080\nLOG_LEVEL=DEBUG\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "")
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    env = read_environment()
    assert env["PORT"] == "8080" and env["LOG_LEVEL"] == "WARNING"
    assert load_settings(Purpose.SERVE, {**GOOD, **env}).port == 8080


def test_every_variable_set_empty_is_the_same_as_unset() -> None:
    """`.env.example` has `NAME=` lines; `docker run --env-file .env` passes them as "". Each one
    must mean exactly what leaving it out means."""
    from bot.config import ENV_VARS

    base = load_settings(Purpose.SERVE, GOOD)
    for name in ENV_VARS:
        if name in GOOD:
            continue
        assert load_settings(Purpose.SERVE, {**GOOD, name: ""}) == base, name
        assert load_settings(Purpose.SERVE, {**GOOD, name: "  "}) == base, name


# --- the one rule `check` and the commands share ---------------------------------------------


@pytest.mark.parametrize(
    ("env", "purpose", "needs"),
    [
        ({}, Purpose.SERVE, {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"}),
        ({"SLACK_APP_TOKEN": "xapp-1"}, Purpose.SOCKET, {"SLACK_BOT_TOKEN"}),
        (
            {"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s"},
            Purpose.SERVE,
            {"BOT_ENCRYPTION_KEY", "SLACK_SIGNING_SECRET"},
        ),
        (
            {"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s", "SLACK_APP_TOKEN": "xapp-1"},
            Purpose.SOCKET,
            {"BOT_ENCRYPTION_KEY"},
        ),
    ],
    ids=["single-http", "single-socket", "oauth-http", "oauth-socket"],
)
def test_python_m_bot_picks_the_transport_and_names_every_missing_setting(
    env: dict[str, str], purpose: Purpose, needs: set[str]
) -> None:
    from bot.config import run_purpose

    assert run_purpose(env) is purpose
    with pytest.raises(ConfigError) as info:
        load_settings(purpose, env)
    assert {p.split()[0] for p in info.value.problems} == needs
    mode = "OAuth" if "SLACK_CLIENT_ID" in env else "single workspace"
    how = "Socket Mode" if purpose is Purpose.SOCKET else "HTTP server"
    assert info.value.context is not None
    assert mode in info.value.context and how in info.value.context
    # Not stopping the start, but said with what does: single workspace, no key, nobody allowed.
    said = " ".join(info.value.warnings)
    single = "SLACK_CLIENT_ID" not in env
    assert ("No ModelsLab key" in said) is single and ("nobody may cancel" in said) is single


def test_oauth_in_socket_mode_without_port_warns_that_nobody_can_install() -> None:
    from cryptography.fernet import Fernet

    env = {
        "SLACK_CLIENT_ID": "123.456",
        "SLACK_CLIENT_SECRET": "secret",
        "SLACK_APP_TOKEN": "xapp-1-abc",
        "BOT_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    without = load_settings(Purpose.SOCKET, env)
    assert any("/slack/install" in w and "PORT" in w for w in without.warnings), without.warnings
    with_port = load_settings(Purpose.SOCKET, {**env, "PORT": "3000"})
    assert not any("/slack/install" in w for w in with_port.warnings)
