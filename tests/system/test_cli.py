"""`python -m bot cancel` as a user runs it: a real subprocess against the fake ModelsLab."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.model import Hold, Origin
from bot.store import Store
from tests.fakes import modelslab as ml
from tests.fakes.modelslab import FakeModelsLab
from tests.processes import run_bot_cli

V6_ID = "9b2c3d4e-1111-4222-8333-444455556666"


@pytest.fixture
def cli_env(modelslab: FakeModelsLab, database_url: str, store: Store) -> dict[str, str]:
    """The bot's variables for the subprocess (run_bot_cli adds what Python needs); depending on
    `store` gives it a migrated, empty database."""
    return {
        "DATABASE_URL": database_url,
        "MODELSLAB_API_URL": modelslab.base_url,
        "MODELSLAB_API_KEY": "good-key",
    }


async def test_cancel_accepted_prints_one_line_and_exits_0(
    cli_env, modelslab: FakeModelsLab
) -> None:
    run = await run_bot_cli(cli_env, "cancel", "F5jvdzGnYi", "--team", "T0A1B2C3D")
    assert run.code == 0, run
    assert "F5jvdzGnYi" in run.out and "cancel accepted" in run.out
    assert len(run.out.strip().splitlines()) == 1 and run.err == ""
    assert [c.path for c in modelslab.cancel_calls()] == ["/api/v3/cancle_training/F5jvdzGnYi"]
    # Asking again is answered from the store: already cancelled, no second call.
    again = await run_bot_cli(cli_env, "cancel", "F5jvdzGnYi", "--team", "T0A1B2C3D")
    assert again.code == 0 and "already cancelled" in again.out
    assert len(modelslab.cancel_calls()) == 1


async def test_other_spelling_and_v6(cli_env, modelslab: FakeModelsLab) -> None:
    modelslab.routes = {"cancel_training"}
    run = await run_bot_cli(cli_env, "cancel", "abc123", "--team", "T1")
    assert run.code == 0 and "cancel accepted" in run.out, run
    assert modelslab.cancel_calls()[-1].path == "/api/v3/cancel_training/abc123"
    v6 = await run_bot_cli(cli_env, "cancel", V6_ID, "--team", "T1")
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
    run = await run_bot_cli(cli_env, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == code, run
    assert words in run.out + run.err
    assert "Traceback" not in run.err and "good-key" not in run.out + run.err


async def test_html_error_pages_fail_cleanly(cli_env, modelslab: FakeModelsLab) -> None:
    modelslab.script("F5jvdzGnYi", ml.html(502))
    env = {**cli_env, "MODELSLAB_API_KEY": "secret-key-123"}
    modelslab.valid_keys.add("secret-key-123")
    run = await run_bot_cli(env, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == 1 and "failed" in run.out, run
    assert "Traceback" not in run.err and "secret-key-123" not in run.out + run.err


@pytest.mark.parametrize("bad", ["../x", "a/b", "x" * 65, "a b", ""])
async def test_malformed_ids_exit_2_without_a_call(
    cli_env, modelslab: FakeModelsLab, bad: str
) -> None:
    run = await run_bot_cli(cli_env, "cancel", bad, "--team", "T1")
    assert run.code == 2 and "Not a training id" in run.err and "Traceback" not in run.err
    assert modelslab.calls == []


async def test_missing_key_and_unreachable_modelslab(cli_env, modelslab: FakeModelsLab) -> None:
    no_key = {k: v for k, v in cli_env.items() if k != "MODELSLAB_API_KEY"}
    run = await run_bot_cli(no_key, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == 2 and "MODELSLAB_API_KEY" in run.err
    down = {**cli_env, "MODELSLAB_API_URL": "http://127.0.0.1:9/api/v3"}
    run = await run_bot_cli(down, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == 1 and "could not be reached" in run.out and "Traceback" not in run.err


async def test_dry_run_touches_nothing(cli_env, modelslab: FakeModelsLab) -> None:
    run = await run_bot_cli(cli_env, "cancel", "F5jvdzGnYi", "--team", "T1", "--dry-run")
    assert run.code == 0 and "dry run" in run.out, run
    assert modelslab.calls == []


async def test_bad_configuration_is_a_list_not_a_traceback(cli_env) -> None:
    env = {**cli_env, "DATABASE_URL": "mysql://x/y", "LOG_LEVEL": "LOUD"}
    run = await run_bot_cli(env, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == 2 and "DATABASE_URL" in run.err and "LOG_LEVEL" in run.err
    assert "Traceback" not in run.err


async def test_help_lists_the_commands(cli_env) -> None:
    run = await run_bot_cli(cli_env, "--help")
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
        run = await run_bot_cli(env, "cancel", "F5jvdzGnYi")
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
    run = await run_bot_cli(cli_env, "cancel", "F5jvdzGnYi", "--team", "T1")
    assert run.code == 1, run
    assert "probably cancelled (not confirmed)" in run.out


# --- the small truths a newcomer hits -------------------------------------------------------


@pytest.fixture
def bare_env() -> dict[str, str]:
    """Nothing configured: for what needs no database (run_bot_cli adds what Python needs)."""
    return {}


async def test_version_comes_from_the_package_metadata(bare_env) -> None:
    from importlib import metadata

    from tests.system.test_deploy_files import project_field

    run = await run_bot_cli(bare_env, "--version")
    assert run.code == 0, run
    assert run.out.strip() == f"cancel-training-bot {project_field('version')}"
    assert project_field("version") == metadata.version("cancel-training-bot")


@pytest.mark.parametrize(
    ("args", "shown"),
    [(("frobnicate",), "'frobnicate'"), (("sk-live-9f8e7d6c5b4a",), None), (("--verbose",), None)],
    ids=["typo", "pasted-secret", "unknown-option"],
)
async def test_an_unknown_command_names_the_valid_ones(bare_env, args, shown) -> None:
    run = await run_bot_cli(bare_env, *args)
    assert run.code == 2, run
    [message] = [ln for ln in run.err.splitlines() if "error:" in ln]
    for command in ("serve", "socket", "check", "notify", "cancel", "set-key", "workspaces"):
        assert command in message, message
    if shown:
        assert shown in message
    assert "sk-live" not in run.err and "Traceback" not in run.err
    # The list named is the parser's own.
    import argparse

    from bot.cli import COMMANDS, build_parser

    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(COMMANDS) == set(sub.choices)


async def test_cancel_exits_2_on_a_configuration_error(
    cli_env, modelslab: FakeModelsLab, tmp_path: Path
) -> None:
    from tests.fakes.slack import FakeSlack

    # Single workspace, no --team and nothing to learn it from: a configuration problem.
    run = await run_bot_cli(cli_env, "cancel", "F5jvdzGnYi")
    assert run.code == 2, run
    assert "--team" in run.err and "Traceback" not in run.err
    # OAuth mode serves many workspaces: --team is needed.
    oauth = {**cli_env, "SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s3"}
    oauth["BOT_ENCRYPTION_KEY"] = "Wk7OyqGqKZWXtN0Aj8T_cvbfHhcWhQRkfQ8bK3EV0dE="
    run = await run_bot_cli(oauth, "cancel", "F5jvdzGnYi")
    assert run.code == 2 and "--team" in run.err, run
    async with FakeSlack() as slack:
        env = {**cli_env, "SLACK_BOT_TOKEN": slack.bot_token, "SLACK_API_URL": slack.base_url}
        # A workspace this bot does not serve (it serves slack.team_id).
        run = await run_bot_cli(env, "cancel", "F5jvdzGnYi", "--team", "T0SOMEONE")
        assert run.code == 2, run
        assert slack.team_id in run.err and "T0SOMEONE" in run.err
        # A token Slack refuses (a database that has not learned the workspace yet).
        other = {**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.db'}"}
        slack.revoke(slack.bot_token)
        run = await run_bot_cli(other, "cancel", "F5jvdzGnYi")
        assert run.code == 2 and "token_revoked" in run.err, run
        assert slack.bot_token not in run.out + run.err
    assert modelslab.cancel_calls() == []


async def test_a_bad_app_token_is_one_line_and_leaks_no_session(
    modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    from tests.fakes.slack import FakeSlack
    from tests.harness import bot_env
    from tests.processes import run_bot_cli

    async with FakeSlack() as slack:
        slack.revoke(slack.app_token)
        env = bot_env(slack, modelslab, sqlite_url, SLACK_APP_TOKEN=slack.app_token)
        run = await run_bot_cli({**env, "LOG_LEVEL": "ERROR"}, "socket", cwd=tmp_path)
    assert run.code == 2, run
    assert "Unclosed client session" not in run.err, run.err
    [line] = run.err.strip().splitlines()
    assert "SLACK_APP_TOKEN" in line and "token_revoked" in line, line
    assert slack.app_token not in run.err


async def test_waiting_for_an_unreachable_postgresql_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    import bot.cli.common as cli
    from bot.config import Purpose, load_settings
    from bot.errors import StoreUnavailable
    from tests.harness import free_port

    # Design §3: up to 30 s, said every 5 s; shortened here to keep the test quick.
    assert (cli.DB_WAIT_SECONDS, cli.DB_PROGRESS_SECONDS) == (30.0, 5.0)
    monkeypatch.setattr(cli, "DB_WAIT_SECONDS", 3.0)
    monkeypatch.setattr(cli, "DB_PROGRESS_SECONDS", 1.0)
    url = f"postgresql://bot:pw-Secret9@127.0.0.1:{free_port()}/bot"
    settings = load_settings(Purpose.CANCEL, {"DATABASE_URL": url})
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await cli.open_store(settings)
    took = time.monotonic() - started
    err = capsys.readouterr().err
    notes = [ln for ln in err.splitlines() if ln.startswith("waiting for the database…")]
    assert len(notes) >= 2, err
    assert notes[0].endswith("(1 s)") and notes[1].endswith("(2 s)"), notes
    assert 2.5 < took < 6, took
    assert "pw-Secret9" not in err


async def test_the_first_message_with_no_configuration_names_everything_needed(
    tmp_path: Path,
) -> None:
    from tests.processes import run_bot_cli

    run = await run_bot_cli({}, cwd=tmp_path)  # `python -m bot`, nothing configured
    assert run.code == 2, run
    assert "Traceback" not in run.err
    assert ".env.example" in run.err and "HTTP server" in run.err, run.err
    problems = [ln for ln in run.err.splitlines() if ln.startswith("  - ")]
    missing = [p for p in problems if " is missing" in p]
    assert {p.split()[1] for p in missing} == {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"}, problems
    warnings = run.err.split("Warnings", 1)[1]
    assert "MODELSLAB_API_KEY" in warnings and "CANCEL_ALLOWED_USERS" in warnings, run.err

    # With an app token, `python -m bot` is Socket Mode, which needs no signing secret.
    run = await run_bot_cli({"SLACK_APP_TOKEN": "xapp-1-A1-2-abc"}, cwd=tmp_path)
    assert run.code == 2 and "Socket Mode" in run.err, run
    assert "SLACK_BOT_TOKEN is missing" in run.err and "SLACK_SIGNING_SECRET" not in run.err


async def test_a_run_from_a_subdirectory_does_not_use_the_parents_dotenv(
    tmp_path: Path,
) -> None:
    from tests.processes import run_bot_cli

    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-from-parent\n")
    sub = tmp_path / "scripts"
    sub.mkdir()
    run = await run_bot_cli({}, "check", "--offline", cwd=sub)
    assert "no .env in the working directory" in run.out, run
    assert "SLACK_BOT_TOKEN is missing" in run.out, run
    assert not list(sub.glob("*.db")), "check created a database"
    here = await run_bot_cli({}, "check", "--offline", cwd=tmp_path)
    assert str(tmp_path / ".env") in here.out and "SLACK_BOT_TOKEN is missing" not in here.out


async def test_cancel_of_a_held_training_says_what_it_waits_for(
    cli_env, store: Store, modelslab: FakeModelsLab
) -> None:
    # Someone asked in Slack under the two-person rule: the terminal must not wait 40 s and
    # then blame "another instance", nor call ModelsLab around the approval.
    await store.cancellations.enqueue(
        workspace_id="T0A1B2C3D",
        training_id="F5jvdzGnYi",
        requested_by="U0BOB0001",
        origin=Origin.COMMAND.value,
        hold=Hold.APPROVAL,
        held_until=time.time() + 900,
    )
    run = await run_bot_cli(cli_env, "cancel", "F5jvdzGnYi", "--team", "T0A1B2C3D")
    assert run.code == 1, run
    assert "held for an approval in Slack" in run.out and "U0BOB0001" in run.out, run
    assert modelslab.cancel_calls() == []
