"""An in-process bot served on a loopback port, wired to the fake Slack and fake ModelsLab."""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import aiohttp

from bot.config import Purpose, Settings, load_settings
from bot.model import Notification
from bot.runtime import Runtime, build_runtime
from bot.slack.messages.blocks import build_notification
from bot.store import Store
from tests.fakes.base import serve_on_loopback
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import (
    block_actions_payload,
    form_payload_body,
    signed,
    slash_command_body,
)
from tests.fakes.slack_rules import ack_problems

SIGNING_SECRET = "8f742231b10e8888abcd99aaabbb85a5"
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"
TRAINING = "F5jvdzGnYi"
CHANNEL = "C0TRAIN01"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
# Fields a slash command and a click on the card it answered with have in common.
_SHARED_FIELDS = ("team_id", "user_id", "user_name", "channel_id", "channel_name")
_cards = itertools.count(1)


def bot_env(
    slack: FakeSlack, modelslab: FakeModelsLab, database_url: str, **overrides: str
) -> dict[str, str]:
    """Environment for a single-workspace bot pointed at the fakes."""
    env = {
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.base_url,
        "MODELSLAB_API_URL": modelslab.base_url,
        "MODELSLAB_API_KEY": "good-key",
        "CANCEL_ALLOWED_USERS": f"{ALICE},{BOB}",
        "DATABASE_URL": database_url,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v != ""}


@dataclass
class Bot:
    """A running bot and helpers to talk to it as Slack does."""

    runtime: Runtime
    url: str
    session: aiohttp.ClientSession
    slack: FakeSlack
    modelslab: FakeModelsLab
    settings: Settings
    last_card: str = ""

    @property
    def secret(self) -> str:
        return str(self.settings.slack_signing_secret)

    async def send(self, data: Any, headers: dict[str, str]) -> tuple[int, str]:
        """POST to /slack/events with exactly these headers (no signing added): status, body text."""
        async with self.session.post(
            f"{self.url}/slack/events", data=data, headers=headers, timeout=HTTP_TIMEOUT
        ) as resp:
            return resp.status, await resp.text()

    async def post(self, body: bytes, content_type: str, **headers: str) -> tuple[int, str]:
        """Send ``body`` signed as Slack does; Slack renders the answer, so it is checked too."""
        request = slack_sends(self.slack, body, content_type)
        all_headers = {**signed(body, self.secret, content_type=content_type), **headers}
        async with self.session.post(
            f"{self.url}/slack/events", data=body, headers=all_headers
        ) as resp:
            status, text = resp.status, await resp.text()
        if status == 200:
            check_ack(self.slack, request, text)
        return status, text

    async def command(self, text: str, **fields: Any) -> dict[str, Any]:
        """Send /cancel-training and return the ack's JSON body ({} for an empty ack)."""
        body = slash_command_body(text=text, response_url=self.slack.response_url("cmd"), **fields)
        status, text_body = await self.post(body, "application/x-www-form-urlencoded")
        assert status == 200, (status, text_body)
        return json.loads(text_body) if text_body else {}

    async def cancel(
        self, text: str = TRAINING, *, response_name: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Type `/cancel-training <id>` and press the preview card's Cancel training button.

        Returns what replaced the card (the request's answer), or the command's ack when it
        was no card (a refusal, a bad id). Later private posts for the request (the response_url
        fallback) land in `response_name`, by default "card-<n>" (see `last_card`).
        """
        card = await self.command(text, **fields)
        button = card_button(card)
        if button is None:
            return card
        name = response_name or f"card-{next(_cards)}"
        self.last_card = name
        shared = {k: v for k, v in fields.items() if k in _SHARED_FIELDS}
        shared.setdefault("user_id", ALICE)
        shared.setdefault("user_name", "alice")
        status = await self.click(
            value=button["value"],
            action_id=button["action_id"],
            ephemeral=True,
            response_url=self.slack.response_url(name),
            **shared,
        )
        assert status == 200, status
        return (await self.slack.wait_for_response(name))[0]

    async def click(self, value: str = TRAINING, *, user_id: str = BOB, **kw: Any) -> int:
        """Click a button on a message; return the HTTP status."""
        kw.setdefault("response_url", self.slack.response_url(f"click-{user_id}"))
        payload = block_actions_payload(value=value, user_id=user_id, **kw)
        status, _ = await self.post(form_payload_body(payload), "application/x-www-form-urlencoded")
        return status


async def post_notification(
    bot: Bot, training: str = TRAINING, *, channel: str = CHANNEL, owner: str | None = ALICE
) -> str:
    """Post a training notification the way `python -m bot notify` does; return its ts."""
    draft = Notification(bot.slack.team_id, training, channel, "", owner, "LoRA run", None, 0.0)
    client = bot.runtime.clients.reporter_for(bot.slack.bot_token)
    response = await client.chat_postMessage(channel=channel, **build_notification(draft, None))
    ts = str(response["ts"])
    await bot.runtime.store.notifications.save(
        workspace_id=bot.slack.team_id,
        training_id=training,
        channel_id=channel,
        message_ts=ts,
        owner_id=owner,
        title="LoRA run",
    )
    return ts


async def install(bot: Bot, code: str) -> dict[str, list[str]]:
    """Install as a browser does: the install page, then Slack's redirect back with the code.

    Returns the query of the "Add to Slack" link.
    """
    async with bot.session.get(f"{bot.url}/slack/install") as resp:
        page = await resp.text()
        assert resp.status == 200, page
        # The state cookie is Secure, so the client would not send it back over http by itself.
        cookie = resp.headers["Set-Cookie"].split(";", 1)[0]
    link = re.search(r'href="(https://slack\.com/oauth/v2/authorize\?[^"]+)"', page)
    assert link is not None, page
    query = parse_qs(urlsplit(html.unescape(link.group(1))).query, keep_blank_values=True)
    async with bot.session.get(
        f"{bot.url}/slack/oauth_redirect",
        params={"code": code, "state": query["state"][0]},
        headers={"Cookie": cookie},
    ) as resp:
        body = await resp.text()
        assert resp.status == 200, body
        assert "Thank you" in body, body
    return query


def slack_sends(slack: FakeSlack, body: bytes, content_type: str) -> dict[str, Any]:
    """The payload in ``body``, its trigger_id issued on ``slack`` as Slack issues one per request."""
    request = sent_request(body, content_type)
    if isinstance(request.get("trigger_id"), str):
        slack.issue_trigger_id(request["trigger_id"])
    return request


def card_button(answer: dict[str, Any]) -> dict[str, Any] | None:
    """The preview card's Cancel training button, if `answer` is a card."""
    for block in answer.get("blocks") or ():
        for element in block.get("elements") or ():
            if element.get("action_id") == "cancel_from_card":
                return dict(element)
    return None


def sent_request(body: bytes, content_type: str) -> dict[str, Any]:
    """The payload Slack sent in ``body``: a command's fields, an interaction or an event."""
    try:
        if content_type.startswith("application/json"):
            parsed = json.loads(body)
            return parsed if isinstance(parsed, dict) else {}
        fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if "payload" in fields:
            parsed = json.loads(fields["payload"])
            return parsed if isinstance(parsed, dict) else {}
        return fields
    except (ValueError, UnicodeDecodeError):
        return {}


def check_ack(slack: FakeSlack, request: dict[str, Any], text: str) -> None:
    """Record on ``slack`` an HTTP answer to ``request`` that Slack would refuse or misrender."""
    answer: Any = text
    with suppress(ValueError):
        answer = json.loads(text) if text else None
    problems = ack_problems(request, answer)
    if problems:
        kind = "slash_command" if "command" in request else request.get("type", "request")
        slack.reject(f"ack {kind}", problems, answer, None)


@asynccontextmanager
async def running_bot(
    slack: FakeSlack, modelslab: FakeModelsLab, database_url: str, **env: str
) -> AsyncIterator[Bot]:
    """Build the runtime exactly as `serve` does and serve it on 127.0.0.1, port 0."""
    settings = load_settings(Purpose.SERVE, bot_env(slack, modelslab, database_url, **env))
    store = Store.from_url(settings.database_url)
    await store.migrate()
    runtime = await build_runtime(settings, store)
    runner, port = await serve_on_loopback(runtime.web_app)
    runtime.start_workers()
    try:
        async with aiohttp.ClientSession() as session:
            yield Bot(runtime, f"http://127.0.0.1:{port}", session, slack, modelslab, settings)
    finally:
        await runner.cleanup()
        await runtime.close()


# --- waiting and ports ------------------------------------------------------------------


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
