"""Running `python -m bot …` as real subprocesses against the fakes (design §8).

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
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bot.config import async_database_url
from bot.model import Cancellation
from bot.store import Store
from tests import REPO
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import ApiCall, FakeSlack, Message
from tests.fakes.slack_requests import (
    FORM,
    block_actions_payload,
    form_payload_body,
    signed,
    slash_command_fields,
)
from tests.harness import (  # free_port and wait_until are also every system test's
    ALICE,
    CHANNEL,
    SIGNING_SECRET,
    bot_env,
    card_button,
    check_ack,
    free_port,
    slack_sends,
)

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

    @property
    def text(self) -> str:
        """Both streams, for what must appear (or not) in either."""
        return self.out + self.err


def process_env(env: dict[str, str]) -> dict[str, str]:
    """A clean environment for `python -m bot`: the bot's variables plus what Python needs."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "SYSTEMROOT")}
    return {**keep, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **env}


async def run_bot_cli(
    env: dict[str, str], *args: str, cwd: Path | None = None, stdin: str | None = None
) -> Run:
    """Run `python -m bot ARGS` to completion (bounded) and return its exit code and output.

    Without `cwd` it runs in an empty directory of its own: the bot reads `.env` from its working
    directory, so a test must never run it where a developer keeps theirs.
    """
    with tempfile.TemporaryDirectory(prefix="bot-cwd-") as scratch:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *args,
            env=process_env(env),
            cwd=cwd or scratch,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None),
                timeout=CLI_TIMEOUT,
            )
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"python -m bot {' '.join(args)} did not finish") from None
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


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


async def post_signed(
    slack: FakeSlack, url: str, body: bytes, *, timeout: float = 5.0
) -> tuple[int, str, float]:
    """POST a body to /slack/events signed as Slack signs it; return status, text, seconds.

    Slack renders the answer, so, as the harness's ``Bot.post`` does, an ack Slack would refuse
    or misrender is recorded on ``slack`` and fails the test at teardown.
    """
    request = slack_sends(slack, body, FORM)
    started = time.monotonic()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.post(
            f"{url}/slack/events",
            data=body,
            headers=signed(body, SIGNING_SECRET, content_type=FORM),
        ) as resp,
    ):
        status, text = resp.status, await resp.text()
        took = time.monotonic() - started
    if status == 200:
        check_ack(slack, request, text)
    return status, text, took


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
        return await store.cancellations.recent("T0A1B2C3D", limit=100)
    finally:
        await store.close()


def card_click(card: dict[str, Any], response_url: str, **fields: Any) -> dict[str, Any]:
    """The click on the Cancel training button of a preview card (ALICE's, by default)."""
    button = card_button(card)
    assert button is not None, card
    fields.setdefault("user_id", ALICE)
    fields.setdefault("user_name", "alice")
    return block_actions_payload(
        value=button["value"],
        action_id=button["action_id"],
        ephemeral=True,
        response_url=response_url,
        **fields,
    )


async def press_card(url: str, slack: FakeSlack, ack: str, name: str) -> dict[str, Any]:
    """Over HTTP: press the Cancel training button of the card `ack` is; return what replaced it."""
    payload = card_click(json.loads(ack), slack.response_url(name))
    status, text, took = await post_signed(slack, url, form_payload_body(payload))
    assert status == 200 and took < 2.5, (status, text, took)
    return (await slack.wait_for_response(name, timeout=10))[0]


async def socket_cancel(slack: FakeSlack, training_id: str, name: str) -> dict[str, Any]:
    """Over Socket Mode: type the id, press the card's button; return what replaced the card."""
    card = await slack.send_envelope(
        "slash_commands",
        slash_command_fields(text=training_id, response_url=slack.response_url(f"{name}-cmd")),
        timeout=10,
    )
    assert card["payload"]["response_type"] == "ephemeral", card
    click = card_click(card["payload"], slack.response_url(name))
    await slack.send_envelope("interactive", click, timeout=10)
    return (await slack.wait_for_response(name, timeout=10))[0]
