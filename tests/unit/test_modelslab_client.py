"""The ModelsLab client's own logic, with httpx.MockTransport answering in place of a server."""

from __future__ import annotations

import email.utils
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from bot.errors import ConfigError
from bot.model import OutcomeKind
from bot.modelslab import ModelsLabClient

KEY = "good-key"
TID = "F5jvdzGnYi"

# Short timeouts: against the fake (integration/test_modelslab.py) a hanging server costs ~1 s.
FAST: dict[str, Any] = {"attempt_timeout": 0.3, "budget": 2.0, "backoff": 0.01}


async def test_retry_after_as_an_http_date() -> None:
    when = email.utils.format_datetime(
        datetime.now(timezone.utc) + timedelta(seconds=120), usegmt=True
    )
    response = httpx.Response(429, headers={"Retry-After": when}, text="slow down")
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda _: response)) as http:
        client = ModelsLabClient(base_url="https://ml.test/api/v3", http=http, **FAST)
        outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.RATE_LIMITED
    assert outcome.retry_after is not None
    assert 100 < outcome.retry_after <= 120


async def test_retry_after_a_connect_error_is_taken_at_its_word() -> None:
    answers: list[Callable[[httpx.Request], httpx.Response]] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def not_found(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"status": "error", "messege": "Training not found"})

    answers.extend([refuse, not_found])
    transport = httpx.MockTransport(lambda request: answers.pop(0)(request))
    async with httpx.AsyncClient(transport=transport) as http:
        client = ModelsLabClient(base_url="https://ml.test/api/v3", http=http, **FAST)
        outcome = await client.cancel(TID, KEY)

    assert outcome.kind is OutcomeKind.NOT_FOUND
    assert outcome.attempts == 2


@pytest.mark.parametrize(
    ("base", "v6"),
    [
        ("https://modelslab.com/api/v3", "https://modelslab.com/api/v6"),
        ("https://modelslab.com/api/v3/", "https://modelslab.com/api/v6"),
        ("http://127.0.0.1:8080/v3", "http://127.0.0.1:8080/v6"),
    ],
)
async def test_v6_url_is_derived_from_v3(base: str, v6: str) -> None:
    async with ModelsLabClient(base_url=base) as client:
        assert client.v6_url == v6
        assert client.base_url == base.rstrip("/")


async def test_explicit_v6_url_wins() -> None:
    async with ModelsLabClient(
        base_url="https://proxy.example/ml", v6_url="https://proxy.example/ml6/"
    ) as client:
        assert client.v6_url == "https://proxy.example/ml6"


def test_base_without_v3_needs_a_v6_url() -> None:
    with pytest.raises(ConfigError) as info:
        ModelsLabClient(base_url="https://proxy.example/ml/v3x")

    assert any("MODELSLAB_V6_URL" in p for p in info.value.problems)


async def test_callers_http_client_stays_open_and_every_call_has_a_timeout() -> None:
    seen: list[dict[str, float | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, json={"status": "success", "messege": "ok"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        client = ModelsLabClient(
            base_url="https://ml.test/api/v3", http=http, attempt_timeout=4.0, budget=30
        )
        await client.cancel(TID, KEY)
        await client.aclose()
        assert not http.is_closed

    [timeout] = seen
    assert set(timeout.values()) == {4.0}


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            httpx.Response(200, json={"status": "error", "messege": "Invalid Api Key"}),
            (False, True),
        ),
        (httpx.Response(502, text="<html>bad gateway</html>"), (False, False)),
        (httpx.Response(200, text="<html>captive portal</html>"), (False, False)),
    ],
)
async def test_check_key_other_answers(
    response: httpx.Response, expected: tuple[bool, bool]
) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda _: response)) as http:
        client = ModelsLabClient(base_url="https://ml.test/api/v3", http=http, **FAST)
        check = await client.check_key(KEY)

    assert (check.ok, check.definitive) == expected
    assert check.reason
