"""Socket Mode keeps itself alive: `python -m bot socket` against the fake Slack (design §5, §8).

Slack's own connections go stale without a close (a NAT drops the flow, a load balancer stops
forwarding) or get closed from the server side. slack_sdk's aiohttp SocketModeClient pings (aiohttp's
heartbeat every `ping_interval` s, plus its own ping-pong monitor) and reconnects. These tests show
that the bot, as started by the CLI, notices both and keeps answering commands afterwards.

Measured here: a silent socket is replaced 11-25 s after it goes silent (Bolt's handler uses
ping_interval=10: aiohttp closes a socket whose heartbeat ping gets no pong within 5 s, and the
monitor, waking every 10 s, reconnects), well within the 45 s this test allows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.harness import bot_env, free_port
from tests.processes import BotProcess, bot_process, socket_cancel

# How long a stale session may go unnoticed before this counts as a defect.
DETECTION_LIMIT = 45.0


async def command_works(
    slack: FakeSlack, modelslab: FakeModelsLab, training_id: str, calls: int
) -> None:
    """A slash command over the (current) socket is acked and the training cancelled once."""
    answer = await socket_cancel(slack, training_id, training_id)
    assert "Cancelling training" in answer["text"], answer
    await modelslab.wait_for_calls(calls, timeout=10)
    assert len(modelslab.cancel_calls(training_id)) == 1


async def healthy(bot: BotProcess) -> bool:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(f"{bot.url}/healthz") as resp,
    ):
        return resp.status == 200


async def test_a_silent_socket_is_noticed_and_replaced(
    slack: FakeSlack,
    modelslab: FakeModelsLab,
    sqlite_url: str,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    port = free_port()
    env = bot_env(slack, modelslab, sqlite_url, SLACK_APP_TOKEN=slack.app_token, PORT=str(port))
    async with bot_process(env, "socket", cwd=tmp_path, port=port) as bot:
        await slack.socket_connected(timeout=20)
        await command_works(slack, modelslab, "BeforeQuiet", calls=1)
        opened = len(slack.calls_to("apps.connections.open"))

        # The connection stays open but nothing comes back: no pongs, no envelopes.
        slack.go_silent()
        started = time.monotonic()
        try:
            await slack.socket_connected(timeout=DETECTION_LIMIT, count=2)
        except AssertionError:
            raise AssertionError(
                f"the stale socket was not replaced within {DETECTION_LIMIT:.0f} s: "
                f"{bot.describe()}"
            ) from None
        took = time.monotonic() - started
        record_property("stale_socket_detected_after_s", round(took, 1))
        # A fresh URL from apps.connections.open, as Slack expects for every new connection.
        assert len(slack.calls_to("apps.connections.open")) > opened

        await command_works(slack, modelslab, "AfterQuiet", calls=2)
        assert await healthy(bot)


async def test_a_dropped_socket_reconnects_at_once_every_time(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = bot_env(slack, modelslab, sqlite_url, SLACK_APP_TOKEN=slack.app_token, PORT=str(port))
    async with bot_process(env, "socket", cwd=tmp_path, port=port) as bot:
        await slack.socket_connected(timeout=20)
        for n, training_id in enumerate(("AfterDrop1", "AfterDrop2"), start=1):
            started = time.monotonic()
            await slack.drop_socket()  # a close frame from the server, no "disconnect" first
            await slack.socket_connected(timeout=10, count=n + 1)
            assert time.monotonic() - started < 5
            await command_works(slack, modelslab, training_id, calls=n)
        assert await healthy(bot)
