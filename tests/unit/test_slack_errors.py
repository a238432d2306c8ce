"""The one Slack failure classification (bot/slack/errors.py): what is retried, and for how long."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.errors import BotError, SlackError
from bot.slack.errors import slack_call, slack_error


def answered(status: int, error: str, headers: dict[str, str] | None = None) -> SlackApiError:
    response = AsyncSlackResponse(
        client=None,  # type: ignore[arg-type]
        http_verb="POST",
        api_url="https://slack.com/api/chat.postMessage",
        req_args={},
        data={"ok": False, "error": error},
        headers=headers or {},
        status_code=status,
    )
    return SlackApiError(error, response)


@pytest.mark.parametrize(
    ("exc", "transient", "status"),
    [
        (answered(429, "ratelimited", {"Retry-After": "7"}), True, 429),
        (answered(503, ""), True, 503),
        (answered(200, "internal_error"), True, 200),
        (answered(200, "not_in_channel"), False, 200),
        (answered(200, "some_new_error"), False, 200),
        (SlackClientError("bad"), True, None),
        (ConnectionResetError(), True, None),
        (asyncio.TimeoutError(), True, None),
    ],
)
def test_each_failure_is_one_bot_error_saying_whether_to_retry(
    exc: BaseException, transient: bool, status: int | None
) -> None:
    error = slack_error(exc, "chat.postMessage")
    assert isinstance(error, BotError)
    assert (error.transient, error.status) == (transient, status)
    assert str(error).startswith("chat.postMessage: ")


def test_a_429_carries_what_slack_asked_to_wait() -> None:
    error = slack_error(answered(429, "ratelimited", {"retry-after": "7"}), "chat.update")
    assert error.retry_after == 7.0 and error.error == "ratelimited"
    assert slack_error(answered(200, "not_in_channel"), "chat.update").retry_after is None


async def test_slack_call_translates_and_keeps_the_cause() -> None:
    async def refused() -> None:
        raise answered(200, "channel_not_found")

    with pytest.raises(SlackError) as caught, slack_call("chat.postMessage"):
        await refused()
    assert caught.value.error == "channel_not_found" and not caught.value.transient
    assert isinstance(caught.value.__cause__, SlackApiError)
    # What is not a Slack failure is not swallowed or renamed.
    with pytest.raises(KeyError), slack_call("chat.postMessage"):
        raise KeyError("x")
