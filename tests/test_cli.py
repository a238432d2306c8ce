"""`python -m bot cancel` as a user runs it: a real subprocess against the fake ModelsLab."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.store import Store
from tests.fakes import modelslab as ml
from tests.fakes.modelslab import FakeModelsLab

V6_ID = "9b2c3d4e-1111-4222-8333-444455556666"


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli_env(modelslab: FakeModelsLab, database_url: str, store: Store) -> dict[str, str]:
    """Environment for the subprocess; depending on `store` gives it a migrated, empty database."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    return {
        **keep,
        "DATABASE_URL": database_url,
        "MODELSLAB_API_URL": modelslab.base_url,
        "MODELSLAB_API_KEY": "good-key",
        "PYTHONPATH": str(Path(__file__).parent.parent),
    }


async def run_cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_cancel_accepted_prints_one_line_and_exits_0(
    cli_env, modelslab: FakeModelsLab
) -> None:
    run = await run_cli(cli_env, "cancel", "F5jvdzGnYi", "--team", "T0A1B2C3D")
    assert run.code == 0, run
    assert "F5jvdzGnYi" in run.out and "cancel accepted" in run.out
    assert len(run.out.strip().splitlines()) == 1 and run.err == ""
    assert [c.path for c in modelslab.cancel_calls()] == ["/api/v3/cancle_training/F5jvdzGnYi"]
    # Asking again is answered from the store: already cancelled, no second call.
    again = await run_cli(cli_env, "cancel", "F5jvdzGnYi", "--team", "T0A1B2C3D")
    assert again.code == 0 and "already cancelled" in again.out
    assert len(modelslab.cancel_calls()) == 1


async def test_other_spelling_and_v6(cli_env, modelslab: FakeModelsLab) -> None:
    modelslab.routes = {"cancel_training"}
    run = await run_cli(cli_env, "cancel", "abc123", "--team", "T1")
    assert run.code == 0 and "cancel accepted" in run.out, run
    assert modelslab.cancel_calls()[-1].path == "/api/v3/cancel_training/abc123"
    v6 = await run_cli(cli_env, "cancel", V6_ID, "--team", "T1")
    assert v6.code == 0 and "stopped" in v6.out, v6
    assert modelslab.cancel_calls()[-1].path == "/api/v6/trainer/stop"
    assert modelslab.cancel_calls()[-1].json == {"key": "good-key", "training_id": V6_ID}


@pytest.mark.parametrize(
    ("reply", "code", "words"),
    [
        (ml.json_404(), 1, "not found"),
        (ml.error("Training already completed"), 1, "Training already completed"),
        (ml.unauthorized(), 1, "API key"),
        (ml.rate_limited(retry_after=120), 3, "retry at"),
    ],
)
async def test_failures_say_why_in_one_line(
    cli_env, modelslab: FakeModelsLab, reply, code: int, words: str
) -> None:
    modelslab.script("F5jvdzGnYi", reply)
    run = await run_cli(cli_env, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == code, run
    assert words in run.out + run.err
    assert "Traceback" not in run.err and "good-key" not in run.out + run.err


async def test_html_error_pages_fail_cleanly(cli_env, modelslab: FakeModelsLab) -> None:
    modelslab.script("F5jvdzGnYi", ml.html(502))
    env = {**cli_env, "MODELSLAB_API_KEY": "secret-key-123"}
    modelslab.valid_keys.add("secret-key-123")
    run = await run_cli(env, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == 1 and "failed" in run.out, run
    assert "Traceback" not in run.err and "secret-key-123" not in run.out + run.err


@pytest.mark.parametrize("bad", ["../x", "a/b", "x" * 65, "a b", ""])
async def test_malformed_ids_exit_2_without_a_call(
    cli_env, modelslab: FakeModelsLab, bad: str
) -> None:
    run = await run_cli(cli_env, "cancel", bad, "--team", "T1")
    assert run.code == 2 and "Not a training id" in run.err and "Traceback" not in run.err
    assert modelslab.calls == []


async def test_missing_key_and_unreachable_modelslab(cli_env, modelslab: FakeModelsLab) -> None:
    no_key = {k: v for k, v in cli_env.items() if k != "MODELSLAB_API_KEY"}
    run = await run_cli(no_key, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == 2 and "MODELSLAB_API_KEY" in run.err
    down = {**cli_env, "MODELSLAB_API_URL": "http://127.0.0.1:9/api/v3"}
    run = await run_cli(down, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == 1 and "could not be reached" in run.out and "Traceback" not in run.err


async def test_dry_run_touches_nothing(cli_env, modelslab: FakeModelsLab) -> None:
    run = await run_cli(cli_env, "cancel", "F5jvdzGnYi", "--team", "T1", "--dry-run")
    assert run.code == 0 and "dry run" in run.out, run
    assert modelslab.calls == []


async def test_bad_configuration_is_a_list_not_a_traceback(cli_env) -> None:
    env = {**cli_env, "DATABASE_URL": "mysql://x/y", "LOG_LEVEL": "LOUD"}
    run = await run_cli(env, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == 2 and "DATABASE_URL" in run.err and "LOG_LEVEL" in run.err
    assert "Traceback" not in run.err


async def test_help_lists_the_commands(cli_env) -> None:
    run = await run_cli(cli_env, "--help")
    assert run.code == 0
    for command in ("serve", "socket", "check", "notify", "cancel"):
        assert command in run.out


async def test_terminal_cancel_is_reported_in_the_thread_and_audit_channel(
    cli_env, modelslab, store: Store
) -> None:
    from tests.fakes.slack import FakeSlack

    async with FakeSlack() as slack:
        note = slack.add_message(
            "C0TRAIN01",
            "Training F5jvdzGnYi is running",
            user=slack.bot_user_id,
            bot_id=slack.bot_id,
        )
        await store.notifications.save(
            workspace_id=slack.team_id,
            training_id="F5jvdzGnYi",
            channel_id="C0TRAIN01",
            message_ts=note.ts,
        )
        env = {
            **cli_env,
            "SLACK_BOT_TOKEN": slack.bot_token,
            "SLACK_API_URL": slack.base_url,
            "AUDIT_CHANNEL": "C0AUDIT01",
        }
        run = await run_cli(env, "cancel", "F5jvdzGnYi")
        assert run.code == 0, run
        posts = slack.calls_to("chat.postMessage")
        reply = [p for p in posts if p.args.get("thread_ts") == note.ts]
        audit = [p for p in posts if p.args["channel"] == "C0AUDIT01"]
        assert len(reply) == 1 and len(audit) == 1
        assert "(terminal)" in reply[0].args["text"] and "via cli" in reply[0].args["text"]
        assert slack.calls_to("chat.update")
        # The workspace came from auth.test and is cached for the next run.
        assert await store.meta.get("single_workspace_team_id") == slack.team_id


async def test_probably_cancelled_is_not_a_confirmed_success(
    cli_env, modelslab: FakeModelsLab
) -> None:
    modelslab.script("F5jvdzGnYi", ml.server_error(502), ml.error("Training already finished"))
    run = await run_cli(cli_env, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == 1, run
    assert "probably cancelled (not confirmed)" in run.out
