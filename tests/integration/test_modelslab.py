"""The ModelsLab client against a fake ModelsLab over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.errors import InvalidTrainingId
from bot.model import OutcomeKind
from bot.modelslab import CancelOutcome, KeyCheck, ModelsLabClient
from tests.fakes.modelslab import (
    FakeModelsLab,
    Reply,
    drip,
    error,
    framework_404,
    hang,
    html,
    json_404,
    ok,
    rate_limited,
    reset,
    route_404_html,
    server_error,
    truncated_json,
    unauthorized,
    v6_finished,
    v6_not_found,
    v6_stopped,
)
from tests.unit.test_modelslab_client import FAST, KEY, TID

UUID = "3f2b8c1e-9a4d-4e6f-8b2a-1c3d5e7f9a0b"


def make_client(fake: FakeModelsLab, **overrides: Any) -> ModelsLabClient:
    return ModelsLabClient(base_url=fake.base_url, **{**FAST, **overrides})


@pytest.fixture
async def fake() -> AsyncIterator[FakeModelsLab]:
    async with FakeModelsLab() as server:
        yield server


@pytest.fixture
async def client(fake: FakeModelsLab) -> AsyncIterator[ModelsLabClient]:
    async with make_client(fake) as c:
        yield c


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- v3 happy path and route spelling ----------------------------------------------------


async def test_cancel_accepted_on_cancle_training(
    fake: FakeModelsLab, client: ModelsLabClient
) -> None:
    outcome = await client.cancel(TID, KEY)

    assert outcome == CancelOutcome(
        OutcomeKind.ACCEPTED, "Training cancelled successfully", 1, "v3"
    )
    assert not outcome.confirmed
    [call] = fake.calls
    assert call.path == f"/api/v3/cancle_training/{TID}"
    assert call.json == {"key": KEY}
    assert call.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "missing", [route_404_html(), framework_404(), Reply(status=404, body=b"", content_type="")]
)
async def test_missing_route_falls_back_and_is_remembered(missing: Reply) -> None:
    async with (
        FakeModelsLab(routes=("cancel_training",), missing_route=missing) as fake,
        make_client(fake) as client,
    ):
        first = await client.cancel(TID, KEY)
        assert first.kind is OutcomeKind.ACCEPTED
        assert first.attempts == 2
        assert [c.path for c in fake.calls] == [
            f"/api/v3/cancle_training/{TID}",
            f"/api/v3/cancel_training/{TID}",
        ]

        second = await client.cancel("other-id", KEY)
        assert second.kind is OutcomeKind.ACCEPTED
        assert second.attempts == 1
        assert [c.path for c in fake.cancel_calls("other-id")] == [
            "/api/v3/cancel_training/other-id"
        ]


async def test_json_404_is_not_found_without_fallback(
    fake: FakeModelsLab, client: ModelsLabClient
) -> None:
    fake.script(TID, json_404())

    outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.NOT_FOUND
    assert outcome.reason == "Training not found"
    assert outcome.attempts == 1
    assert [c.path for c in fake.calls] == [f"/api/v3/cancle_training/{TID}"]


async def test_both_routes_missing_is_unavailable_not_not_found() -> None:
    async with FakeModelsLab(routes=()) as fake, make_client(fake) as client:
        outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.UNAVAILABLE
    assert "cancel route was not found" in outcome.reason
    assert outcome.attempts == 2
    assert len(fake.cancel_calls()) == 2


async def test_route_that_disappears_is_found_again() -> None:
    async with FakeModelsLab(routes=("cancel_training",)) as fake, make_client(fake) as client:
        assert (await client.cancel(TID, KEY)).kind is OutcomeKind.ACCEPTED
        assert client.v3_spelling == "cancel_training"
        fake.routes = frozenset({"cancle_training"})

        outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.ACCEPTED
    assert outcome.attempts == 2
    assert client.v3_spelling == "cancle_training"


# --- envelopes ---------------------------------------------------------------------------


async def test_status_error_with_200_is_refused_with_modelslabs_words(
    fake: FakeModelsLab, client: ModelsLabClient
) -> None:
    fake.script(TID, error("Training is being deployed, try again later"))

    outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.reason == "Training is being deployed, try again later"
    assert outcome.attempts == 1


@pytest.mark.parametrize(
    ("messege", "expected"),
    [
        (
            {"training_id": ["The selected training id is invalid."]},
            "training_id: The selected training id is invalid.",
        ),
        (["first problem", "second\nproblem"], "first problem; second problem"),
        ({"errors": {"key": "required"}}, "errors: key: required"),
    ],
)
async def test_structured_messege_is_flattened(
    fake: FakeModelsLab, client: ModelsLabClient, messege: object, expected: str
) -> None:
    fake.script(TID, error(messege))

    outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.reason == expected


async def test_message_spelling_is_read(fake: FakeModelsLab, client: ModelsLabClient) -> None:
    fake.script(TID, ok("cancel queued", field="message"))
    fake.script("two", error("nope", field="message"))

    accepted = await client.cancel(TID, KEY)
    refused = await client.cancel("two", KEY)

    assert (accepted.kind, accepted.reason) == (OutcomeKind.ACCEPTED, "cancel queued")
    assert (refused.kind, refused.reason) == (OutcomeKind.REFUSED, "nope")


async def test_long_reason_is_bounded(fake: FakeModelsLab, client: ModelsLabClient) -> None:
    fake.script(TID, error("x" * 5000))

    outcome = await client.cancel(TID, KEY)

    assert len(outcome.reason) <= 300


@pytest.mark.parametrize(
    "reply", [unauthorized(), error("Invalid Api Key"), error("INVALID API KEY.")]
)
async def test_bad_key(fake: FakeModelsLab, client: ModelsLabClient, reply: Reply) -> None:
    fake.script(TID, reply)

    outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.BAD_KEY
    assert outcome.attempts == 1


async def test_unknown_key_gets_401_bad_key(fake: FakeModelsLab, client: ModelsLabClient) -> None:
    outcome = await client.cancel(TID, "someone-elses-key")

    assert outcome.kind is OutcomeKind.BAD_KEY
    assert outcome.reason == "Invalid Api Key"


async def test_empty_key_is_bad_key_without_a_call(
    fake: FakeModelsLab, client: ModelsLabClient
) -> None:
    outcome = await client.cancel(TID, "")

    assert outcome.kind is OutcomeKind.BAD_KEY
    assert outcome.attempts == 0
    assert fake.calls == []


# --- rate limits -------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "body"), [(True, False), (False, True)])
async def test_short_rate_limit_is_waited_out(
    fake: FakeModelsLab, client: ModelsLabClient, header: bool, body: bool
) -> None:
    fake.script(TID, rate_limited(0.2, header=header, body=body), ok())

    outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.ACCEPTED
    assert outcome.attempts == 2
    first, second = fake.cancel_calls()
    assert second.at - first.at >= 0.2


@pytest.mark.parametrize(("header", "body"), [(True, False), (False, True), (True, True)])
async def test_long_rate_limit_is_reported_with_its_delay(
    fake: FakeModelsLab, client: ModelsLabClient, header: bool, body: bool
) -> None:
    fake.script(TID, rate_limited(60, header=header, body=body))

    outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.RATE_LIMITED
    assert outcome.retry_after == 60
    assert outcome.reason == "Too many requests, slow down"
    assert len(fake.cancel_calls()) == 1


async def test_rate_limit_takes_the_longer_of_header_and_body(
    fake: FakeModelsLab, client: ModelsLabClient
) -> None:
    fake.script(
        TID, dataclasses.replace(rate_limited(45, header=False), headers={"Retry-After": "5"})
    )

    outcome = await client.cancel(TID, KEY)

    assert outcome.retry_after == 45


async def test_rate_limit_without_a_delay_defaults_to_30_s(
    fake: FakeModelsLab, client: ModelsLabClient
) -> None:
    fake.script(TID, rate_limited(header=False, body=False))

    outcome = await client.cancel(TID, KEY)

    assert (outcome.kind, outcome.retry_after, outcome.attempts) == (
        OutcomeKind.RATE_LIMITED,
        30,
        1,
    )


# --- transient failures and the budget ---------------------------------------------------


async def test_server_error_then_success(fake: FakeModelsLab, client: ModelsLabClient) -> None:
    fake.script(TID, server_error(500), ok())

    outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.ACCEPTED
    assert outcome.attempts == 2


async def test_three_bad_gateways_are_unavailable(
    fake: FakeModelsLab, client: ModelsLabClient
) -> None:
    fake.script(TID, server_error(502))

    outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.UNAVAILABLE
    assert outcome.reason == "ModelsLab answered HTTP 502 (3 attempts)"
    assert outcome.attempts == 3
    assert len(fake.cancel_calls()) == 3


async def test_hanging_server_is_cut_off_within_the_budget(
    fake: FakeModelsLab, client: ModelsLabClient
) -> None:
    fake.script(TID, hang())

    started = time.monotonic()
    outcome = await client.cancel(TID, KEY)
    elapsed = time.monotonic() - started

    assert outcome.kind is OutcomeKind.UNAVAILABLE
    assert outcome.reason == "ModelsLab timed out after 3 attempts"
    assert outcome.attempts == 3
    assert 0.9 <= elapsed < 1.5


async def test_the_budget_bounds_the_whole_call(fake: FakeModelsLab) -> None:
    fake.script(TID, hang())

    async with make_client(fake, attempt_timeout=1.0, budget=1.3) as client:
        started = time.monotonic()
        outcome = await client.cancel(TID, KEY)
        elapsed = time.monotonic() - started

    assert outcome.kind is OutcomeKind.UNAVAILABLE
    assert outcome.attempts == 2
    assert elapsed < 1.3 + 0.2


async def test_dripping_body_is_cut_off(fake: FakeModelsLab) -> None:
    # A byte every 0.1 s keeps httpx's read timeout (0.5 s) from ever firing.
    fake.script(TID, drip(0.1))

    async with make_client(fake, attempt_timeout=0.5, max_attempts=2) as client:
        started = time.monotonic()
        outcome = await client.cancel(TID, KEY)
        elapsed = time.monotonic() - started

    assert outcome.kind is OutcomeKind.UNAVAILABLE
    assert "timed out" in outcome.reason
    assert outcome.attempts == 2
    assert elapsed < 1.5


async def test_connection_reset(fake: FakeModelsLab, client: ModelsLabClient) -> None:
    fake.script(TID, reset())
    fake.script("then-ok", reset(), ok())

    failed = await client.cancel(TID, KEY)
    recovered = await client.cancel("then-ok", KEY)

    assert failed.kind is OutcomeKind.UNAVAILABLE
    assert "connection to ModelsLab failed" in failed.reason
    assert failed.attempts == 3
    assert (recovered.kind, recovered.attempts) == (OutcomeKind.ACCEPTED, 2)


async def test_html_page_with_200_is_retried_then_unavailable(
    fake: FakeModelsLab, client: ModelsLabClient
) -> None:
    fake.script(TID, html())

    outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.UNAVAILABLE
    assert outcome.reason == "ModelsLab answered with a non-JSON page (HTML) (3 attempts)"
    assert len(fake.cancel_calls()) == 3


async def test_truncated_json(fake: FakeModelsLab, client: ModelsLabClient) -> None:
    fake.script(TID, truncated_json(), truncated_json(), ok())
    fake.script("always", truncated_json())

    recovered = await client.cancel(TID, KEY)
    failed = await client.cancel("always", KEY)

    assert (recovered.kind, recovered.attempts) == (OutcomeKind.ACCEPTED, 3)
    assert failed.kind is OutcomeKind.UNAVAILABLE
    assert "truncated or malformed JSON" in failed.reason


async def test_unreachable_server_is_retried_at_once() -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/v3"
    async with ModelsLabClient(base_url=url, attempt_timeout=0.5, budget=2.0, backoff=10) as client:
        started = time.monotonic()
        outcome = await client.cancel(TID, KEY)
        elapsed = time.monotonic() - started

    assert outcome.kind is OutcomeKind.UNAVAILABLE
    assert "could not connect" in outcome.reason
    assert outcome.attempts == 3
    # backoff=10 would blow the budget: connect errors must not wait for it.
    assert elapsed < 1.0


# --- probably cancelled ------------------------------------------------------------------


@pytest.mark.parametrize("first", [server_error(502), hang(), truncated_json(), reset()])
@pytest.mark.parametrize(
    "then",
    [json_404(), error("Training has already finished"), error("Training already cancelled")],
)
async def test_retry_after_a_possible_delivery_is_probably_cancelled(
    fake: FakeModelsLab, client: ModelsLabClient, first: Reply, then: Reply
) -> None:
    fake.script(TID, first, then)

    outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.PROBABLY_CANCELLED
    assert outcome.attempts == 2
    said = json.loads(then.body)["messege"]
    assert said in outcome.reason


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (error("Training has already finished"), OutcomeKind.PROBABLY_CANCELLED),
        (json_404(), OutcomeKind.PROBABLY_CANCELLED),
        (ok(), OutcomeKind.ACCEPTED),
        (error("Training is being deployed"), OutcomeKind.REFUSED),
    ],
)
async def test_may_have_reached_from_an_earlier_run(
    fake: FakeModelsLab, client: ModelsLabClient, reply: Reply, expected: OutcomeKind
) -> None:
    fake.script(TID, reply)

    outcome = await client.cancel(TID, KEY, may_have_reached=True)

    assert outcome.kind is expected
    assert outcome.attempts == 1


async def test_already_finished_on_a_first_attempt_is_refused(
    fake: FakeModelsLab, client: ModelsLabClient
) -> None:
    fake.script(TID, error("Training has already finished"))

    outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.reason == "Training has already finished"


# --- v6 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind", "reason"),
    [
        (v6_stopped(), OutcomeKind.STOPPED, "training stopped"),
        (v6_not_found(), OutcomeKind.NOT_FOUND, "Training request not found."),
        (v6_finished(), OutcomeKind.REFUSED, "Training has already finished."),
    ],
)
async def test_v6_stop(
    fake: FakeModelsLab, client: ModelsLabClient, reply: Reply, kind: OutcomeKind, reason: str
) -> None:
    fake.script(UUID, reply)

    outcome = await client.cancel(UUID.upper(), KEY)

    assert outcome == CancelOutcome(kind, reason, 1, "v6")
    assert outcome.confirmed is (kind is OutcomeKind.STOPPED)
    [call] = fake.calls
    assert call.path == "/api/v6/trainer/stop"
    assert call.json == {"key": KEY, "training_id": UUID}


async def test_v6_missing_route_is_unavailable(fake: FakeModelsLab) -> None:
    async with ModelsLabClient(
        base_url=fake.base_url, v6_url=fake.root_url + "/nowhere", **FAST
    ) as client:
        outcome = await client.cancel(UUID, KEY)

    assert outcome.kind is OutcomeKind.UNAVAILABLE
    assert "route was not found" in outcome.reason
    assert outcome.attempts == 1


# --- input checks, dry run, secrets ------------------------------------------------------


@pytest.mark.parametrize(
    "bad", ["../x", "a/b", "%2e", "a b", "", "x" * 65, "abc\u200f", "abc?x=1", "abc#", "ab\nc"]
)
async def test_invalid_ids_never_reach_modelslab(
    fake: FakeModelsLab, client: ModelsLabClient, bad: str
) -> None:
    with pytest.raises(InvalidTrainingId):
        await client.cancel(bad, KEY)

    assert fake.calls == []


async def test_dry_run_makes_no_call(fake: FakeModelsLab) -> None:
    async with make_client(fake, dry_run=True) as client:
        outcome = await client.cancel(TID, KEY)
        v6 = await client.cancel(UUID, KEY)
        with pytest.raises(InvalidTrainingId):
            await client.cancel("../x", KEY)

    assert outcome == CancelOutcome(
        OutcomeKind.DRY_RUN, "dry run: ModelsLab was not called", 0, "v3"
    )
    assert v6.api == "v6"
    assert fake.calls == []


@pytest.mark.parametrize(
    "replies",
    [
        [error(f"Key {KEY} is suspended")],
        [error(f"Invalid Api Key: {KEY}", status=401)],
        [dataclasses.replace(error(f"upstream failed for key={KEY}", status=502))],
        [
            dataclasses.replace(
                rate_limited(60),
                body=json.dumps(
                    {"status": "error", "messege": f"{KEY} is throttled", "retry_after": 60}
                ).encode(),
            )
        ],
        [server_error(502), error({"detail": [f"{KEY}", "already finished"]})],
        [error("x" * 290 + KEY)],
    ],
)
async def test_key_never_appears_in_a_reason(
    fake: FakeModelsLab,
    client: ModelsLabClient,
    caplog: pytest.LogCaptureFixture,
    replies: list[Reply],
) -> None:
    fake.script(TID, *replies)
    caplog.set_level(logging.DEBUG)

    outcome = await client.cancel(TID, KEY)

    assert KEY not in outcome.reason
    assert KEY not in caplog.text
    assert "modelslab" in caplog.text.lower()


# --- key check ---------------------------------------------------------------------------


async def test_check_key_ok(fake: FakeModelsLab, client: ModelsLabClient) -> None:
    assert await client.check_key(KEY) == KeyCheck(ok=True, reason="", definitive=True)
    [call] = fake.calls
    assert call.path == "/api/v3/finetune_list"
    assert call.json == {"key": KEY}


async def test_check_key_bad(fake: FakeModelsLab, client: ModelsLabClient) -> None:
    check = await client.check_key("wrong-key")

    assert check == KeyCheck(ok=False, reason="Invalid Api Key", definitive=True)


async def test_check_key_unreachable() -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/v3"
    async with ModelsLabClient(base_url=url, **FAST) as client:
        check = await client.check_key(KEY)

    assert not check.ok
    assert not check.definitive
    assert check.reason.startswith("ModelsLab unreachable: ")


# --- the fake itself ---------------------------------------------------------------------


async def test_fake_stops_promptly_with_a_request_hanging(fake: FakeModelsLab) -> None:
    fake.script(TID, hang())
    async with make_client(fake, attempt_timeout=5.0, budget=5.0) as client:
        pending = asyncio.create_task(client.cancel(TID, KEY))
        await fake.wait_for_calls(1)

        started = time.monotonic()
        await fake.stop()
        assert time.monotonic() - started < 0.5

        outcome = await pending

    # The dropped request may have arrived; the retries then find nobody listening.
    assert outcome.kind is OutcomeKind.UNAVAILABLE
