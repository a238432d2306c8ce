"""Slack failure classification: the one place that reads slack_sdk's exceptions.

Every Web API call whose failure the bot acts on runs inside :func:`slack_call`, which turns
whatever went wrong into one :class:`bot.errors.SlackError` saying whether to try again later.
Best-effort calls that only log catch :data:`SLACK_FAILURES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.errors import SlackError

# What a Web API call (slack_sdk over aiohttp) raises when it fails: Slack's answer, the
# client's own errors, the network, and a timeout.
SLACK_FAILURES: tuple[type[BaseException], ...] = (
    SlackApiError,
    SlackClientError,
    OSError,
    asyncio.TimeoutError,
)
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# Answers retrying cannot fix: the bot is not in the channel, the message is gone, ... (an error
# in neither list is treated as permanent too, with a warning).
PERMANENT_ERRORS = frozenset(
    {
        "not_in_channel",
        "channel_not_found",
        "is_archived",
        "message_not_found",
        "cant_update_message",
        "restricted_action",
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "msg_too_long",
        "invalid_blocks",
        "thread_not_found",
        "no_permission",
    }
)

# Slack asks for seconds to a minute; anything longer is a broken header, waited out at most this.
MAX_RETRY_AFTER = 3600.0


def slack_error(exc: BaseException, call: str) -> SlackError:
    """Translate one failed call: 429, 5xx and "try again" codes, and no answer, are transient."""
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error") or "")
        status = int(getattr(exc.response, "status_code", 200) or 200)
        transient = status == 429 or status >= 500 or error in TRANSIENT_ERRORS
        return SlackError(
            call,
            error=error,
            transient=transient,
            status=status,
            retry_after=retry_after(exc.response.headers) if transient else None,
        )
    return SlackError(call, error=type(exc).__name__, transient=True)


@contextlib.contextmanager
def slack_call(call: str) -> Iterator[None]:
    """Raise any Slack failure inside the block as SlackError (named after `call`)."""
    try:
        yield
    except SLACK_FAILURES as exc:
        raise slack_error(exc, call) from exc


def retry_after(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds from a Retry-After header (any case, str or list value), if there is one."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            first = value[0] if isinstance(value, (list, tuple)) and value else value
            try:
                seconds = float(first)
            except (TypeError, ValueError):
                return None
            # A proxy's "inf" or 1e12 must not park a report forever.
            return min(max(seconds, 0.0), MAX_RETRY_AFTER) if math.isfinite(seconds) else None
    return None
