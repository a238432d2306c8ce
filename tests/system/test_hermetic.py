"""The suite is hermetic: a `.env` where the tests run (the README tells users to create one in
the checkout) changes no test's result.

The bot reads `.env` from its working directory (design §2), so every way
the tests start `python -m bot` must run it somewhere else unless a test chooses the directory.
Here the test run's own working directory holds a hostile `.env`, and each such path is run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.store import Store
from tests.fakes.modelslab import FakeModelsLab
from tests.processes import run_bot_cli

HOSTILE = """\
# What a developer's .env in the checkout may well say.
SLACK_CLIENT_ID=111.222
SLACK_CLIENT_SECRET=from-the-dotenv
SLACK_BOT_TOKEN=xoxb-from-the-dotenv
MODELSLAB_API_KEY=key-from-the-dotenv
CANCEL_DRY_RUN=1
LOG_LEVEL=LOUD
AUDIT_CHANNEL=C0DOTENV1
"""


@pytest.fixture
def hostile_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test run's working directory, with a `.env` every subprocess would trip over."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".env").write_text(HOSTILE)
    monkeypatch.chdir(checkout)
    return checkout


async def test_the_cli_tests_ignore_a_dotenv_in_the_working_directory(
    hostile_cwd: Path, modelslab: FakeModelsLab, database_url: str, store: Store
) -> None:
    env = {
        "DATABASE_URL": database_url,
        "MODELSLAB_API_URL": modelslab.base_url,
        "MODELSLAB_API_KEY": "good-key",
    }
    # What test_cli's tests do: a real cancel, not a dry run, with the key they gave.
    run = await run_bot_cli(env, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == 0 and "cancel accepted" in run.out and "dry run" not in run.out, run
    assert [c.json for c in modelslab.cancel_calls()] == [{"key": "good-key"}]
    # And without a key they say so, rather than finding one in the .env.
    no_key = {k: v for k, v in env.items() if k != "MODELSLAB_API_KEY"}
    run = await run_bot_cli(no_key, "cancel", "Other00001", "--team", "T1")
    assert run.code == 2 and "MODELSLAB_API_KEY" in run.err, run
    assert "LOG_LEVEL" not in run.err


async def test_the_operator_cli_tests_ignore_a_dotenv_in_the_working_directory(
    hostile_cwd: Path, modelslab: FakeModelsLab, database_url: str, store: Store
) -> None:
    env = {"DATABASE_URL": database_url, "MODELSLAB_API_URL": modelslab.base_url}
    run = await run_bot_cli(env, "workspaces")
    # Single-workspace mode (no OAuth variables given) and a valid configuration.
    assert run.code == 0, run
    assert "LOG_LEVEL" not in run.text and "OAuth" not in run.text


async def test_the_process_helpers_ignore_a_dotenv_in_the_working_directory(
    hostile_cwd: Path, tmp_path: Path, sqlite_url: str
) -> None:
    env = {"DATABASE_URL": sqlite_url}
    clean = tmp_path / "clean"
    clean.mkdir()
    default = await run_bot_cli(env, "check", "--offline")
    chosen = await run_bot_cli(env, "check", "--offline", cwd=clean)
    assert (default.code, default.out) == (chosen.code, chosen.out)
    assert "LOG_LEVEL" not in default.out + default.err
    # The control: in the directory with the .env, the bot does read it.
    there = await run_bot_cli(env, "check", "--offline", cwd=hostile_cwd)
    assert "LOG_LEVEL" in there.out + there.err
