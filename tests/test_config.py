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
