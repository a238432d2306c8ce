"""`python -m bot serve` (and `notify`, `check`) as real subprocesses against the fakes (design §8).

The fakes run in the test's event loop; the bot is a separate Python process that reaches them on
loopback, with an environment built from scratch (nothing from the developer's shell or a `.env`
file: the working directory is the test's temporary directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.config import async_database_url
from bot.store import Cancellation, Store
from tests.fakes import modelslab as ml
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import ApiCall, FakeSlack, Message
from tests.fakes.slack_requests import (
    FORM,
    block_actions_payload,
    form_payload_body,
    signed,
    slash_command_body,
)
from tests.harness import ALICE, BOB, CAROL, CHANNEL, SIGNING_SECRET, TRAINING, bot_env

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0  # a cold interpreter importing Bolt, SQLAlchemy and Alembic, migrating
STOP_TIMEOUT = 25.0  # design: SIGTERM → exit within 25 s
CLI_TIMEOUT = 60.0


# --- helpers -------------------------------------------------------------------------------


@dataclass
class Run:
    """A finished command."""

    code: int
    out: str
    err: str


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(env: dict[str, str]) -> dict[str, str]:
    """A clean environment for `python -m bot`: the bot's variables plus what Python needs."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    return {**keep, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **env}


async def run_bot_cli(env: dict[str, str], *args: str, cwd: Path) -> Run:
    """Run `python -m bot ARGS` to completion (bounded) and return its exit code and output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=process_env(env),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=CLI_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"python -m bot {' '.join(args)} did not finish") from None
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def wait_until(
    predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = ""
) -> None:
    """Poll a (sync or async) predicate until it is true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(interval)


class BotProcess:
    """A long-running `python -m bot serve|socket` whose output is collected as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str | None) -> None:
        self.proc = proc
        self.url = url
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        assert proc.stdout is not None and proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(proc.stdout, self._out)),
            asyncio.create_task(self._pump(proc.stderr, self._err)),
        ]

    @staticmethod
    async def _pump(stream: asyncio.StreamReader, into: list[bytes]) -> None:
        while chunk := await stream.read(65536):
            into.append(chunk)

    @property
    def out(self) -> str:
        return b"".join(self._out).decode(errors="replace")

    @property
    def err(self) -> str:
        return b"".join(self._err).decode(errors="replace")

    def describe(self) -> str:
        return f"exit code {self.proc.returncode}\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"

    async def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Poll GET /healthz until it answers 200; fail early if the process exits."""
        assert self.url is not None, "no HTTP port for this process"
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
            while True:
                if self.proc.returncode is not None:
                    await self._drain()
                    raise AssertionError(f"the bot exited during start-up: {self.describe()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(f"{self.url}/healthz") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() >= deadline:
                    raise AssertionError(
                        f"/healthz did not answer 200 within {timeout}s: {self.describe()}"
                    )
                await asyncio.sleep(0.1)

    async def _drain(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._readers), timeout=5)

    async def terminate(self, timeout: float = STOP_TIMEOUT) -> tuple[int, float]:
        """SIGTERM; return (exit code, seconds it took). Kills (and fails) after `timeout`."""
        started = time.monotonic()
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout=timeout)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            await self._drain()
            raise AssertionError(
                f"no exit within {timeout}s of SIGTERM: {self.describe()}"
            ) from None
        await self._drain()
        return code, time.monotonic() - started

    async def kill(self) -> None:
        """Clean-up after a failed test: make sure the process is gone."""
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._drain()


@asynccontextmanager
async def bot_process(
    env: dict[str, str], *args: str, cwd: Path, port: int | None
) -> AsyncIterator[BotProcess]:
    """Start `python -m bot ARGS`, wait for /healthz when it serves HTTP, and on leaving send
    SIGTERM and assert it exits 0 within 25 s (unless the test already stopped it)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=process_env(env),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    bot = BotProcess(proc, f"http://127.0.0.1:{port}" if port is not None else None)
    try:
        if port is not None:
            await bot.wait_healthy()
        yield bot
    except BaseException:
        await bot.kill()
        raise
    if proc.returncode is None:
        code, took = await bot.terminate()
        assert code == 0, f"SIGTERM after {took:.1f}s: {bot.describe()}"
    assert "Traceback" not in bot.err, bot.describe()


@asynccontextmanager
async def serving(
    slack: FakeSlack, modelslab: FakeModelsLab, database_url: str, cwd: Path, **overrides: str
) -> AsyncIterator[BotProcess]:
    """`python -m bot serve --host 127.0.0.1 --port P` against the fakes."""
    port = free_port()
    env = bot_env(slack, modelslab, database_url, **overrides)
    async with bot_process(
        env, "serve", "--host", "127.0.0.1", "--port", str(port), cwd=cwd, port=port
    ) as bot:
        yield bot


async def post_signed(url: str, body: bytes, *, timeout: float = 5.0) -> tuple[int, str, float]:
    """POST a body to /slack/events signed as Slack signs it; return status, text, seconds."""
    started = time.monotonic()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.post(
            f"{url}/slack/events",
            data=body,
            headers=signed(body, SIGNING_SECRET, content_type=FORM),
        ) as resp,
    ):
        return resp.status, await resp.text(), time.monotonic() - started


def buttons(message: Message | dict[str, Any]) -> list[dict[str, Any]]:
    """Every button in a message's blocks (actions blocks and section accessories)."""
    blocks = message.blocks if isinstance(message, Message) else message.get("blocks")
    found: list[dict[str, Any]] = []
    for block in blocks or []:
        found += [e for e in block.get("elements", []) if e.get("type") == "button"]
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") == "button":
            found.append(accessory)
    return found


def in_thread(channel: str, thread_ts: str) -> Callable[[ApiCall], bool]:
    """A `where=` filter: chat.postMessage calls that reply in this thread."""
    return lambda c: c.args.get("channel") == channel and c.args.get("thread_ts") == thread_ts


async def notify(
    slack: FakeSlack, modelslab: FakeModelsLab, database_url: str, cwd: Path, training_id: str
) -> Message:
    """`python -m bot notify` a training into CHANNEL; return the message the fake holds."""
    run = await run_bot_cli(
        bot_env(slack, modelslab, database_url),
        "notify",
        training_id,
        "--channel",
        CHANNEL,
        "--title",
        "LoRA run",
        "--owner",
        ALICE,
        cwd=cwd,
    )
    assert run.code == 0, run
    posted = [
        m
        for m in slack.messages[CHANNEL]
        if m.thread_ts is None and training_id in json.dumps(m.blocks)
    ]
    assert len(posted) == 1, slack.messages[CHANNEL]
    return posted[0]


async def rows(database_url: str) -> list[Cancellation]:
    """Every cancellation in the database, as the store reads it."""
    store = Store.from_url(async_database_url(database_url))
    try:
        return await store.recent_cancellations("T0A1B2C3D", limit=100)
    finally:
        await store.close()


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
        status, _, took = await post_signed(bot.url or "", form_payload_body(payload))
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
        status, text, took = await post_signed(bot.url or "", body)
        assert status == 200 and took < 2.5, (status, text, took)
        ack = json.loads(text)
        assert ack["response_type"] == "ephemeral" and "Cancelling training" in ack["text"]

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
        status, text, _ = await post_signed(bot.url or "", body)
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
        status, text, _ = await post_signed(bot.url or "", body)
        assert status == 200 and "Cancelling training" in text
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
        status, _, _ = await post_signed(bot.url or "", body)
        assert status == 200
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
