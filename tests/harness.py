"""An in-process bot served on a loopback port, wired to the fake Slack and fake ModelsLab."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

from bot.config import Purpose, Settings, load_settings
from bot.runtime import Runtime, build_runtime
from bot.store import Store
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

    async def post(self, body: bytes, content_type: str, **headers: str) -> tuple[int, str]:
        """Send ``body`` signed as Slack does; Slack renders the answer, so it is checked too."""
        request = sent_request(body, content_type)
        if isinstance(request.get("trigger_id"), str):
            self.slack.issue_trigger_id(request["trigger_id"])
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
    runner = web.AppRunner(runtime.web_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    runtime.start_workers()
    try:
        async with aiohttp.ClientSession() as session:
            yield Bot(runtime, f"http://127.0.0.1:{port}", session, slack, modelslab, settings)
    finally:
        await runner.cleanup()
        await runtime.close()
