"""The fake Slack behaves like Slack for slack_sdk's own clients, over real HTTP and websockets."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qs, parse_qsl

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.base import serve_on_loopback
from tests.fakes.slack import FakeSlack, error, hang, rate_limited, server_error
from tests.fakes.slack_requests import (
    FORM,
    JSON,
    block_actions_payload,
    event_body,
    form_payload_body,
    plain_text_value,
    sign,
    signed,
    slash_command_body,
    slash_command_fields,
    view_submission_payload,
)
from tests.harness import check_ack, sent_request
from tests.processes import post_signed

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0TRAIN01"
METADATA = {"event_type": "training_alert", "event_payload": {"training_id": "F5jvdzGnYi"}}
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "Training *F5jvdzGnYi*"}}]
MODAL = {"type": "modal", "title": {"type": "plain_text", "text": "Settings"}, "blocks": BLOCKS}


def web_client(fake: FakeSlack, token: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(
        token=token or fake.bot_token, base_url=fake.base_url, timeout=5, retry_handlers=[]
    )


# --- Web API -----------------------------------------------------------------------------


async def test_auth_test_checks_the_bearer_token(slack: FakeSlack) -> None:
    answer = await web_client(slack).auth_test()
    assert answer["team_id"] == "T0A1B2C3D"
    assert answer["user_id"] == "U0BOTUSER"
    assert answer["bot_id"] == "B0BOT0001"
    assert answer["is_enterprise_install"] is False
    assert slack.calls_to("auth.test")[0].token == slack.bot_token

    with pytest.raises(SlackApiError) as bad:
        await web_client(slack, "xoxb-wrong").auth_test()
    assert bad.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as app_level:
        await web_client(slack, slack.app_token).auth_test()
    assert app_level.value.response["error"] == "not_allowed_token_type"


async def test_post_update_thread_and_metadata_round_trip(slack: FakeSlack) -> None:
    client = web_client(slack)
    parent = await client.chat_postMessage(
        channel=CHANNEL, text="Training F5jvdzGnYi failed", blocks=BLOCKS, metadata=METADATA
    )
    assert parent["ts"] == "1764201600.000100"
    assert parent["channel"] == CHANNEL
    assert parent["message"]["metadata"] == METADATA
    reply = await client.chat_postMessage(channel=CHANNEL, thread_ts=parent["ts"], text="Cancelled")
    assert float(reply["ts"]) > float(parent["ts"])

    updated = await client.chat_update(channel=CHANNEL, ts=parent["ts"], text="Cancelled by bob")
    assert (updated["ts"], updated["text"]) == (parent["ts"], "Cancelled by bob")

    stored = slack.messages[CHANNEL][0]
    assert (stored.text, stored.blocks, stored.updates) == ("Cancelled by bob", BLOCKS, 1)
    assert stored.user == "U0BOTUSER"
    assert [m.text for m in slack.thread(CHANNEL, parent["ts"])] == ["Cancelled"]
    # chat.postMessage goes as JSON: blocks and metadata arrive as structures.
    assert slack.calls_to("chat.postMessage")[0].args["metadata"] == METADATA

    with_meta = await client.conversations_replies(
        channel=CHANNEL, ts=parent["ts"], include_all_metadata=True
    )
    assert [m["ts"] for m in with_meta["messages"]] == [parent["ts"], reply["ts"]]
    assert with_meta["messages"][0]["metadata"] == METADATA
    assert with_meta["messages"][0]["reply_count"] == 1
    assert with_meta["messages"][1]["thread_ts"] == parent["ts"]
    without = await client.conversations_replies(channel=CHANNEL, ts=parent["ts"])
    assert "metadata" not in without["messages"][0]

    later = await client.chat_postMessage(channel=CHANNEL, text="Next alert")
    history = await client.conversations_history(channel=CHANNEL, include_all_metadata=True)
    assert [m["ts"] for m in history["messages"]] == [later["ts"], parent["ts"]]
    assert history["messages"][1]["metadata"] == METADATA

    with pytest.raises(SlackApiError) as missing:
        await client.chat_update(channel=CHANNEL, ts="1.000001", text="x")
    assert missing.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as no_thread:
        await client.conversations_replies(channel=CHANNEL, ts="1.000001")
    assert no_thread.value.response["error"] == "thread_not_found"


async def test_form_bodies_with_json_string_fields_and_token_in_form(slack: FakeSlack) -> None:
    client = AsyncWebClient(base_url=slack.base_url, timeout=5)
    await client.api_call(
        "chat.postMessage",
        data={
            "token": slack.bot_token,
            "channel": CHANNEL,
            "text": "t",
            "blocks": json.dumps(BLOCKS),
            "metadata": json.dumps(METADATA),
        },
    )
    call = slack.calls_to("chat.postMessage")[0]
    assert call.token == slack.bot_token
    assert "token" not in call.args
    assert (call.args["blocks"], call.args["metadata"]) == (BLOCKS, METADATA)
    assert slack.messages[CHANNEL][0].metadata == METADATA


async def test_seeded_messages_are_threaded_under(slack: FakeSlack) -> None:
    alert = slack.add_message(CHANNEL, "Training F5jvdzGnYi started")
    await web_client(slack).chat_postMessage(channel=CHANNEL, thread_ts=alert.ts, text="ok")
    assert [m.text for m in slack.thread(CHANNEL, alert.ts)] == ["ok"]
    with pytest.raises(SlackApiError) as foreign:
        await web_client(slack).chat_update(channel=CHANNEL, ts=alert.ts, text="x")
    assert foreign.value.response["error"] == "cant_update_message"


async def test_faults_are_consumed_in_order_then_normal(slack: FakeSlack) -> None:
    client = web_client(slack)
    slack.fail("chat.postMessage", rate_limited(3), error("not_in_channel"), server_error(503))

    with pytest.raises(SlackApiError) as limited:
        await client.chat_postMessage(channel=CHANNEL, text="1")
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "3"
    assert limited.value.response["error"] == "ratelimited"
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel=CHANNEL, text="2")
    assert refused.value.response.status_code == 200
    assert refused.value.response["error"] == "not_in_channel"
    with pytest.raises(SlackApiError) as failing:
        await client.chat_postMessage(channel=CHANNEL, text="3")
    assert failing.value.response.status_code == 503
    assert (await client.chat_postMessage(channel=CHANNEL, text="4"))["ok"] is True
    assert [m.text for m in slack.messages[CHANNEL]] == ["4"]
    assert len(slack.calls_to("chat.postMessage")) == 4


async def test_faults_for_one_channel_only(slack: FakeSlack) -> None:
    client = web_client(slack)
    slack.fail("chat.postMessage", error("channel_not_found"), channel="C0OTHER01")
    assert (await client.chat_postMessage(channel=CHANNEL, text="here"))["ok"] is True
    with pytest.raises(SlackApiError) as other:
        await client.chat_postMessage(channel="C0OTHER01", text="there")
    assert other.value.response["error"] == "channel_not_found"


async def test_hang_never_answers_and_stop_does_not_block() -> None:
    fake = FakeSlack()
    await fake.start()
    fake.fail("auth.test", hang())
    pending = asyncio.create_task(web_client(fake).auth_test())
    await fake.wait_for("auth.test")
    await asyncio.sleep(0.05)
    assert not pending.done()
    started = time.monotonic()
    await fake.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the client makes of a dropped connection
        await asyncio.wait_for(pending, 5)


async def test_workspace_state(slack: FakeSlack) -> None:
    client = web_client(slack)
    slack.usergroups["S0ADMINS1"] = ["U0ALICE01"]
    slack.users["U0ALICE01"] = {"is_admin": True}
    assert (await client.usergroups_users_list(usergroup="S0ADMINS1"))["users"] == ["U0ALICE01"]
    with pytest.raises(SlackApiError) as unknown:
        await client.usergroups_users_list(usergroup="S0NOPE001")
    assert unknown.value.response["error"] == "no_such_subteam"
    slack.paid_plan = False
    with pytest.raises(SlackApiError) as free:
        await client.usergroups_users_list(usergroup="S0ADMINS1")
    assert free.value.response["error"] == "plan_upgrade_required"

    alice = (await client.users_info(user="U0ALICE01"))["user"]
    assert (alice["id"], alice["is_admin"], alice["team_id"]) == ("U0ALICE01", True, "T0A1B2C3D")
    assert (await client.users_info(user="U0BOB0001"))["user"]["is_admin"] is False

    slack.channels_without_bot.add("C0PRIVATE")
    with pytest.raises(SlackApiError) as outside:
        await client.chat_postMessage(channel="C0PRIVATE", text="x")
    assert outside.value.response["error"] == "not_in_channel"

    eph = await client.chat_postEphemeral(channel=CHANNEL, user="U0BOB0001", text="denied")
    assert eph["message_ts"]
    home = await client.views_publish(user_id="U0ALICE01", view={"type": "home", "blocks": []})
    modal = await client.views_open(trigger_id=slack.new_trigger_id(), view=MODAL)
    again = await client.views_update(view_id=modal["view"]["id"], view=MODAL)
    assert home["view"]["id"] and again["view"]["id"] == modal["view"]["id"]
    assert slack.home_tabs["U0ALICE01"]["type"] == "home"

    with pytest.raises(SlackApiError) as nope:
        await client.api_call("chat.scheduleMessage", json={"channel": CHANNEL})
    assert nope.value.response["error"] == "unknown_method"


@pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")  # slack_sdk
async def test_oauth_code_exchange_and_installed_token(slack: FakeSlack) -> None:
    slack.oauth_teams["code-1"] = {
        "team_id": "T0SECOND1",
        "team_name": "Second",
        "bot_token": "xoxb-second",
        "authed_user": "U0INSTALL",
    }
    client = AsyncWebClient(base_url=slack.base_url, timeout=5)
    answer = await client.oauth_v2_access(
        client_id="111.222", client_secret="s3cret", code="code-1"
    )
    assert answer["access_token"] == "xoxb-second"
    assert answer["team"] == {"id": "T0SECOND1", "name": "Second"}
    assert answer["authed_user"] == {"id": "U0INSTALL"}
    assert answer["token_type"] == "bot" and answer["enterprise"] is None
    assert slack.calls_to("oauth.v2.access")[0].args["client_id"] == "111.222"
    with pytest.raises(SlackApiError) as reused:
        await client.oauth_v2_access(client_id="111.222", client_secret="s3cret", code="code-1")
    assert reused.value.response["error"] == "invalid_code"
    assert (await client.auth_test(token="xoxb-second"))["team_id"] == "T0SECOND1"


async def test_response_url_posts_are_recorded(slack: FakeSlack) -> None:
    hook = AsyncWebhookClient(slack.response_url("r1"))
    answer = await hook.send(text="Cancelling…", response_type="ephemeral")
    assert answer.status_code == 200
    await hook.send(text="Done", replace_original=True)
    posts = await slack.wait_for_response("r1", 2)
    assert posts[0] == {"text": "Cancelling…", "response_type": "ephemeral"}
    assert posts[1]["replace_original"] is True

    slack.fail_response("r2", server_error(404))
    assert (await AsyncWebhookClient(slack.response_url("r2")).send(text="x")).status_code == 404
    with pytest.raises(AssertionError, match="response_url 'r2'"):
        await slack.wait_for_response("r2", timeout=0.05)


async def test_wait_for_wakes_up_and_times_out_with_the_calls_seen(slack: FakeSlack) -> None:
    client = web_client(slack)
    waiter = asyncio.create_task(
        slack.wait_for("chat.postMessage", where=lambda c: c.args.get("text") == "b")
    )
    await client.chat_postMessage(channel=CHANNEL, text="a")
    await asyncio.sleep(0)
    assert not waiter.done()
    await client.chat_postMessage(channel=CHANNEL, text="b")
    assert [c.args["text"] for c in await asyncio.wait_for(waiter, 2)] == ["b"]

    started = time.monotonic()
    with pytest.raises(AssertionError) as timeout:
        await slack.wait_for("chat.update", timeout=0.1)
    assert time.monotonic() - started < 1
    assert "chat.update" in str(timeout.value)
    assert '"text": "a"' in str(timeout.value)


# --- requests as Slack signs them --------------------------------------------------------


def test_signatures_verify_with_slack_sdk() -> None:
    verifier = SignatureVerifier(SECRET)
    body = slash_command_body(text="F5jvdzGnYi")
    headers = signed(body, SECRET, content_type=FORM)
    assert headers["Content-Type"] == FORM
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"x", headers)
    assert not verifier.is_valid_request(body, sign(body, "other-secret"))
    stale = sign(body, SECRET, timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body, stale)
    assert (
        verifier.is_valid(body, stale["X-Slack-Request-Timestamp"], stale["X-Slack-Signature"])
        is False
    )


def test_slash_command_body_is_flat_form_in_slacks_order() -> None:
    body = slash_command_body(text="F5jvdzGnYi now", enterprise_id="E0ORG0001")
    assert body.startswith(b"token=legacy-token&team_id=T0A1B2C3D&team_domain=acme-ml&")
    assert b"command=%2Fcancel-training" in body and b"text=F5jvdzGnYi+now" in body
    fields = dict(parse_qsl(body.decode()))
    assert fields["response_url"] == "https://hooks.slack.com/commands/T0A1B2C3D/1/x"
    assert fields["enterprise_id"] == "E0ORG0001" and "thread_ts" not in fields
    assert fields == slash_command_fields(text="F5jvdzGnYi now", enterprise_id="E0ORG0001")


def test_block_actions_payload_shapes() -> None:
    plain = block_actions_payload()
    assert plain["container"]["message_ts"] == plain["message"]["ts"] == "1764201600.000100"
    assert plain["actions"][0]["value"] == "F5jvdzGnYi"
    threaded = block_actions_payload(thread_ts="1764201500.000100")
    assert threaded["container"]["thread_ts"] == threaded["message"]["thread_ts"]
    ephemeral = block_actions_payload(ephemeral=True)
    assert "message" not in ephemeral and ephemeral["container"]["is_ephemeral"] is True
    org = block_actions_payload(enterprise_org_wide=True)
    assert org["team"] is None and org["user"]["team_id"] == "T0A1B2C3D"

    body = form_payload_body(plain)
    assert body.startswith(b"payload=%7B")
    assert json.loads(parse_qs(body.decode())["payload"][0]) == plain


def test_view_submission_and_event_bodies() -> None:
    values = {"admins": {"group": plain_text_value("S0ADMINS1")}}
    sub = view_submission_payload(callback_id="settings", values=values, private_metadata="C0")
    assert sub["view"]["state"]["values"] == values
    assert (sub["view"]["callback_id"], sub["view"]["private_metadata"]) == ("settings", "C0")
    event: dict[str, Any] = {"type": "app_home_opened", "user": "U0ALICE01", "tab": "home"}
    parsed = json.loads(event_body(event, event_id="Ev0042"))
    assert parsed["type"] == "event_callback" and parsed["event"] == event
    assert parsed["event_id"] == "Ev0042" and parsed["team_id"] == "T0A1B2C3D"
    assert signed(b"{}", SECRET, content_type=JSON)["Content-Type"] == JSON


# --- Socket Mode -------------------------------------------------------------------------


async def test_socket_mode_round_trip_with_slack_sdk(slack: FakeSlack) -> None:
    client = SocketModeClient(
        app_token=slack.app_token,
        web_client=AsyncWebClient(base_url=slack.base_url, timeout=5),
    )
    received: list[SocketModeRequest] = []

    async def on_request(socket: SocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        await socket.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload={"text": "on it"})
        )

    client.socket_mode_request_listeners.append(on_request)  # type: ignore[arg-type]
    try:
        await client.connect()  # type: ignore[no-untyped-call]
        await slack.socket_connected()
        assert slack.calls_to("apps.connections.open")[0].token == slack.app_token

        ack = await slack.send_envelope("slash_commands", slash_command_fields(text="F5jvdzGnYi"))
        assert ack["payload"] == {"text": "on it"}
        assert ack["envelope_id"] == received[0].envelope_id
        assert received[0].type == "slash_commands"
        assert received[0].payload["text"] == "F5jvdzGnYi"

        await slack.disconnect_socket()
        await slack.socket_connected(count=2)
        assert len(slack.calls_to("apps.connections.open")) == 2
        ack = await slack.send_envelope("interactive", block_actions_payload())
        assert received[-1].type == "interactive"
    finally:
        await client.close()  # type: ignore[no-untyped-call]


async def test_socket_hello_pong_and_silence(slack: FakeSlack) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(slack.socket_url, autoping=False) as ws,
    ):
        hello = await ws.receive_json(timeout=2)
        assert hello["type"] == "hello" and hello["num_connections"] == 1
        await ws.ping(b"p1")
        pong = await ws.receive(timeout=2)
        assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"p1")

        slack.go_silent()
        await ws.ping(b"p2")
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive(timeout=0.2)
        assert not ws.closed
        with pytest.raises(AssertionError, match="no Socket Mode client"):
            await slack.socket_connected(timeout=0.05)
    assert slack.socket_connections == 1

    with pytest.raises(SlackApiError) as wrong:
        await web_client(slack).apps_connections_open(app_token=slack.bot_token)
    assert wrong.value.response["error"] == "not_allowed_token_type"


# --- as strict as Slack ------------------------------------------------------------------

LONG_HEADER = [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}]


async def test_a_payload_slack_refuses_gets_slacks_error_and_fails_the_test() -> None:
    fake = FakeSlack()
    await fake.__aenter__()
    with pytest.raises(SlackApiError) as refused:
        await web_client(fake).chat_postMessage(channel=CHANNEL, text="t", blocks=LONG_HEADER)
    answer = refused.value.response
    assert answer["error"] == "invalid_blocks"
    assert answer["errors"] == [
        "must be less than 151 characters [json-pointer:/blocks/0/text/text]"
    ]
    assert answer["response_metadata"]["messages"][0].startswith("[ERROR] must be less")
    assert fake.messages[CHANNEL] == []
    [rejection] = fake.rejections
    assert (rejection.where, rejection.answered) == ("chat.postMessage", "invalid_blocks")
    # Leaving `async with FakeSlack()` (every fixture does) fails the test with the problems.
    with pytest.raises(AssertionError, match=r"(?s)real Slack refuses.*/blocks/0/text/text"):
        await fake.__aexit__(None, None, None)


async def test_expected_rejections_do_not_fail_the_test(slack: FakeSlack) -> None:
    slack.expect_rejections()
    with pytest.raises(SlackApiError):
        await web_client(slack).views_publish(
            user_id="U0ALICE01", view={"type": "home", "blocks": LONG_HEADER}
        )
    assert [r.answered for r in slack.rejections] == ["invalid_arguments"]
    slack.check_rejections()  # declared: nothing raised


@pytest.mark.filterwarnings("ignore:The top-level `text` argument:UserWarning")
async def test_a_payload_slack_misrenders_is_posted_and_still_fails_the_test(
    slack: FakeSlack,
) -> None:
    slack.expect_rejections()
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Title <!channel> & co"}}]
    answer = await web_client(slack).chat_postMessage(channel=CHANNEL, blocks=blocks)
    assert answer["ok"] is True and slack.messages[CHANNEL][0].blocks == blocks  # as at Slack
    [rejection] = slack.rejections
    assert rejection.answered is None
    assert [p.split(" ")[0:2] for p in rejection.problems] == [
        ["<!channel>", "is"],  # a broadcast mention: it pings everyone
        ["unescaped", "'&'"],
        ["blocks", "without"],  # a top-level text fallback
    ]
    slack.rejections_expected = False
    with pytest.raises(AssertionError, match="broadcast mention"):
        slack.check_rejections()
    slack.rejections_expected = True


@pytest.mark.filterwarnings("ignore:The top-level `text` argument:UserWarning")
async def test_wrong_arguments_get_slacks_answer(slack: FakeSlack) -> None:
    slack.expect_rejections()
    client = web_client(slack)
    with pytest.raises(SlackApiError) as no_text:
        await client.chat_postMessage(channel=CHANNEL)
    assert no_text.value.response["error"] == "no_text"
    with pytest.raises(SlackApiError) as too_long:
        await client.chat_postMessage(channel=CHANNEL, text="x" * 40_001)
    assert too_long.value.response["error"] == "msg_too_long"
    with pytest.raises(SlackApiError) as bad_ts:
        await client.chat_update(channel=CHANNEL, ts="latest", text="x")
    assert bad_ts.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as bad_limit:
        await client.conversations_history(channel=CHANNEL, limit="lots")  # type: ignore[arg-type]
    assert bad_limit.value.response["error"] == "invalid_arguments"
    assert [r.answered for r in slack.rejections] == [
        "no_text",
        "msg_too_long",
        "invalid_arguments",
        "invalid_arguments",
    ]
    # A bad token is answered before any argument is looked at, as at Slack.
    with pytest.raises(SlackApiError) as unauthorised:
        await web_client(slack, "xoxb-wrong").chat_postMessage(channel=CHANNEL)
    assert unauthorised.value.response["error"] == "invalid_auth"
    assert len(slack.rejections) == 4


async def test_trigger_ids_are_used_once_within_3_seconds(slack: FakeSlack) -> None:
    slack.expect_rejections()
    client = web_client(slack)
    trigger = slack.new_trigger_id()
    assert (await client.views_open(trigger_id=trigger, view=MODAL))["ok"] is True
    with pytest.raises(SlackApiError) as again:
        await client.views_open(trigger_id=trigger, view=MODAL)
    assert again.value.response["error"] == "exchanged_trigger_id"

    late = slack.new_trigger_id()
    slack.advance(3.1)
    with pytest.raises(SlackApiError) as expired:
        await client.views_push(trigger_id=late, view=MODAL)
    assert expired.value.response["error"] == "expired_trigger_id"
    with pytest.raises(SlackApiError) as unknown:
        await client.views_open(trigger_id="12345.98765.abcd2358fdea", view=MODAL)
    assert unknown.value.response["error"] == "invalid_trigger_id"
    assert [r.answered for r in slack.rejections] == [
        "exchanged_trigger_id",
        "expired_trigger_id",
        "invalid_trigger_id",
    ]

    # What Slack sends (built with slack=, or seen by the harness) carries a fresh trigger.
    click = block_actions_payload(slack=slack)
    assert (await client.views_open(trigger_id=click["trigger_id"], view=MODAL))["ok"] is True
    slack.issue_trigger_id("1111.2222.efgh")
    assert (await client.views_push(trigger_id="1111.2222.efgh", view=MODAL))["ok"] is True
    fields = slash_command_fields(text="x", slack=slack)
    assert fields["trigger_id"] != slash_command_fields(text="x", slack=slack)["trigger_id"]
    assert view_submission_payload(callback_id="c", values={}, slack=slack)["trigger_id"]


async def test_views_update_needs_the_current_hash(slack: FakeSlack) -> None:
    client = web_client(slack)
    opened = await client.views_open(trigger_id=slack.new_trigger_id(), view=MODAL)
    view_id, old_hash = opened["view"]["id"], opened["view"]["hash"]
    await client.views_update(view_id=view_id, hash=old_hash, view=MODAL)
    with pytest.raises(SlackApiError) as stale:
        await client.views_update(view_id=view_id, hash=old_hash, view=MODAL)
    assert stale.value.response["error"] == "hash_conflict"


async def test_a_response_url_takes_5_posts_within_30_minutes(slack: FakeSlack) -> None:
    slack.expect_rejections()
    url = slack.response_url("cmd")
    assert url != slack.response_url("cmd")  # one URL per request, as Slack issues them
    hook = AsyncWebhookClient(url)
    for i in range(5):
        assert (await hook.send(text=f"update {i}")).status_code == 200
    sixth = await hook.send(text="one too many")
    assert (sixth.status_code, sixth.body) == (404, "used_url")
    assert len(await slack.wait_for_response("cmd", 5)) == 5

    stale = AsyncWebhookClient(slack.response_url("cmd"))
    slack.advance(30 * 60 + 1)
    expired = await stale.send(text="late")
    assert (expired.status_code, expired.body) == (404, "expired_url")

    fresh = AsyncWebhookClient(slack.response_url("bad"))
    refused = await fresh.send(text="t", blocks=LONG_HEADER)
    assert (refused.status_code, refused.body) == (400, "invalid_blocks")
    assert (await fresh.send(response_type="ephemeral")).body == "no_text"
    assert (await fresh.send(text="usage: /cancel-training <id>")).status_code == 200
    assert [p["text"] for p in slack.response_posts["bad"]] == ["usage: /cancel-training <id>"]
    assert [r.answered for r in slack.rejections] == [
        "used_url",
        "expired_url",
        "invalid_blocks",
        "no_text",
        None,
    ]


async def test_permalinks_open_the_message(slack: FakeSlack) -> None:
    client = web_client(slack)
    parent = await client.chat_postMessage(channel=CHANNEL, text="Training F5jvdzGnYi")
    reply = await client.chat_postMessage(channel=CHANNEL, text="done", thread_ts=parent["ts"])
    link = await client.chat_getPermalink(channel=CHANNEL, message_ts=parent["ts"])
    assert link["permalink"] == "https://acme-ml.slack.com/archives/C0TRAIN01/p1764201600000100"
    threaded = await client.chat_getPermalink(channel=CHANNEL, message_ts=reply["ts"])
    assert threaded["permalink"] == (
        "https://acme-ml.slack.com/archives/C0TRAIN01/p1764201600000200"
        f"?thread_ts={parent['ts']}&cid={CHANNEL}"
    )
    with pytest.raises(SlackApiError) as missing:
        await client.chat_getPermalink(channel=CHANNEL, message_ts="1.000001")
    assert missing.value.response["error"] == "message_not_found"


async def test_usergroups_list_for_an_options_handler(slack: FakeSlack) -> None:
    client = web_client(slack)
    slack.usergroups = {"S0ADMINS1": ["U0ALICE01", "U0BOB0001"], "S0ML00001": []}
    slack.usergroup_details["S0ADMINS1"] = {"name": "Admins", "handle": "admins"}
    listed = await client.usergroups_list(include_users=True, include_count=True)
    admins, ml = listed["usergroups"]
    assert (admins["id"], admins["handle"], admins["name"]) == ("S0ADMINS1", "admins", "Admins")
    assert (admins["users"], admins["user_count"], ml["user_count"]) == (
        ["U0ALICE01", "U0BOB0001"],
        2,
        0,
    )
    assert "users" not in (await client.usergroups_list())["usergroups"][0]
    slack.paid_plan = False
    with pytest.raises(SlackApiError) as free:
        await client.usergroups_list()
    assert free.value.response["error"] == "plan_upgrade_required"


async def test_limited_history_caps_items_and_rate(slack: FakeSlack) -> None:
    client = web_client(slack)
    parent = slack.add_message(CHANNEL, "Training F5jvdzGnYi started")
    for i in range(20):
        slack.add_message(CHANNEL, f"reply {i}", thread_ts=parent.ts)
        slack.add_message(CHANNEL, f"alert {i}")
    assert len((await client.conversations_history(channel=CHANNEL, limit=100))["messages"]) == 21

    slack.limited_history = True
    slack.advance(61)  # the call above happened while the cap was off; start afresh
    history = await client.conversations_history(channel=CHANNEL, limit=100)
    assert len(history["messages"]) == 15 and history["has_more"] is True
    with pytest.raises(SlackApiError) as limited:
        await client.conversations_history(channel=CHANNEL, limit=5)
    assert limited.value.response.status_code == 429
    assert limited.value.response.headers["Retry-After"] == "60"
    replies = await client.conversations_replies(channel=CHANNEL, ts=parent.ts)
    assert len(replies["messages"]) == 15  # another method has its own minute
    slack.advance(60)
    assert len((await client.conversations_history(channel=CHANNEL, limit=3))["messages"]) == 3


async def test_socket_mode_acks_are_checked_like_messages(slack: FakeSlack) -> None:
    slack.expect_rejections()
    client = SocketModeClient(
        app_token=slack.app_token,
        web_client=AsyncWebClient(base_url=slack.base_url, timeout=5),
    )

    async def on_request(socket: SocketModeClient, req: SocketModeRequest) -> None:
        await socket.send_socket_mode_response(
            SocketModeResponse(
                envelope_id=req.envelope_id, payload={"text": "usage: <training_id>"}
            )
        )

    client.socket_mode_request_listeners.append(on_request)  # type: ignore[arg-type]
    try:
        await client.connect()  # type: ignore[no-untyped-call]
        await slack.send_envelope("slash_commands", slash_command_fields(text="junk"))
        await slack.send_envelope("interactive", block_actions_payload())  # body is ignored
    finally:
        await client.close()  # type: ignore[no-untyped-call]
    [rejection] = slack.rejections
    assert rejection.where == "envelope slash_commands"
    assert "<training_id> is not a Slack token" in rejection.problems[0]


async def test_the_harness_checks_http_answers(slack: FakeSlack) -> None:
    slack.expect_rejections()
    command = sent_request(slash_command_body(text="junk"), FORM)
    assert command["command"] == "/cancel-training"
    click = sent_request(form_payload_body(block_actions_payload()), FORM)
    assert click["type"] == "block_actions"
    assert sent_request(event_body({"type": "app_home_opened"}), JSON)["type"] == "event_callback"
    assert sent_request(b"payload=%7Bbad", FORM) == {}

    check_ack(slack, command, '{"text": "usage: /cancel-training &lt;training_id&gt;"}')
    check_ack(slack, command, "")
    check_ack(slack, click, '{"whatever": 1}')
    assert slack.rejections == []
    check_ack(slack, command, '{"text": "usage: /cancel-training <training_id>"}')
    check_ack(
        slack,
        sent_request(form_payload_body({"type": "block_suggestion"}), FORM),
        '{"options": []}',
    )
    assert [r.where for r in slack.rejections] == ["ack slash_command"]
    submission = sent_request(
        form_payload_body(view_submission_payload(callback_id="c", values={})), FORM
    )
    check_ack(
        slack, submission, json.dumps({"response_action": "update", "view": {"type": "modal"}})
    )
    assert [r.where for r in slack.rejections] == ["ack slash_command", "ack view_submission"]


async def test_the_process_helper_checks_acks_as_the_harness_does(slack: FakeSlack) -> None:
    """``processes.post_signed`` (the subprocess tests' Slack) records an ack Slack would refuse."""
    answers = iter(['{"text": "usage: /cancel-training &lt;training_id&gt;"}', '{"text": "a <b"}'])

    async def events(_: web.Request) -> web.Response:
        return web.Response(text=next(answers), content_type="application/json")

    app = web.Application()
    app.router.add_post("/slack/events", events)
    runner, port = await serve_on_loopback(app)
    try:
        slack.expect_rejections()
        url, body = f"http://127.0.0.1:{port}", slash_command_body(text="junk")
        assert (await post_signed(slack, url, body))[0] == 200
        assert slack.rejections == []
        assert (await post_signed(slack, url, body))[0] == 200
        assert [r.where for r in slack.rejections] == ["ack slash_command"]
    finally:
        await runner.cleanup()
