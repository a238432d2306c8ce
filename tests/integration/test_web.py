"""The web layer in front of Bolt, through real HTTP to a running bot (design §2, §5, §7).

Bad input is refused with a 4xx — never a 500, a hang or a crash — and reaches neither ModelsLab
nor Slack's chat methods; the bot keeps answering ``/healthz`` after every hostile request.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.web import app as web_module
from bot.web.app import MAX_BODY, BadRequest, _parse_form, parse_slack_body
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import (
    FORM,
    JSON,
    block_actions_payload,
    event_body,
    form_payload_body,
    sign,
    signed,
    slash_command_body,
    url_verification_body,
)
from tests.harness import ALICE, CHANNEL, HTTP_TIMEOUT, TRAINING, Bot, running_bot

T = TypeVar("T")
HeaderBuilder = Callable[[bytes, str], dict[str, str]]  # (body, signing secret) -> headers
NOTIFICATION_TS = "1764201600.000100"  # block_actions_payload's default message_ts


# --- helpers -----------------------------------------------------------------------------


def alice_cancels() -> bytes:
    """A command that *would* cancel TRAINING if it got through: ALICE is on the allow-list."""
    return slash_command_body(text=TRAINING, user_id=ALICE)


async def post_signed(bot: Bot, body: bytes, content_type: str) -> tuple[int, str]:
    """POST ``body`` signed correctly, as Slack would."""
    return await bot.send(body, signed(body, bot.secret, content_type=content_type))


async def assert_healthy(bot: Bot) -> None:
    async with bot.session.get(f"{bot.url}/healthz", timeout=HTTP_TIMEOUT) as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"


async def assert_untouched(bot: Bot, *, private_replies: bool = False) -> None:
    """Still serving; no cancellation claimed, no ModelsLab call, no chat.* call, and no
    response_url post (or, with ``private_replies``, only ones that leave the message alone)."""
    await assert_healthy(bot)
    assert await bot.runtime.store.cancellations.recent(bot.runtime.workspace_id) == []
    assert bot.modelslab.calls == []
    assert [c.method for c in bot.slack.calls if c.method.startswith("chat.")] == []
    posts = [post for posts in bot.slack.response_posts.values() for post in posts]
    if not private_replies:
        assert posts == []
    for post in posts:
        assert post.get("replace_original") is False and not post.get("delete_original"), post


async def save_notification(bot: Bot) -> None:
    """The notification a click on block_actions_payload()'s message belongs to."""
    await bot.runtime.store.notifications.save(
        workspace_id=bot.runtime.workspace_id,
        training_id=TRAINING,
        channel_id=CHANNEL,
        message_ts=NOTIFICATION_TS,
    )


# --- signature: 401 ----------------------------------------------------------------------


def _headers_forged(body: bytes, secret: str) -> dict[str, str]:
    return {**sign(body, secret), "X-Slack-Signature": "v0=" + "0" * 64}


def _headers_wrong_secret(body: bytes, secret: str) -> dict[str, str]:
    return sign(body, "0123456789abcdef0123456789abcdef")


def _headers_old(body: bytes, secret: str) -> dict[str, str]:
    return sign(body, secret, timestamp=int(time.time()) - 6 * 60)


def _headers_future(body: bytes, secret: str) -> dict[str, str]:
    return sign(body, secret, timestamp=int(time.time()) + 6 * 60)


def _headers_replayed_fresh_timestamp(body: bytes, secret: str) -> dict[str, str]:
    # A captured request's signature, replayed later with the timestamp header moved forward.
    captured = sign(body, secret, timestamp=int(time.time()) - 10 * 60)
    return {**captured, "X-Slack-Request-Timestamp": str(int(time.time()))}


def _headers_without(*names: str) -> HeaderBuilder:
    def build(body: bytes, secret: str) -> dict[str, str]:
        return {k: v for k, v in sign(body, secret).items() if k not in names}

    return build


def _headers_timestamp(value: str) -> HeaderBuilder:
    def build(body: bytes, secret: str) -> dict[str, str]:
        return {**sign(body, secret), "X-Slack-Request-Timestamp": value}

    return build


def _headers_signature(value: str) -> HeaderBuilder:
    def build(body: bytes, secret: str) -> dict[str, str]:
        return {**sign(body, secret), "X-Slack-Signature": value}

    return build


@pytest.mark.parametrize(
    "make_headers",
    [
        pytest.param(_headers_forged, id="forged-signature"),
        pytest.param(_headers_wrong_secret, id="wrong-secret"),
        pytest.param(_headers_old, id="timestamp-older-than-5-minutes"),
        pytest.param(_headers_future, id="timestamp-5-minutes-ahead"),
        pytest.param(_headers_replayed_fresh_timestamp, id="replay-with-refreshed-timestamp"),
        pytest.param(
            _headers_without("X-Slack-Signature", "X-Slack-Request-Timestamp"), id="no-headers"
        ),
        pytest.param(_headers_without("X-Slack-Signature"), id="no-signature"),
        pytest.param(_headers_without("X-Slack-Request-Timestamp"), id="no-timestamp"),
        pytest.param(_headers_timestamp(""), id="empty-timestamp"),
        pytest.param(_headers_timestamp("abc"), id="non-numeric-timestamp"),
        pytest.param(_headers_timestamp("1e9"), id="float-timestamp"),
        pytest.param(_headers_timestamp("-1"), id="negative-timestamp"),
        pytest.param(_headers_timestamp("9" * 400), id="timestamp-too-big-for-a-float"),
        pytest.param(_headers_timestamp("9" * 5000), id="timestamp-too-long-for-int"),
        pytest.param(_headers_signature(""), id="empty-signature"),
        pytest.param(_headers_signature("v0=\u00e9\u00e9"), id="non-ascii-signature"),
        pytest.param(_headers_signature("v1=" + "0" * 64), id="other-version"),
    ],
)
async def test_bad_signatures_are_refused_with_401(bot: Bot, make_headers: HeaderBuilder) -> None:
    body = alice_cancels()
    headers = {"Content-Type": FORM, **make_headers(body, bot.secret)}
    status, _ = await bot.send(body, headers)
    assert status == 401
    await assert_untouched(bot)


async def test_a_request_replayed_after_five_minutes_is_refused(bot: Bot) -> None:
    body = alice_cancels()
    captured = signed(body, bot.secret, content_type=FORM, timestamp=int(time.time()) - 301)
    for _ in range(2):  # the same bytes, twice, as a replaying attacker sends them
        status, _ = await bot.send(body, captured)
        assert status == 401
        await assert_untouched(bot)


async def test_the_signature_covers_the_whole_body(bot: Bot) -> None:
    body = alice_cancels()
    headers = signed(body, bot.secret, content_type=FORM)
    status, _ = await bot.send(body + b"&extra=1", headers)
    assert status == 401
    await assert_untouched(bot)


async def test_unsigned_url_verification_is_refused(bot: Bot) -> None:
    status, _ = await bot.send(url_verification_body(), {"Content-Type": JSON})
    assert status == 401
    await assert_healthy(bot)


# --- size and encoding: 413, 400 ---------------------------------------------------------


def _oversized_command() -> bytes:
    body = alice_cancels() + b"&padding="
    return body + b"p" * (MAX_BODY + 1 - len(body))


async def _chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]
        await asyncio.sleep(0)


async def test_body_over_1_mib_with_content_length_is_413(bot: Bot) -> None:
    body = _oversized_command()
    assert len(body) == MAX_BODY + 1
    status, _ = await post_signed(bot, body, FORM)  # correctly signed: size comes first
    assert status == 413
    await assert_untouched(bot)


async def test_body_over_1_mib_chunked_is_413(bot: Bot) -> None:
    body = _oversized_command()
    headers = signed(body, bot.secret, content_type=FORM)
    status, _ = await bot.send(_chunks(body), headers)  # no Content-Length: chunked encoding
    assert status == 413
    await assert_untouched(bot)


async def test_endless_chunked_body_is_cut_off_with_413(bot: Bot) -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536
            await asyncio.sleep(0)

    headers = signed(b"", bot.secret, content_type=FORM)
    status, _ = await bot.send(endless(), headers)
    assert status == 413
    await assert_untouched(bot)


async def test_compressed_body_over_1_mib_when_inflated_is_413(bot: Bot) -> None:
    body = _oversized_command() + b"p" * (8 * MAX_BODY)
    packed = gzip.compress(body)
    headers = {
        **signed(body, bot.secret, content_type=FORM),
        "Content-Encoding": "gzip",
    }
    status, _ = await bot.send(packed, headers)
    assert status == 413
    await assert_untouched(bot)


async def test_body_of_exactly_1_mib_in_small_chunks_is_read_whole(bot: Bot) -> None:
    """The limit is on the whole body: a legitimate body arriving in many pieces is not cut short."""
    body = slash_command_body(text="help", user_id=ALICE) + b"&padding="
    body += b"p" * (MAX_BODY - len(body))
    assert len(body) == MAX_BODY
    headers = signed(body, bot.secret, content_type=FORM)
    status, text = await bot.send(_chunks(body, size=4096), headers)
    assert status == 200, (status, text[:200])
    assert "/cancel-training history" in json.loads(text)["text"]


async def test_a_body_that_never_finishes_is_408_not_a_hang(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_module, "BODY_TIMEOUT", 0.3)
    port = int(bot.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = (
            "POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: {FORM}\r\nContent-Length: 1000\r\n\r\n"
        )
        writer.write(head.encode() + b"text=only-part-of-it")  # …and nothing more, ever
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    assert status_line.split()[1] == b"408"
    await assert_untouched(bot)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"text=\xff\xfe", id="invalid-start-byte"),
        pytest.param(b"text=caf\xc3", id="truncated-sequence"),
        pytest.param(b"text=\xed\xa0\x80", id="encoded-surrogate"),
        pytest.param(b"text=\xc0\xaf", id="overlong-slash"),
        pytest.param("text=café".encode("latin-1"), id="latin-1"),
    ],
)
async def test_non_utf8_body_is_400(bot: Bot, body: bytes) -> None:
    status, _ = await post_signed(bot, body, FORM)
    assert status == 400
    await assert_untouched(bot)


# --- parsing: 400 (what parses but no listener handles: 200, nothing done) ---------------


def _payload(data: Any) -> bytes:
    return urlencode({"payload": json.dumps(data)}).encode()


def _without(payload: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in keys}


def _user_without_team() -> dict[str, Any]:
    payload = block_actions_payload(user_id=ALICE)
    payload["user"] = _without(payload["user"], "team_id")
    return _without(payload, "team")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"payload=%7Bbad", FORM, id="payload-not-json"),
        pytest.param(b"payload=", FORM, id="payload-empty"),
        pytest.param(_payload([1, 2]), FORM, id="payload-json-array"),
        pytest.param(_payload("block_actions"), FORM, id="payload-json-string"),
        pytest.param(_payload(None), FORM, id="payload-json-null"),
        pytest.param(_payload({"user": {"id": ALICE}}), FORM, id="payload-without-type"),
        pytest.param(_payload({"type": 7}), FORM, id="payload-type-not-a-string"),
        pytest.param(
            b"payload=" + quote("[" * 100_000).encode(), FORM, id="payload-nested-too-deep"
        ),
        pytest.param(b"payload=%ff", FORM, id="payload-percent-encoded-non-utf8"),
        pytest.param(b"{bad", JSON, id="json-body-bad"),
        pytest.param(b"{bad", FORM, id="form-body-that-is-bad-json"),
        pytest.param(b"[1]", JSON, id="json-body-array"),
        pytest.param(b"", JSON, id="json-body-empty"),
        pytest.param(b'{"token": "x"}', JSON, id="json-body-without-type"),
        pytest.param(b"[" * 100_000, JSON, id="json-body-nested-too-deep"),
        pytest.param(b"a=1&&=&b", FORM, id="form-malformed"),
        pytest.param(alice_cancels(), "text/plain", id="text-plain"),
        pytest.param(alice_cancels(), "multipart/form-data; boundary=x", id="multipart"),
        pytest.param(alice_cancels(), "application/octet-stream", id="octet-stream"),
        pytest.param(url_verification_body(), "application/xml", id="xml"),
        # Signed bodies whose shape Bolt or our listeners cannot read (were 500s, or listener crashes).
        pytest.param(
            _payload({**block_actions_payload(), "actions": []}), FORM, id="actions-empty"
        ),
        pytest.param(
            _payload({**block_actions_payload(), "actions": [5]}), FORM, id="actions-not-objects"
        ),
        pytest.param(
            _payload({**block_actions_payload(), "actions": "x"}), FORM, id="actions-a-string"
        ),
        pytest.param(_payload({**block_actions_payload(), "user": 5}), FORM, id="user-a-number"),
        pytest.param(_payload({**block_actions_payload(), "team": [1]}), FORM, id="team-a-list"),
        pytest.param(
            _payload({**block_actions_payload(), "enterprise": 5}), FORM, id="enterprise-a-number"
        ),
        pytest.param(
            _payload({**block_actions_payload(), "container": "x"}), FORM, id="container-a-string"
        ),
        pytest.param(_payload({"type": "view_submission", "view": 5}), FORM, id="view-a-number"),
        pytest.param(
            _payload({"type": "view_submission", "view": {"callback_id": "x"}}),
            FORM,
            id="view-without-type",
        ),
        pytest.param(
            _payload({"type": "interactive_message", "callback_id": "x"}),
            FORM,
            id="attachment-action-without-actions",
        ),
        pytest.param(
            _payload({"type": "block_actions", "response_urls": 5}),
            FORM,
            id="response-urls-a-number",
        ),
        pytest.param(b'{"type":"event_callback","event":5}', JSON, id="event-a-number"),
        pytest.param(
            b'{"type":"event_callback","authorizations":5}', JSON, id="authorizations-a-number"
        ),
        pytest.param(
            b'{"type":"event_callback","authorizations":["x"]}',
            JSON,
            id="authorizations-not-objects",
        ),
        pytest.param(
            b'{"type":"event_callback","is_ext_shared_channel":true,"event":[]}',
            JSON,
            id="shared-channel-event-a-list",
        ),
        pytest.param(
            b"command=%2Fcancel-training&authorizations=x", FORM, id="form-authorizations"
        ),
    ],
)
async def test_malformed_signed_bodies_are_400(bot: Bot, body: bytes, content_type: str) -> None:
    status, _ = await post_signed(bot, body, content_type)
    assert status == 400
    await assert_untouched(bot)


@pytest.mark.parametrize(
    ("payload", "allowed"),
    [
        pytest.param(
            block_actions_payload(user_id=ALICE, action_id="not_ours"),
            {200},
            id="unknown-action-id",
        ),
        pytest.param(
            _without(block_actions_payload(user_id=ALICE), "actions"), {200}, id="no-actions"
        ),
        pytest.param(
            _without(block_actions_payload(user_id=ALICE), "user"), {200, 400}, id="no-user"
        ),
        pytest.param(_user_without_team(), {200, 400}, id="no-team-anywhere"),
        pytest.param(
            _without(
                block_actions_payload(user_id=ALICE),
                "user",
                "team",
                "channel",
                "container",
                "message",
                "response_url",
            ),
            {200, 400},
            id="no-ids-at-all",
        ),
        pytest.param({"type": "shortcut", "callback_id": "not_ours"}, {200}, id="unknown-shortcut"),
        pytest.param({"type": "no_such_type"}, {200}, id="unknown-type"),
    ],
)
async def test_clicks_we_cannot_act_on_have_no_side_effects(
    bot: Bot, payload: dict[str, Any], allowed: set[int]
) -> None:
    await save_notification(bot)
    if "response_url" in payload:  # where a (private) reply would go: the fake, not hooks.slack.com
        payload = {**payload, "response_url": bot.slack.response_url("click")}
    status, _ = await post_signed(bot, form_payload_body(payload), FORM)
    assert status in allowed
    await asyncio.sleep(0.1)  # listeners run after the ack: give a mistaken one time to act
    await assert_untouched(bot, private_replies=True)


async def test_the_well_formed_click_does_cancel(bot: Bot) -> None:
    """The control for the test above: the complete payload from ALICE is acted on."""
    await save_notification(bot)
    click = block_actions_payload(user_id=ALICE, response_url=bot.slack.response_url("click"))
    status, _ = await post_signed(bot, form_payload_body(click), FORM)
    assert status == 200
    await bot.modelslab.wait_for_calls(1)
    assert len(bot.modelslab.cancel_calls(TRAINING)) == 1


async def test_a_command_for_another_app_is_unhandled(bot: Bot) -> None:
    status, text = await post_signed(bot, slash_command_body(text=TRAINING, command="/other"), FORM)
    # 200 with nothing in it: Bolt's 404 would show the user "dispatch_failed".
    assert (status, text) == (200, "")
    await assert_untouched(bot)


# --- what must work ----------------------------------------------------------------------


async def test_url_verification_challenge_is_answered(bot: Bot) -> None:
    status, text = await post_signed(bot, url_verification_body("c-123"), JSON)
    assert status == 200 and json.loads(text) == {"challenge": "c-123"}


async def test_events_are_acked(bot: Bot) -> None:
    body = event_body({"type": "no_listener_for_this", "user": ALICE})
    status, _ = await post_signed(bot, body, JSON)
    assert status in (200, 404)
    await assert_untouched(bot)


async def test_healthz_and_readyz_answer_json(bot: Bot) -> None:
    for path, expected in (("/healthz", "ok"), ("/readyz", "ready")):
        async with bot.session.get(f"{bot.url}{path}", timeout=HTTP_TIMEOUT) as resp:
            assert resp.status == 200 and resp.content_type == "application/json"
            assert (await resp.json())["status"] == expected


async def test_get_on_the_events_route_is_405(bot: Bot) -> None:
    async with bot.session.get(f"{bot.url}/slack/events", timeout=HTTP_TIMEOUT) as resp:
        assert resp.status == 405
    await assert_untouched(bot)


@pytest.mark.parametrize(
    ("text", "fields", "expected"),
    [
        ("help", {"channel_name": "payload", "user_name": "payload"}, "/cancel-training history"),
        (
            "help",
            {"channel_name": "payload-alerts", "user_name": "payloader"},
            "/cancel-training history",
        ),
        ("payload=x", {}, "not a training id"),
        ('payload={"type":"block_actions"}', {}, "not a training id"),
        ("payload", {"channel_name": "payload"}, "Cancel training payload?"),  # the card
    ],
)
async def test_commands_mentioning_payload_are_not_lost(
    bot: Bot, text: str, fields: dict[str, str], expected: str
) -> None:
    """Bolt 1.30 parses any form body containing "payload" as empty (design §5); ours does not."""
    body = slash_command_body(
        text=text, user_id=ALICE, response_url=bot.slack.response_url("cmd"), **fields
    )
    assert b"payload" in body
    status, ack = await post_signed(bot, body, FORM)
    assert status == 200, (status, ack)
    assert expected in json.loads(ack)["text"]
    await assert_healthy(bot)


# --- properties --------------------------------------------------------------------------

SLACK_KEYS = [
    "type", "team", "user", "enterprise", "channel", "actions", "action_id", "value", "event",
    "view", "container", "message", "authorizations", "callback_id", "workflow_step",
    "response_url", "response_urls", "command", "text", "team_id", "user_id", "channel_id",
    "is_ext_shared_channel", "is_enterprise_install", "function_execution_id", "inputs",
    "thread_ts", "subtype", "channel_type", "previous_message", "user_team", "bot_id", "id",
]  # fmt: skip
SLACK_TYPES = [
    "block_actions", "view_submission", "view_closed", "shortcut", "message_action",
    "event_callback", "url_verification", "interactive_message", "block_suggestion",
    "dialog_submission", "workflow_step_edit", "app_rate_limited", "message", "app_mention",
    "function_executed", "workflow_step_execute", "app_home_opened",
]  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.sampled_from(SLACK_TYPES)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(SLACK_KEYS), children, max_size=5)
    ),
    max_leaves=20,
)
slack_like_objects = st.fixed_dictionaries(
    {"type": st.sampled_from(SLACK_TYPES)},
    optional={key: json_values for key in SLACK_KEYS if key != "type"},
)
deeply_nested = st.builds(
    lambda opener, depth: opener * depth,
    st.sampled_from(["[", '{"a":', '{"type":"block_actions","actions":[']),
    st.integers(1, 5_000),
)
json_texts = st.one_of(
    st.builds(json.dumps, json_values),
    st.builds(json.dumps, slack_like_objects),
    deeply_nested,
)
form_texts = st.one_of(
    st.builds(lambda t: "payload=" + quote(t), json_texts),
    st.builds(
        urlencode, st.dictionaries(st.sampled_from(SLACK_KEYS) | st.text(max_size=5), st.text())
    ),
)
content_types = st.sampled_from([JSON, FORM])


@settings(max_examples=150, deadline=None, database=None)
@given(text=st.one_of(st.text(), json_texts, form_texts), content_type=content_types)
def test_parse_slack_body_returns_a_dict_or_raises_bad_request(
    text: str, content_type: str
) -> None:
    try:
        parsed = parse_slack_body(text, content_type)
    except BadRequest:
        return
    assert isinstance(parsed, dict)


class BotOnOwnLoop:
    """One bot for many hypothesis examples, on an event loop the (sync) test owns.

    Between requests the loop is idle; each ``run`` drives it until that request is answered.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.stack = AsyncExitStack()
        self.tmp_path = tmp_path

    def run(self, coro: Awaitable[T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 15))

    async def _start(self) -> Bot:
        slack = await self.stack.enter_async_context(FakeSlack())
        modelslab = await self.stack.enter_async_context(FakeModelsLab())
        url = f"sqlite:///{self.tmp_path / 'bot.db'}"
        return await self.stack.enter_async_context(running_bot(slack, modelslab, url))

    @contextmanager
    def bot(self) -> Iterator[Bot]:
        try:
            yield self.run(self._start())
        finally:
            try:
                self.loop.run_until_complete(self.stack.aclose())
            finally:
                self.loop.close()


def test_random_signed_bodies_never_get_a_5xx(tmp_path: Path) -> None:
    bodies = st.one_of(
        st.binary(max_size=512), json_texts.map(str.encode), form_texts.map(str.encode)
    )
    any_content_type = st.sampled_from(
        [JSON, FORM, f"{FORM}; charset=utf-8", "text/plain", "application/octet-stream"]
    )
    owner = BotOnOwnLoop(tmp_path)
    with owner.bot() as bot:

        @settings(
            max_examples=150,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(body=bodies, content_type=any_content_type)
        def example(body: bytes, content_type: str) -> None:
            status, text = owner.run(post_signed(bot, body, content_type))
            assert status < 500, (status, body, content_type, text[:200])
            owner.run(assert_healthy(bot))

        example()
        owner.run(asyncio.sleep(0.1))
        assert bot.modelslab.calls == []
        owner.run(assert_healthy(bot))


def _strict_parse_qs(text: str) -> dict[str, list[str]] | str:
    try:
        return parse_qs(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except ValueError:
        return "refused"


@settings(max_examples=400, deadline=None, database=None)
@given(
    text=st.one_of(
        st.text(),
        st.text(alphabet="ab=&%+2F0cé\ufffd;#?/ "),
        st.builds(urlencode, st.dictionaries(st.text(), st.text())),
        st.builds(
            lambda d: urlencode(d, doseq=True),
            st.dictionaries(st.text(max_size=3), st.lists(st.text(max_size=3), max_size=3)),
        ),
        form_texts,
    )
)
def test_form_bodies_are_read_exactly_as_strict_parse_qs_reads_them(text: str) -> None:
    try:
        ours: dict[str, list[str]] | str = _parse_form(text)
    except BadRequest:
        ours = "refused"
    assert ours == _strict_parse_qs(text)
