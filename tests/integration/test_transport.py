"""What Slack's transport expects of the bot, over signed HTTP and over Socket Mode (design §5).

Unsigned ``ssl_check`` → 200 and nothing else; whatever the bot does not handle → 200 (HTTP) or
an envelope ack (Socket Mode), never Bolt's 404; one Content-Type on every response of every
route; the allow-list editor's user-group picker (an external select) answered on both
transports, within Slack's option limits.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml
from aiohttp import web
from cryptography.fernet import Fernet
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

from bot.slack.messages import home
from tests import REPO
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import (
    APP_ID,
    FORM,
    JSON,
    TEAM_DOMAIN,
    block_actions_payload,
    event_body,
    event_payload,
    form_payload_body,
    sign,
    signed,
    slash_command_body,
    slash_command_fields,
)
from tests.harness import ALICE, HTTP_TIMEOUT, TRAINING, Bot, running_bot

SSL_CHECK = urlencode({"ssl_check": "1", "token": "legacy-token"}).encode()


async def assert_nothing_happened(bot: Bot) -> None:
    """No claim, no ModelsLab call, no Slack Web API call beyond start-up's, no private reply."""
    # Whatever a listener wrongly started after its ack runs as tracked post-ack work: let it end.
    await bot.runtime.deps.background.drain(grace=5.0)
    assert await bot.runtime.store.cancellations.recent(bot.runtime.workspace_id) == []
    assert bot.modelslab.calls == []
    start_up = ("auth.test", "apps.connections.open")
    assert [c.method for c in bot.slack.calls if c.method not in start_up] == []
    assert dict(bot.slack.response_posts) == {}


# --- ssl_check -----------------------------------------------------------------------------


async def test_unsigned_ssl_check_is_answered_200_with_nothing_else(bot: Bot) -> None:
    status, text = await bot.send(SSL_CHECK, {"Content-Type": FORM})
    assert (status, text) == (200, "")
    await assert_nothing_happened(bot)


async def test_a_signed_ssl_check_is_answered_200_too(bot: Bot) -> None:
    status, text = await bot.send(SSL_CHECK, signed(SSL_CHECK, bot.secret, content_type=FORM))
    assert (status, text) == (200, "")
    await assert_nothing_happened(bot)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(slash_command_body(text=TRAINING, user_id=ALICE), id="command"),
        pytest.param(
            slash_command_body(text=TRAINING, user_id=ALICE, ssl_check="1"), id="command+ssl_check"
        ),
        pytest.param(
            form_payload_body(block_actions_payload(user_id=ALICE)) + b"&ssl_check=1",
            id="click+ssl_check",
        ),
        pytest.param(b"ssl_check=0&token=x", id="ssl_check=0"),
        pytest.param(b"ssl_check=1&ssl_check=1", id="ssl_check twice"),
        pytest.param(SSL_CHECK + b"&pad=" + b"a" * 2000, id="ssl_check+padding"),
    ],
)
async def test_every_other_unsigned_request_is_still_401(bot: Bot, body: bytes) -> None:
    status, _ = await bot.send(body, {"Content-Type": FORM})
    assert status == 401
    forged = {"Content-Type": FORM, **sign(body, "0123456789abcdef0123456789abcdef")}
    status, _ = await bot.send(body, forged)
    assert status == 401
    await assert_nothing_happened(bot)


async def test_an_unsigned_ssl_check_as_json_is_401(bot: Bot) -> None:
    body = json.dumps({"ssl_check": "1"}).encode()
    status, _ = await bot.send(body, {"Content-Type": JSON})
    assert status == 401


# --- what the bot does not handle: 200, logged at debug -----------------------------------


def _unhandled_bodies() -> list[Any]:
    interactive = {
        "api_app_id": APP_ID,
        "token": "legacy-token",
        "team": {"id": "T0A1B2C3D", "domain": TEAM_DOMAIN},
        "user": {"id": ALICE, "username": "alice", "name": "alice", "team_id": "T0A1B2C3D"},
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return [
        pytest.param(
            event_body({"type": "reaction_added", "user": ALICE, "reaction": "eyes"}),
            JSON,
            id="event",
        ),
        pytest.param(
            event_body({"type": "message", "user": ALICE, "text": "hi", "channel": "C0X"}),
            JSON,
            id="message-event",
        ),
        pytest.param(
            form_payload_body(block_actions_payload(user_id=ALICE, action_id="not_ours")),
            FORM,
            id="action",
        ),
        pytest.param(
            form_payload_body(
                {
                    **interactive,
                    "type": "shortcut",
                    "callback_id": "not_ours",
                    "trigger_id": "1.2.3",
                }
            ),
            FORM,
            id="shortcut",
        ),
        pytest.param(
            form_payload_body(
                {
                    **interactive,
                    "type": "block_suggestion",
                    "action_id": "not_ours",
                    "block_id": "b",
                    "value": "",
                    "container": {"type": "view", "view_id": "V1"},
                }
            ),
            FORM,
            id="options",
        ),
        pytest.param(
            form_payload_body(
                {
                    **interactive,
                    "type": "view_submission",
                    "trigger_id": "1.2.3",
                    "view": {"id": "V1", "type": "modal", "callback_id": "not_ours"},
                }
            ),
            FORM,
            id="view-submission",
        ),
        pytest.param(
            slash_command_body(text=TRAINING, command="/someone-elses"), FORM, id="command"
        ),
    ]


@pytest.mark.parametrize(("body", "content_type"), _unhandled_bodies())
async def test_what_the_bot_does_not_handle_gets_200_and_a_debug_line(
    bot: Bot, body: bytes, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        status, text = await bot.send(body, signed(body, bot.secret, content_type=content_type))
    assert (status, text) == (200, "")
    await assert_nothing_happened(bot)
    mine = [r for r in caplog.records if "no listener" in r.getMessage()]
    assert mine and all(r.levelno == logging.DEBUG for r in mine)
    # Neither Bolt's "Unhandled request" warning nor an error for what is ordinary.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


# --- one Content-Type on every route -------------------------------------------------------


def _request_for(path: str, method: str, secret: str) -> tuple[dict[str, str], bytes | None]:
    """A request that reaches the route's own handler (and, for /slack/events, Bolt)."""
    if path == "/slack/events":
        body = slash_command_body(text="help")
        return signed(body, secret, content_type=FORM), body
    if method == "POST":
        return {"Content-Type": JSON, "Authorization": "Bearer wrong"}, b"{}"
    return {"Authorization": "Bearer wrong"}, None


async def _content_types(bot: Bot, method: str, path: str, **kw: Any) -> list[str]:
    async with bot.session.request(method, f"{bot.url}{path}", timeout=HTTP_TIMEOUT, **kw) as resp:
        await resp.read()
        return resp.headers.getall("Content-Type", [])


async def _assert_one_content_type_everywhere(bot: Bot) -> set[str]:
    app: web.Application = bot.runtime.web_app
    seen: set[str] = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource else {}
        path = str(info.get("path") or info.get("formatter") or "")
        path = re.sub(r"\{[^}]+\}", "not-the-token", path)
        headers, body = _request_for(path, route.method, bot.secret)
        types = await _content_types(bot, route.method, path, headers=headers, data=body)
        assert len(types) == 1, (route.method, path, types)
        seen.add(path)
        # The query-less OAuth pages too, and a wrong method on the same path.
    for method, path in [("GET", "/no-such-route"), ("GET", "/slack/events")]:
        types = await _content_types(bot, method, path)
        assert len(types) == 1, (method, path, types)
    # An answer with a body from Bolt (the help text), and one without (an unhandled event).
    unhandled = event_body({"type": "reaction_added", "user": ALICE})
    types = await _content_types(
        bot,
        "POST",
        "/slack/events",
        data=unhandled,
        headers=signed(unhandled, bot.secret, content_type=JSON),
    )
    assert len(types) <= 1, types
    return seen


async def test_every_route_sends_one_content_type_single_workspace(bot: Bot) -> None:
    seen = await _assert_one_content_type_everywhere(bot)
    assert {"/slack/events", "/healthz", "/readyz", "/metrics", "/notify"} <= seen


async def test_every_route_sends_one_content_type_oauth(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> None:
    env = {
        "SLACK_BOT_TOKEN": "",
        "MODELSLAB_API_KEY": "",
        "SLACK_CLIENT_ID": "111.222",
        "SLACK_CLIENT_SECRET": "client-secret-xyz",
        "BOT_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    async with running_bot(slack, modelslab, sqlite_url, **env) as bot:
        seen = await _assert_one_content_type_everywhere(bot)
        assert {"/slack/install", "/slack/oauth_redirect"} <= seen
        # The install page itself: HTML, once, with its state cookie.
        async with bot.session.get(f"{bot.url}/slack/install", timeout=HTTP_TIMEOUT) as resp:
            assert resp.status == 200
            assert resp.headers.getall("Content-Type") == ["text/html; charset=utf-8"]
            assert resp.headers.getall("Set-Cookie")


# --- the user-group picker ----------------------------------------------------------------


GROUPS = {
    "S0MLTEAM1": {"name": "ML team", "handle": "ml-team"},
    "S0OPS0001": {"name": "Ops <!channel> & friends", "handle": "ops"},
    "S0LONG001": {"name": "x" * 300, "handle": "long"},
}


def suggestion_payload(typed: str, *, team_id: str, user_id: str = ALICE) -> dict[str, Any]:
    """What Slack sends when someone types in the allow-list modal's user-group picker."""
    return {
        "type": "block_suggestion",
        "user": {"id": user_id, "username": "alice", "name": "alice", "team_id": team_id},
        "container": {"type": "view", "view_id": "V0ALLOW01"},
        "api_app_id": APP_ID,
        "token": "legacy-token",
        "action_id": home.GROUPS_INPUT,
        "block_id": home.GROUPS_BLOCK,
        "value": typed,
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "view": {"id": "V0ALLOW01", "type": "modal", "callback_id": home.ALLOW_MODAL},
    }


def _assert_within_slacks_option_limits(options: list[dict[str, Any]]) -> None:
    assert len(options) <= 100
    for option in options:
        assert option["text"]["type"] == "plain_text"
        assert 1 <= len(option["text"]["text"]) <= 75
        assert 1 <= len(option["value"]) <= 150


def test_the_http_manifest_names_an_options_url_the_bot_serves() -> None:
    """The modal's group picker is an external select: Slack needs the options URL for it."""
    modal = home.build_allow_modal(users=[], groups=[], fixed=[])
    selects = [
        b["element"]
        for b in modal["blocks"]
        if "external_select" in b.get("element", {}).get("type", "")
    ]
    assert selects, "the allow-list modal has no external select any more: revisit the manifest"
    http = yaml.safe_load((REPO / "manifest.yml").read_text())["settings"]["interactivity"]
    url = http["message_menu_options_url"]
    assert url.endswith("/slack/events") and url.rsplit("/slack/", 1)[0] in http["request_url"]


async def test_the_group_picker_is_answered_over_http(bot: Bot) -> None:
    bot.slack.usergroups = {group: [] for group in GROUPS}
    bot.slack.usergroup_details = GROUPS
    payload = suggestion_payload("", team_id=bot.slack.team_id)
    status, text = await bot.post(form_payload_body(payload), FORM)
    assert status == 200
    options = json.loads(text)["options"]
    _assert_within_slacks_option_limits(options)
    assert [o["value"] for o in options] == list(GROUPS)
    assert options[0]["text"]["text"] == "@ml-team (ML team)"
    # Plain text: the name is shown as typed, nothing in it is markup or a mention.
    assert options[1]["text"]["text"] == "@ops (Ops <!channel> & friends)"
    assert options[2]["text"]["text"].endswith("…")
    # What is typed filters.
    status, text = await bot.post(
        form_payload_body(suggestion_payload("ML", team_id=bot.slack.team_id)), FORM
    )
    assert [o["value"] for o in json.loads(text)["options"]] == ["S0MLTEAM1"]


async def test_the_group_picker_offers_at_most_100_groups(bot: Bot) -> None:
    bot.slack.usergroups = {f"S{n:08d}": [] for n in range(250)}
    status, text = await bot.post(
        form_payload_body(suggestion_payload("", team_id=bot.slack.team_id)), FORM
    )
    assert status == 200
    options = json.loads(text)["options"]
    assert len(options) == 100
    _assert_within_slacks_option_limits(options)


async def test_the_group_picker_is_empty_not_broken_when_slack_refuses(bot: Bot) -> None:
    from tests.fakes.slack import error

    bot.slack.fail("usergroups.list", error("missing_scope"))
    status, text = await bot.post(
        form_payload_body(suggestion_payload("", team_id=bot.slack.team_id)), FORM
    )
    assert (status, json.loads(text)) == (200, {"options": []})


# --- Socket Mode ---------------------------------------------------------------------------


@pytest.fixture
async def socket_bot(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> AsyncIterator[Bot]:
    """The bot connected over Socket Mode as `python -m bot socket` connects it."""
    async with running_bot(slack, modelslab, sqlite_url, SLACK_APP_TOKEN=slack.app_token) as bot:
        handler = AsyncSocketModeHandler(bot.runtime.bolt_app, app_token=slack.app_token)
        await handler.connect_async()  # type: ignore[no-untyped-call]
        try:
            await slack.socket_connected(timeout=10)
            yield bot
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]


async def test_envelopes_the_bot_does_not_handle_are_acked(socket_bot: Bot) -> None:
    slack = socket_bot.slack
    event = event_payload({"type": "reaction_added", "user": ALICE, "reaction": "eyes"})
    ack = await slack.send_envelope("events_api", event)
    assert set(ack) == {"envelope_id"}, ack  # a bare ack: Slack does not retry it
    click = block_actions_payload(user_id=ALICE, action_id="not_ours")
    assert set(await slack.send_envelope("interactive", click)) == {"envelope_id"}
    command = slash_command_fields(text=TRAINING, command="/someone-elses")
    assert set(await slack.send_envelope("slash_commands", command)) == {"envelope_id"}
    # A type this app has never heard of is acked as well.
    assert set(await slack.send_envelope("no_such_type", {"type": "no_such_type"})) == {
        "envelope_id"
    }
    await assert_nothing_happened(socket_bot)


async def test_the_group_picker_is_answered_over_socket_mode(socket_bot: Bot) -> None:
    slack = socket_bot.slack
    slack.usergroups = {group: [] for group in GROUPS}
    slack.usergroup_details = GROUPS
    started = time.monotonic()
    ack = await slack.send_envelope("interactive", suggestion_payload("ops", team_id=slack.team_id))
    assert time.monotonic() - started < 3
    options = ack["payload"]["options"]
    _assert_within_slacks_option_limits(options)
    assert [o["value"] for o in options] == ["S0OPS0001"]
