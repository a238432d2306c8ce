"""ModelsLab's wire format: what one HTTP answer means, and the values the client returns.

Parses envelopes and answers into verdicts; redacts the key from every text it returns.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Final

from bot.errors import ModelsLabUnavailable
from bot.model import OutcomeKind

V3_SPELLINGS: Final = ("cancle_training", "cancel_training")
MAX_REASON_LENGTH: Final = 300
DEFAULT_RATE_LIMIT_DELAY: Final = 30.0
# A cancel answer is a few hundred bytes; anything far larger is a proxy page, not an envelope.
MAX_BODY_BYTES: Final = 256 * 1024
# A Retry-After of days is a misconfigured proxy; a day still reads as "much later".
MAX_RETRY_AFTER: Final = 86_400.0
REDACTED: Final = "[redacted]"

_ERROR_STATUSES = frozenset({"error", "failed"})
_BAD_KEY = re.compile(r"invalid\s*api\s*key|api\s*key\s*(?:is\s*)?invalid", re.IGNORECASE)
_NOT_FOUND = re.compile(
    r"not\s+found|does\s*n[o']t\s+exist|does\s+not\s+exist|no\s+such", re.IGNORECASE
)
# Words with which a retry says the first attempt already did the job (or the job is gone).
_ALREADY_DONE = re.compile(
    r"finish|already|cancel|not\s+found|does\s*n[o']t\s+exist|does\s+not\s+exist", re.IGNORECASE
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class CancelOutcome:
    """The result of one cancel request, with ModelsLab's own words in ``reason``."""

    kind: OutcomeKind
    reason: str
    attempts: int
    api: str
    retry_after: float | None = None
    # An attempt may have reached ModelsLab (timeout, 5xx, garbled answer): a later
    # "already finished" / "not found" then means "probably cancelled".
    may_have_reached: bool = False

    @property
    def confirmed(self) -> bool:
        """Return True only when ModelsLab said the training stopped."""
        return self.kind is OutcomeKind.STOPPED


@dataclass(frozen=True)
class TrainingStatus:
    """Where a training stands according to ModelsLab's status call."""

    state: str | None  # e.g. "training_started", "model_ready", v6 "training_completed"
    details: str | None  # free text, e.g. "ETA : 12 minutes"
    reason: str  # why there is no state ("" when there is one)
    definitive: bool  # False: ModelsLab could not be asked; try again later
    retry_after: float | None = None
    api: str = "v3"


@dataclass(frozen=True)
class KeyCheck:
    """Whether ModelsLab accepted a key; ``definitive`` is False when it could not be asked."""

    ok: bool
    reason: str
    definitive: bool


# --- internal verdicts: what one HTTP exchange means -------------------------------------


@dataclass(frozen=True)
class _Answer:
    status: int
    content_type: str
    retry_after_header: str | None
    body: bytes


@dataclass(frozen=True)
class _Envelope:
    status: str
    message: str
    retry_after: float | None


@dataclass(frozen=True)
class _Definitive:
    kind: OutcomeKind
    reason: str


@dataclass(frozen=True)
class _Transient:
    problem: str
    # True when the request may have been sent, so ModelsLab may have acted on it.
    reached: bool
    timed_out: bool = False
    immediate: bool = False


@dataclass(frozen=True)
class _RouteMissing:
    problem: str


@dataclass(frozen=True)
class _RateLimited:
    delay: float
    reason: str


_Verdict = _Definitive | _Transient | _RouteMissing | _RateLimited


class _AttemptFailed(ModelsLabUnavailable):
    """One HTTP exchange produced no answer."""

    def __init__(self, problem: str, *, reached: bool, timed_out: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.reached = reached
        self.timed_out = timed_out


# --- text helpers ------------------------------------------------------------------------


def _flatten(value: object) -> str:
    """Render a message that may be a string, number, dict or list as one line of text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            text = _flatten(v)
            parts.append(f"{k}: {text}" if text else str(k))
        return "; ".join(parts)
    if isinstance(value, (list, tuple)):
        return "; ".join(t for t in (_flatten(v) for v in value) if t)
    return str(value)


def _clean(text: str, key: str) -> str:
    """Redact the key, drop control/bidi characters, collapse whitespace and bound the length."""
    # Redact before truncating so a cut can never leave a recognisable piece of the key behind.
    if key:
        text = text.replace(key, REDACTED)
    text = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    if len(text) > MAX_REASON_LENGTH:
        text = text[: MAX_REASON_LENGTH - 1].rstrip() + "…"
    return text


def _plural(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


def _load_json(body: bytes) -> object | None:
    """Return the decoded JSON body, or None when it is not JSON."""
    if not body.strip():
        return None
    try:
        data: object = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return None
    return data


def _as_seconds(value: object) -> float | None:
    """Read a delay in seconds from a JSON number or numeric string; None if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _retry_after_header(value: str | None) -> float | None:
    """Read ``Retry-After`` as seconds or as an HTTP date."""
    if value is None:
        return None
    seconds = _as_seconds(value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    delta = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


def _envelope(data: object) -> _Envelope | None:
    """Return ModelsLab's envelope when the JSON has one (a dict with a string status)."""
    if not isinstance(data, dict):
        return None
    status = data.get("status")
    if not isinstance(status, str):
        return None
    message = ""
    # v3 spells it "messege", everything else "message"; some errors only carry "error".
    for field in ("messege", "message", "error", "detail"):
        message = _flatten(data.get(field))
        if message:
            break
    return _Envelope(status.strip().lower(), message, _as_seconds(data.get("retry_after")))


def _describe_body(answer: _Answer) -> str:
    """Say in a few words what kind of non-envelope body came back."""
    head = answer.body.lstrip()[:64].lower()
    if not head:
        return "an empty body"
    if "html" in answer.content_type or head.startswith(b"<"):
        return "a non-JSON page (HTML)"
    if len(answer.body) >= MAX_BODY_BYTES:
        return "an oversized body"
    if "json" in answer.content_type or head.startswith((b"{", b"[")):
        if _load_json(answer.body) is None:
            return "truncated or malformed JSON"
        return "JSON without ModelsLab's status field"
    return f"a non-JSON body ({answer.content_type or 'no content type'})"


def _error_kind(message: str, default: OutcomeKind) -> OutcomeKind:
    """Classify a ModelsLab error message."""
    if _BAD_KEY.search(message):
        return OutcomeKind.BAD_KEY
    if _NOT_FOUND.search(message):
        return OutcomeKind.NOT_FOUND
    return default


def _interpret(answer: _Answer, api: str) -> _Verdict:
    """Say what one ModelsLab answer means for a cancel."""
    status = answer.status
    envelope = _envelope(_load_json(answer.body))
    said = envelope.message if envelope else ""
    if status == 404:
        # Only ModelsLab's own envelope means "no such training"; anything else is a missing route.
        if envelope is not None and envelope.status in _ERROR_STATUSES:
            return _Definitive(
                _error_kind(said, OutcomeKind.NOT_FOUND),
                said or "ModelsLab has no training with this id (HTTP 404)",
            )
        return _RouteMissing(f"HTTP 404 with {_describe_body(answer)}")
    if status == 429:
        # Header and body may disagree; waiting for the longer one avoids a second 429.
        delays = [_retry_after_header(answer.retry_after_header)]
        if envelope is not None:
            delays.append(envelope.retry_after)
        known = [d for d in delays if d is not None]
        delay = max(known) if known else DEFAULT_RATE_LIMIT_DELAY
        return _RateLimited(
            delay, said or f"ModelsLab is rate-limiting this account; retry in {delay:g} s"
        )
    if status == 401:
        return _Definitive(OutcomeKind.BAD_KEY, said or "ModelsLab rejected the API key (HTTP 401)")
    if status >= 500:
        detail = f": {said}" if said else ""
        return _Transient(f"ModelsLab answered HTTP {status}{detail}", reached=True)
    if envelope is None:
        return _Transient(f"ModelsLab answered with {_describe_body(answer)}", reached=True)
    if envelope.status == "success" and 200 <= status < 300:
        if api == "v6":
            return _Definitive(OutcomeKind.STOPPED, said or "training stopped")
        return _Definitive(OutcomeKind.ACCEPTED, said or "ModelsLab accepted the cancel")
    if envelope.status in _ERROR_STATUSES:
        return _Definitive(
            _error_kind(said, OutcomeKind.REFUSED),
            said or f"ModelsLab refused the cancel without saying why (HTTP {status})",
        )
    return _Transient(
        f"ModelsLab answered HTTP {status} with an unexpected status {envelope.status!r}",
        reached=True,
    )
