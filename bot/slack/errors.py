"""Slack failure classification: which answers mean "try again later", and for how long."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackApiError

TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


# Slack asks for seconds to a minute; anything longer is a broken header, waited out at most this.
MAX_RETRY_AFTER = 3600.0


def is_transient(exc: SlackApiError) -> bool:
    """Slack's "try again later" answers: 429, 5xx, and the error codes that mean the same."""
    error = str(exc.response.get("error") or "")
    status = int(getattr(exc.response, "status_code", 200) or 200)
    return status == 429 or status >= 500 or error in TRANSIENT_ERRORS


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
