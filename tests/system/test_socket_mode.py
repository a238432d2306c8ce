"""`python -m bot socket` as a real subprocess against the fake Slack's Socket Mode (design §5, §8).

The fake's `apps.connections.open` hands out a ws:// loopback URL; the test sends envelopes on it
the way Slack does and reads the app's acks back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import block_actions_payload, slash_command_fields
from tests.harness import ALICE, BOB, CAROL, CHANNEL, TRAINING, bot_env, free_port, wait_until
from tests.processes import bot_process, buttons, in_thread, notify, rows, socket_cancel

BUTTON_TRAINING = "LoRAbtn001"
AFTER_RECONNECT = "Recon00001"


async def test_socket_mode_commands_buttons_reconnect_and_health(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = bot_env(slack, modelslab, sqlite_url, SLACK_APP_TOKEN=slack.app_token, PORT=str(port))
    async with bot_process(env, "socket", cwd=tmp_path, port=port) as bot:
        # /healthz answered (bot_process waited for it): the HTTP routes run beside Socket Mode.
        await slack.socket_connected(timeout=20)
        assert [c.token for c in slack.calls_to("apps.connections.open")][-1] == slack.app_token

        # A slash command: the ack carries the ephemeral answer; the outcome lands in a thread.
        answer = await socket_cancel(slack, TRAINING, "sock")
        assert answer["response_type"] == "ephemeral", answer
        assert "Cancelling training" in answer["text"], answer
        await modelslab.wait_for_calls(1, timeout=10)
        parent = (await slack.wait_for("chat.postMessage", timeout=10))[0]
        assert parent.args["channel"] == CHANNEL
        parent_ts = slack.messages[CHANNEL][0].ts
        reply = (
            await slack.wait_for(
                "chat.postMessage", where=in_thread(CHANNEL, parent_ts), timeout=10
            )
        )[0].args["text"]
        assert f"<@{ALICE}>" in reply and TRAINING in reply and "cancel accepted" in reply
        assert len(modelslab.cancel_calls(TRAINING)) == 1

        # A refused user is answered in the ack itself and nothing is called.
        refused = await slack.send_envelope(
            "slash_commands",
            slash_command_fields(
                text="Zz9refused",
                user_id=CAROL,
                user_name="carol",
                response_url=slack.response_url("c"),
            ),
        )
        assert refused["payload"]["response_type"] == "ephemeral"
        assert "Cancelling" not in refused["payload"]["text"]
        assert [r.training_id for r in await rows(sqlite_url)] == [TRAINING]  # nothing claimed
        assert modelslab.cancel_calls("Zz9refused") == []

        # A click on a notification's button.
        note = await notify(slack, modelslab, sqlite_url, tmp_path, BUTTON_TRAINING)
        payload = block_actions_payload(
            value=BUTTON_TRAINING,
            user_id=BOB,
            user_name="bob",
            channel_id=CHANNEL,
            message_ts=note.ts,
            blocks=note.blocks,
            text=note.text,
            response_url=slack.response_url("click"),
        )
        ack = await slack.send_envelope("interactive", payload)
        assert ack.get("payload") in (None, {}, ""), ack  # a bare ack: the message shows progress
        await modelslab.wait_for_calls(2, timeout=10)
        reply = (
            await slack.wait_for("chat.postMessage", where=in_thread(CHANNEL, note.ts), timeout=10)
        )[0].args["text"]
        assert f"<@{BOB}>" in reply and BUTTON_TRAINING in reply and "cancel accepted" in reply
        await wait_until(lambda: buttons(note) == [], timeout=10, what="the button to go")
        assert len(modelslab.cancel_calls(BUTTON_TRAINING)) == 1
        assert slack.response_posts.get("click", []) == []  # nothing said privately on success

        # Slack recycles the socket: the client reconnects and keeps working.
        before = slack.socket_connections
        await slack.disconnect_socket()
        await slack.socket_connected(timeout=20, count=before + 1)
        answer = await socket_cancel(slack, AFTER_RECONNECT, "again")
        assert "Cancelling training" in answer["text"], answer
        await modelslab.wait_for_calls(3, timeout=10)
        assert len(modelslab.cancel_calls(AFTER_RECONNECT)) == 1

        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as resp,
        ):
            assert resp.status == 200

        code, took = await bot.terminate()
        assert code == 0 and took < 25, (code, took, bot.describe())


async def test_a_revoked_app_token_is_a_readable_error_not_an_endless_retry(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    slack.revoke(slack.app_token)
    env = bot_env(slack, modelslab, sqlite_url, SLACK_APP_TOKEN=slack.app_token)
    async with bot_process(env, "socket", cwd=tmp_path, port=None) as bot:
        await slack.wait_for("apps.connections.open", timeout=20)
        exited = True
        try:
            await asyncio.wait_for(bot.proc.wait(), timeout=8)
        except asyncio.TimeoutError:
            exited = False
        # Whether or not it gave up by itself, SIGTERM must end it promptly.
        code, took = await bot.terminate(timeout=8)
        assert exited and code != 0, (exited, code, took, bot.describe())
        assert "SLACK_APP_TOKEN" in bot.err and "token_revoked" in bot.err
