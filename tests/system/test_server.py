"""`python -m bot serve` (and `notify`, `check`) as real subprocesses against the fakes (design §8)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.fakes import modelslab as ml
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import (
    block_actions_payload,
    form_payload_body,
    slash_command_body,
)
from tests.harness import ALICE, BOB, CAROL, CHANNEL, TRAINING, bot_env, free_port, wait_until
from tests.processes import (
    STOP_TIMEOUT,
    buttons,
    in_thread,
    notify,
    post_signed,
    press_card,
    rows,
    run_bot_cli,
    serving,
)

# --- tests ---------------------------------------------------------------------------------


async def test_notify_then_button_click_cancels_once_and_reports_in_the_thread(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    async with serving(slack, modelslab, sqlite_url, tmp_path) as bot:
        note = await notify(slack, modelslab, sqlite_url, tmp_path, TRAINING)
        [button] = buttons(note)
        assert button["style"] == "danger" and button["value"] == TRAINING
        assert button["action_id"] == "cancel_training" and "confirm" in button
        assert "LoRA run" in note.text + json.dumps(note.blocks)

        payload = block_actions_payload(
            value=TRAINING,
            user_id=BOB,
            user_name="bob",
            channel_id=CHANNEL,
            message_ts=note.ts,
            blocks=note.blocks,
            text=note.text,
            response_url=slack.response_url("click"),
        )
        status, _, took = await post_signed(slack, bot.url or "", form_payload_body(payload))
        assert status == 200 and took < 2.5, (status, took)

        await modelslab.wait_for_calls(1, timeout=10)
        replies = await slack.wait_for(
            "chat.postMessage", where=in_thread(CHANNEL, note.ts), timeout=10
        )
        reply = replies[0].args["text"]
        assert f"<@{BOB}>" in reply and TRAINING in reply and "cancel accepted" in reply

        def settled() -> bool:
            return any(
                not buttons(c.args)
                for c in slack.calls_to("chat.update")
                if c.args["ts"] == note.ts
            )

        await wait_until(settled, timeout=10, what="a chat.update without a button")
        assert buttons(note) == [], "the stored notification still shows a button"
        assert len(slack.thread(CHANNEL, note.ts)) == 1
        assert len(modelslab.cancel_calls(TRAINING)) == 1
        assert [(r.state, r.origin, r.requested_by) for r in await rows(sqlite_url)] == [
            ("cancelled", "button", BOB)
        ]


async def test_slash_command_with_payload_in_channel_name_and_a_refused_user(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    async with serving(slack, modelslab, sqlite_url, tmp_path) as bot:
        body = slash_command_body(
            text=TRAINING,
            channel_name="payload-alerts",
            response_url=slack.response_url("cmd"),
        )
        status, text, took = await post_signed(slack, bot.url or "", body)
        assert status == 200 and took < 2.5, (status, text, took)
        ack = await press_card(bot.url or "", slack, text, "card")
        assert ack["response_type"] == "ephemeral" and "Cancelling training" in str(ack["text"])

        await modelslab.wait_for_calls(1, timeout=10)
        parent = (await slack.wait_for("chat.postMessage", timeout=10))[0]
        assert parent.args["channel"] == CHANNEL and "thread_ts" not in parent.args
        parent_ts = slack.messages[CHANNEL][0].ts
        reply = (
            await slack.wait_for(
                "chat.postMessage", where=in_thread(CHANNEL, parent_ts), timeout=10
            )
        )[0].args["text"]
        assert f"<@{ALICE}>" in reply and TRAINING in reply and "cancel accepted" in reply

        other = "Zz9refused"
        body = slash_command_body(
            text=other,
            user_id=CAROL,
            user_name="carol",
            channel_name="payload-alerts",
            response_url=slack.response_url("carol"),
        )
        status, text, _ = await post_signed(slack, bot.url or "", body)
        assert status == 200, (status, text)
        refusal = json.loads(text)
        assert refusal["response_type"] == "ephemeral" and "Cancelling" not in refusal["text"]
        assert "allow" in refusal["text"].lower(), refusal
        # Refused before the claim: no row, so no worker can ever call ModelsLab for it.
        assert [r.training_id for r in await rows(sqlite_url)] == [TRAINING]
        assert modelslab.cancel_calls(other) == [] and len(modelslab.cancel_calls()) == 1


async def test_sigterm_during_a_hanging_call_exits_0_and_a_restart_completes_it(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    modelslab.script(TRAINING, ml.hang())
    async with serving(slack, modelslab, sqlite_url, tmp_path) as bot:
        body = slash_command_body(text=TRAINING, response_url=slack.response_url("cmd"))
        status, text, _ = await post_signed(slack, bot.url or "", body)
        assert status == 200
        ack = await press_card(bot.url or "", slack, text, "card")
        assert "Cancelling training" in str(ack["text"])
        await modelslab.wait_for_calls(1, timeout=10)
        code, took = await bot.terminate()
        assert code == 0 and took < STOP_TIMEOUT, (code, took, bot.describe())

    # Nothing is lost: the row is still in the middle of its call, and the stopping process
    # handed its lease back so the next instance takes it at once (not after 45 s).
    [row] = await rows(sqlite_url)
    assert row.state == "calling" and row.lease_owner is None and row.lease_expires_at is None, row
    calls_before = len(modelslab.cancel_calls(TRAINING))

    modelslab.script(TRAINING, ml.ok())
    async with serving(slack, modelslab, sqlite_url, tmp_path):
        await modelslab.wait_for_calls(calls_before + 1, timeout=15)
        # The "Cancelling…" announcement may not have gone out before SIGTERM: the call is
        # handed to the worker as it is claimed, the announcement waits for the reporter.
        await slack.wait_for(
            "chat.postMessage",
            where=lambda c: c.args.get("channel") == CHANNEL and not c.args.get("thread_ts"),
            timeout=10,
        )
        parent_ts = slack.messages[CHANNEL][0].ts
        replies = await slack.wait_for(
            "chat.postMessage", where=in_thread(CHANNEL, parent_ts), timeout=10
        )
        text = replies[0].args["text"]
        assert TRAINING in text and f"<@{ALICE}>" in text and "cancel accepted" in text
    assert len(modelslab.cancel_calls(TRAINING)) == calls_before + 1
    [done] = await rows(sqlite_url)
    assert done.state == "cancelled" and done.id == row.id


@pytest.mark.skipif(
    not os.environ.get("RUN_SLOW_TESTS"), reason="waits out the real 45 s lease (RUN_SLOW_TESTS=1)"
)
async def test_a_restart_completes_the_interrupted_call_when_the_real_lease_expires(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    modelslab.script(TRAINING, ml.hang())
    async with serving(slack, modelslab, sqlite_url, tmp_path) as bot:
        body = slash_command_body(text=TRAINING, response_url=slack.response_url("cmd"))
        status, text, _ = await post_signed(slack, bot.url or "", body)
        assert status == 200
        await press_card(bot.url or "", slack, text, "card")
        await modelslab.wait_for_calls(1, timeout=10)
        code, _ = await bot.terminate()
        assert code == 0
    [row] = await rows(sqlite_url)
    assert row.state == "calling" and row.lease_expires_at is not None
    calls_before = len(modelslab.cancel_calls(TRAINING))
    modelslab.script(TRAINING, ml.ok())
    async with serving(slack, modelslab, sqlite_url, tmp_path):
        wait = row.lease_expires_at - time.time() + 15
        await modelslab.wait_for_calls(calls_before + 1, timeout=wait)
        assert time.time() >= row.lease_expires_at
        parent_ts = slack.messages[CHANNEL][0].ts
        await slack.wait_for("chat.postMessage", where=in_thread(CHANNEL, parent_ts), timeout=10)
    [done] = await rows(sqlite_url)
    assert done.state == "cancelled"


async def test_notify_failures_are_one_readable_line(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    env = bot_env(slack, modelslab, sqlite_url)
    slack.channels_without_bot.add("C0NOBOT01")
    run = await run_bot_cli(env, "notify", TRAINING, "--channel", "C0NOBOT01", cwd=tmp_path)
    assert run.code == 1, run
    assert "Traceback" not in run.err and len(run.err.strip().splitlines()) == 1, run
    assert "not_in_channel" in run.err and "/invite" in run.err
    assert slack.messages.get("C0NOBOT01", []) == []

    posts = len(slack.calls_to("chat.postMessage"))
    run = await run_bot_cli(env, "notify", TRAINING, "--channel", "#general", cwd=tmp_path)
    assert run.code == 2, run
    assert "Traceback" not in run.err and "channel ID" in run.err
    assert len(slack.calls_to("chat.postMessage")) == posts


async def test_broken_configuration_and_revoked_token_stop_start_up_readably(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    port = str(free_port())
    serve = ("serve", "--host", "127.0.0.1", "--port", port)
    broken = bot_env(slack, modelslab, sqlite_url, SLACK_BOT_TOKEN="xoxp-bad", LOG_LEVEL="LOUD")
    run = await run_bot_cli(broken, *serve, cwd=tmp_path)
    assert run.code == 2, run
    assert "SLACK_BOT_TOKEN" in run.err and "xoxb-" in run.err and "LOG_LEVEL" in run.err
    assert "Traceback" not in run.err and "xoxp-bad" not in run.out + run.err

    slack.revoke(slack.bot_token)
    run = await run_bot_cli(bot_env(slack, modelslab, sqlite_url), *serve, cwd=tmp_path)
    assert run.code != 0, run
    assert "token_revoked" in run.err and "SLACK_BOT_TOKEN" in run.err, run
    assert "Traceback" not in run.err and slack.bot_token not in run.out + run.err


async def test_check_offline_and_online(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    env = bot_env(slack, modelslab, sqlite_url)
    run = await run_bot_cli(env, "check", "--offline", cwd=tmp_path)
    assert run.code == 0, run
    assert "All checks passed" in run.out and slack.calls == [] and modelslab.calls == []

    bad = {**env, "CANCEL_ALLOWED_USERS": "alice,U0BOB0001", "AUDIT_CHANNEL": "#audit"}
    run = await run_bot_cli(bad, "check", "--offline", cwd=tmp_path)
    assert run.code != 0, run
    listing = run.out + run.err
    assert "CANCEL_ALLOWED_USERS" in listing and "alice" in listing and "AUDIT_CHANNEL" in listing
    assert "Traceback" not in run.err

    run = await run_bot_cli(env, "check", cwd=tmp_path)
    assert run.code == 0, run
    assert len(slack.calls_to("auth.test")) == 1
    assert [c.path for c in modelslab.calls] == ["/api/v3/finetune_list"]
    assert modelslab.calls[0].key == "good-key" and "good-key" not in run.out + run.err
