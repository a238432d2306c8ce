"""POST /modelslab/webhook/<token> and POST /notify through real HTTP to a running bot.

A wrong token is 404 (webhook) or 401 (/notify) and changes nothing; bad bodies are 4xx, never a
500; a good delivery is answered at once and handled from the queue; /notify answers with where
the one notification of a training is; `python -m bot notify --url` goes through /notify.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from bot.logs import RedactingFormatter, Redactor
from bot.store.schema import training_events
from bot.web import webhooks as webhooks_module
from bot.web.webhooks import MAX_WEBHOOK_BODY
from tests.fakes.modelslab import FakeModelsLab, Reply
from tests.fakes.slack import FakeSlack, Message
from tests.harness import ALICE, CHANNEL, TRAINING, Bot, bot_env, install, running_bot, wait_until
from tests.processes import buttons, run_bot_cli

WEBHOOK_TOKEN = "whk-9QeYt3Lr0bWm5sKx2Nc7Vd"
NOTIFY = "C0NOTIFY1"
TIMEOUT = aiohttp.ClientTimeout(total=15)
WEBHOOK = "/modelslab/webhook/"


@pytest.fixture
async def hooked(slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str) -> AsyncIterator[Bot]:
    """A single-workspace bot with a webhook token and a notification channel."""
    async with running_bot(
        slack, modelslab, sqlite_url, MODELSLAB_WEBHOOK_TOKEN=WEBHOOK_TOKEN, NOTIFY_CHANNEL=NOTIFY
    ) as bot:
        yield bot


# --- helpers -----------------------------------------------------------------------------


async def post(
    bot: Bot, path: str, data: Any = None, *, json_body: Any = None, **headers: str
) -> tuple[int, str, float]:
    """POST to the bot; return status, body text and seconds taken."""
    started = time.monotonic()
    async with bot.session.post(
        bot.url + path, data=data, json=json_body, headers=headers, timeout=TIMEOUT
    ) as resp:
        return resp.status, await resp.text(), time.monotonic() - started


async def deliver(bot: Bot, body: Any, token: str = WEBHOOK_TOKEN) -> tuple[int, str, float]:
    """A ModelsLab webhook delivery (a dict is sent as JSON, bytes as they are)."""
    if isinstance(body, bytes):
        return await post(bot, WEBHOOK + token, body, **{"Content-Type": "application/json"})
    return await post(bot, WEBHOOK + token, json_body=body)


async def notify(bot: Bot, body: Any, token: str | None = WEBHOOK_TOKEN) -> tuple[int, str]:
    """POST /notify with the bearer token (None: no Authorization header)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
        status, text, _ = await post(bot, "/notify", body, **headers)
    else:
        status, text, _ = await post(bot, "/notify", json_body=body, **headers)
    return status, text


async def queued(bot: Bot) -> int:
    """How many training events were ever queued."""
    async with bot.runtime.store.engine.connect() as conn:
        count = (
            await conn.execute(sa.select(sa.func.count()).select_from(training_events))
        ).scalar()
    return int(count or 0)


async def drained(bot: Bot) -> None:
    """Wait until the notifier has handled every queued event."""

    async def idle() -> bool:
        return await bot.runtime.store.training_events.next_due() is None

    await wait_until(idle, timeout=5, what="the notifier to handle every queued event")


def posts(slack: FakeSlack, channel: str) -> list[Message]:
    """The top-level messages (not thread replies) in a channel."""
    return [m for m in slack.messages.get(channel, []) if m.thread_ts is None]


async def assert_nothing_happened(bot: Bot) -> None:
    assert await queued(bot) == 0
    assert bot.slack.calls_to("chat.postMessage") == []
    assert bot.slack.calls_to("chat.update") == []
    assert bot.modelslab.calls == []


async def _chunks(body: bytes, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]
        await asyncio.sleep(0)


# --- the webhook token -------------------------------------------------------------------


WRONG_PATHS = [
    WEBHOOK + "not-the-token",
    WEBHOOK + WEBHOOK_TOKEN[:-1],
    WEBHOOK + WEBHOOK_TOKEN + "x",
    WEBHOOK + WEBHOOK_TOKEN.upper(),
    WEBHOOK + "x" * 500,
    WEBHOOK,
    WEBHOOK.rstrip("/"),
    WEBHOOK + WEBHOOK_TOKEN + "/extra",
]


async def test_wrong_or_missing_token_is_404_and_nothing_is_queued_or_posted(hooked: Bot) -> None:
    body = {"status": "success", "training_status": "training_started", "model_id": TRAINING}
    for path in WRONG_PATHS:
        status, text, _ = await post(hooked, path, json_body=body)
        assert status == 404, path
        assert WEBHOOK_TOKEN not in text
        # A wrong token is 404 whatever the body: nothing about the body is revealed.
        assert (await post(hooked, path, b"not json"))[0] == 404, path
        assert (await post(hooked, path, b"x" * (MAX_WEBHOOK_BODY + 10)))[0] == 404, path
    await assert_nothing_happened(hooked)
    # The same delivery with the right token goes through: the 404s were about the token.
    assert (await deliver(hooked, body))[0] == 202
    await hooked.slack.wait_for("chat.postMessage")
    assert len(posts(hooked.slack, NOTIFY)) == 1


async def test_the_webhook_token_never_reaches_the_logs(
    hooked: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hooked.modelslab.script_status(TRAINING, _status("model_ready"))
    for stage in ("training_started", "model_ready"):
        body = {"status": "success", "training_status": stage, "model_id": TRAINING}
        assert (await deliver(hooked, body))[0] == 202
        await hooked.slack.wait_for("chat.postMessage")
    assert (await deliver(hooked, b"{broken"))[0] == 400
    assert (await deliver(hooked, {"model_id": "x"}, token=WEBHOOK_TOKEN + "0"))[0] == 404
    assert (await notify(hooked, {"training_id": "other1"}))[0] == 200
    await hooked.slack.wait_for("chat.postMessage", where=lambda c: bool(c.args.get("thread_ts")))
    await drained(hooked)
    records = list(caplog.records)
    # The test saw the requests: aiohttp's access log names the webhook path at INFO.
    assert any(WEBHOOK in r.getMessage() for r in records), [r.getMessage() for r in records]
    assert any(r.levelno == logging.DEBUG for r in records)  # it really ran at DEBUG
    for json_lines in (False, True):
        formatter = RedactingFormatter(Redactor(hooked.settings.secrets), json_lines=json_lines)
        logged = "\n".join(formatter.format(r) for r in records)
        assert WEBHOOK_TOKEN not in logged
        assert hooked.slack.bot_token not in logged


# --- bodies --------------------------------------------------------------------------------


async def test_huge_body_with_content_length_is_413(hooked: Bot) -> None:
    padding = "p" * MAX_WEBHOOK_BODY
    body = json.dumps({"model_id": TRAINING, "status": "training_started", "logs": padding})
    status, _, _ = await deliver(hooked, body.encode())
    assert status == 413
    await assert_nothing_happened(hooked)


async def test_huge_chunked_body_is_413(hooked: Bot) -> None:
    body = json.dumps({"model_id": TRAINING, "logs": "p" * (MAX_WEBHOOK_BODY * 2)}).encode()
    status, _, _ = await post(
        hooked, WEBHOOK + WEBHOOK_TOKEN, _chunks(body), **{"Content-Type": "application/json"}
    )
    assert status == 413
    await assert_nothing_happened(hooked)


BAD_WEBHOOK_BODIES: list[Any] = [
    b"",
    b"not json",
    b"{broken",
    b"\xff\xfe{}",
    b"[1, 2]",
    b'"model_ready"',
    b"null",
    b"42",
    b"[" * 20000 + b"]" * 20000,
    {},
    {"status": "success", "training_status": "model_ready"},
    {"model_id": ""},
    {"model_id": None},
    {"model_id": True},
    {"model_id": 1.5},
    {"model_id": {"id": TRAINING}},
    {"model_id": [TRAINING]},
    {"model_id": "../../etc/passwd"},
    {"model_id": "run 1"},
    {"model_id": "run1\n"},
    {"model_id": "run?key=1"},
    {"model_id": "run/../cancle_training/x"},
    {"model_id": "%2e%2e%2f"},
    {"model_id": "<script>alert(1)</script>"},
    {"model_id": "ünïcödé"},
    {"model_id": "x" * 65},
    {"training_id": "a;b"},
    {"id": "run#1"},
]


async def test_non_json_wrong_shapes_and_hostile_ids_are_400(hooked: Bot) -> None:
    for body in BAD_WEBHOOK_BODIES:
        status, text, _ = await deliver(hooked, body)
        assert status == 400, (body if not isinstance(body, bytes) else body[:40], text)
    await assert_nothing_happened(hooked)
    assert (await deliver(hooked, {"status": "training_started", "model_id": TRAINING}))[0] == 202


async def test_a_good_delivery_is_answered_at_once_and_handled_from_the_queue(
    hooked: Bot,
) -> None:
    hooked.slack.delay = 0.6  # Slack is slow today: the webhook must not wait for it
    body = {
        "status": "success",
        "training_status": "training_started",
        "logs": "step 10/1000 ETA : 25 minutes",
        "model_id": TRAINING,
    }
    status, text, took = await deliver(hooked, body)
    assert status == 202, text
    assert took < 0.5, f"the webhook took {took:.2f}s to answer"
    assert await queued(hooked) == 1
    [call] = await hooked.slack.wait_for("chat.postMessage")
    hooked.slack.delay = 0
    assert call.args["channel"] == NOTIFY
    assert TRAINING in json.dumps(call.args["blocks"])


async def test_every_documented_id_field_is_accepted(hooked: Bot) -> None:
    uuid = "0F8FAD5B-D9CB-469F-A165-70867728950E"
    bodies = [
        {"status": "training_started", "model_id": "run1"},
        {"status": "training_started", "training_id": "run2"},
        {"status": "training_started", "id": "run3"},
        {"status": "training_started", "model_id": 12345},
        {"status": "training_started", "model_id": uuid},
    ]
    for body in bodies:
        status, text, _ = await deliver(hooked, body)
        assert status == 202, (body, text)
    await hooked.slack.wait_for("chat.postMessage", count=len(bodies))
    await drained(hooked)
    shown = json.dumps([m.blocks for m in posts(hooked.slack, NOTIFY)])
    for training in ("run1", "run2", "run3", "12345", uuid.lower()):
        assert f"`{training}`" in shown, training


# --- /notify -----------------------------------------------------------------------------


WRONG_AUTHORIZATIONS: list[str | None] = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer wrong-token",
    f"Bearer {WEBHOOK_TOKEN}x",
    f"Bearer {WEBHOOK_TOKEN[:-1]}",
    WEBHOOK_TOKEN,
    f"Basic {WEBHOOK_TOKEN}",
    f"Token {WEBHOOK_TOKEN}",
]


async def test_notify_with_a_wrong_token_is_401_and_posts_nothing(hooked: Bot) -> None:
    for authorization in WRONG_AUTHORIZATIONS:
        headers = {"Authorization": authorization} if authorization is not None else {}
        body = {"training_id": TRAINING}
        status, text, _ = await post(hooked, "/notify", json_body=body, **headers)
        assert status == 401, (authorization, text)
        assert WEBHOOK_TOKEN not in text
    await assert_nothing_happened(hooked)


async def test_notify_posts_one_message_and_answers_with_channel_and_ts(hooked: Bot) -> None:
    status, text = await notify(hooked, {"training_id": TRAINING, "title": "LoRA", "owner": ALICE})
    assert status == 200, text
    answer = json.loads(text)
    assert answer["channel"] == NOTIFY and answer["ts"]
    [message] = posts(hooked.slack, NOTIFY)
    assert message.ts == answer["ts"]
    shown = json.dumps(message.blocks)
    assert TRAINING in shown and "LoRA" in shown and f"<@{ALICE}>" in shown
    [button] = buttons(message)
    assert button["value"] == TRAINING and button["style"] == "danger"


async def test_notify_in_a_given_channel(hooked: Bot) -> None:
    status, text = await notify(hooked, {"training_id": TRAINING, "channel": CHANNEL})
    assert status == 200, text
    assert json.loads(text)["channel"] == CHANNEL
    assert len(posts(hooked.slack, CHANNEL)) == 1 and posts(hooked.slack, NOTIFY) == []


async def test_repeated_notify_for_one_training_keeps_one_message(hooked: Bot) -> None:
    first = json.loads((await notify(hooked, {"training_id": TRAINING}))[1])
    again = json.loads((await notify(hooked, {"training_id": TRAINING, "title": "again"}))[1])
    together = await asyncio.gather(*(notify(hooked, {"training_id": TRAINING}) for _ in range(5)))
    assert {status for status, _ in together} == {200}
    answers = [first, again, *(json.loads(text) for _, text in together)]
    assert {(a["channel"], a["ts"]) for a in answers} == {(NOTIFY, first["ts"])}
    await drained(hooked)
    assert len(posts(hooked.slack, NOTIFY)) == 1
    assert len(hooked.slack.calls_to("chat.postMessage")) == 1


async def test_notify_after_a_webhook_finds_the_same_message(hooked: Bot) -> None:
    assert (await deliver(hooked, {"status": "training_started", "model_id": TRAINING}))[0] == 202
    await hooked.slack.wait_for("chat.postMessage")
    status, text = await notify(hooked, {"training_id": TRAINING})
    assert status == 200 and json.loads(text)["ts"] == posts(hooked.slack, NOTIFY)[0].ts
    assert len(posts(hooked.slack, NOTIFY)) == 1


BAD_NOTIFY_BODIES: list[Any] = [
    b"not json",
    b"[]",
    {},
    {"training_id": "../x"},
    {"training_id": "x" * 65},
    {"training_id": TRAINING, "channel": "#general"},
    {"training_id": TRAINING, "channel": "C0/../x"},
    {"training_id": TRAINING, "channel": 5},
    {"training_id": TRAINING, "owner": "bob"},
    {"training_id": TRAINING, "owner": "<!channel>"},
    {"training_id": TRAINING, "title": ["a"]},
]


async def test_notify_with_a_bad_body_is_400(hooked: Bot) -> None:
    for body in BAD_NOTIFY_BODIES:
        status, text = await notify(hooked, body)
        assert status == 400, (body, text)
    await assert_nothing_happened(hooked)


async def test_notify_with_a_huge_body_is_413(hooked: Bot) -> None:
    status, _ = await notify(hooked, {"training_id": TRAINING, "title": "t" * MAX_WEBHOOK_BODY})
    assert status == 413
    await assert_nothing_happened(hooked)


async def test_notify_without_any_channel_is_400(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> None:
    async with running_bot(
        slack, modelslab, sqlite_url, MODELSLAB_WEBHOOK_TOKEN=WEBHOOK_TOKEN
    ) as bot:
        status, text = await notify(bot, {"training_id": TRAINING})
        assert status == 400 and "channel" in text
        await assert_nothing_happened(bot)
        # With a channel in the request it works.
        assert (await notify(bot, {"training_id": TRAINING, "channel": CHANNEL}))[0] == 200


async def test_notify_into_a_channel_slack_refuses_says_why_at_once(
    hooked: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks_module, "NOTIFY_WAIT_SECONDS", 1.0)  # keep the test short
    hooked.slack.channels_without_bot.add("C0PRIVATE1")
    status, text = await notify(hooked, {"training_id": TRAINING, "channel": "C0PRIVATE1"})
    await drained(hooked)
    assert hooked.slack.messages.get("C0PRIVATE1", []) == []
    assert status >= 400 and "not_in_channel" in text, (status, text)


# --- python -m bot notify --url ----------------------------------------------------------


async def test_cli_notify_through_the_url(
    hooked: Bot, slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    env = bot_env(slack, modelslab, sqlite_url, MODELSLAB_WEBHOOK_TOKEN=WEBHOOK_TOKEN)
    run = await run_bot_cli(
        env, "notify", TRAINING, "--url", hooked.url, "--title", "LoRA run", cwd=tmp_path
    )
    assert run.code == 0, run
    [message] = posts(slack, NOTIFY)
    assert message.ts in run.out and NOTIFY in run.out
    assert "LoRA run" in json.dumps(message.blocks)
    assert WEBHOOK_TOKEN not in run.out + run.err


async def test_cli_notify_with_a_wrong_token_exits_1_readably(
    hooked: Bot, slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    wrong = "whk-definitely-not-it-123"
    env = bot_env(slack, modelslab, sqlite_url, MODELSLAB_WEBHOOK_TOKEN=wrong)
    run = await run_bot_cli(env, "notify", TRAINING, "--url", hooked.url, cwd=tmp_path)
    assert run.code == 1, run
    assert "Traceback" not in run.err and "401" in run.err and "token" in run.err, run
    assert wrong not in run.out + run.err
    assert slack.calls_to("chat.postMessage") == [] and await queued(hooked) == 0


# --- OAuth: each workspace's own, rotatable token ----------------------------------------

TEAM_A, TOKEN_A, ADMIN_A, CHANNEL_A = (
    "T0TEAMA01",
    "xoxb-1111-team-a-Qm4tT0k3nA9",
    "U0ADMINA1",
    "C0CHANA01",
)


async def test_oauth_webhook_uses_the_workspace_token_and_rotation_retires_the_old_one(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slack.oauth_teams = {
        "code-a": {
            "team_id": TEAM_A,
            "team_name": "A",
            "bot_token": TOKEN_A,
            "authed_user": ADMIN_A,
        }
    }
    env = {
        "SLACK_BOT_TOKEN": "",
        "MODELSLAB_API_KEY": "",
        "SLACK_CLIENT_ID": "111.222",
        "SLACK_CLIENT_SECRET": "sec",
        "BOT_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "MODELSLAB_WEBHOOK_TOKEN": WEBHOOK_TOKEN,  # single-workspace setting: not a key to anything here
    }
    async with running_bot(slack, modelslab, sqlite_url, **env) as bot:
        await install(bot, "code-a")
        workspaces = bot.runtime.deps.workspaces
        await bot.runtime.store.workspaces.update(TEAM_A, notify_channel=CHANNEL_A)
        old = await workspaces.rotate_webhook_token(TEAM_A, by=ADMIN_A)
        token = await workspaces.rotate_webhook_token(TEAM_A, by=ADMIN_A)
        body = {"status": "training_started", "model_id": TRAINING}
        for wrong in (old, WEBHOOK_TOKEN, "not-a-token"):
            assert (await deliver(bot, body, token=wrong))[0] == 404, wrong
            assert (await notify(bot, {"training_id": TRAINING}, token=wrong))[0] == 401, wrong
        assert await queued(bot) == 0 and slack.calls_to("chat.postMessage") == []
        assert (await deliver(bot, body, token=token))[0] == 202
        [call] = await slack.wait_for("chat.postMessage")
        assert call.args["channel"] == CHANNEL_A and call.token == TOKEN_A
        status, text = await notify(bot, {"training_id": TRAINING}, token=token)
        assert status == 200 and json.loads(text)["ts"] == posts(slack, CHANNEL_A)[0].ts
        # A workspace's own token is not in the settings, yet the redactor keeps it out of logs.
        formatter = RedactingFormatter(Redactor(bot.settings.secrets))
        logged = "\n".join(formatter.format(r) for r in caplog.records)
        assert WEBHOOK in logged
        for secret in (token, old, TOKEN_A):
            assert secret not in logged


def _status(state: str, details: str | None = None) -> Reply:
    """A status answer as ModelsLab's fine_tune_status gives it."""
    return Reply(body=json.dumps({"status": "success", "messege": state, "data": details}).encode())
