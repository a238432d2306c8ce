"""ModelsLab client: the only module that speaks HTTP to ModelsLab (design §4).

Every HTTP fact (status, body, transport failure) is turned here into one
:class:`CancelOutcome` or :class:`KeyCheck`; nothing above this module sees httpx.
The API key travels only in request bodies and is scrubbed from every text we return.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Final

import httpx

from bot.errors import ConfigError, ModelsLabUnavailable
from bot.ids import is_v6_id, validate_training_id
from bot.model import OutcomeKind

__all__ = ["CancelOutcome", "KeyCheck", "ModelsLabClient"]

logger = logging.getLogger(__name__)

V3_SPELLINGS: Final = ("cancle_training", "cancel_training")
MAX_REASON_LENGTH: Final = 300
DEFAULT_RATE_LIMIT_DELAY: Final = 30.0
# A cancel answer is a few hundred bytes; anything far larger is a proxy page, not an envelope.
MAX_BODY_BYTES: Final = 256 * 1024
# A Retry-After of days is a misconfigured proxy; a day still reads as "much later".
MAX_RETRY_AFTER: Final = 86_400.0
REDACTED: Final = "[redacted]"
_USER_AGENT: Final = "cancel-training-bot"

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


# --- the client --------------------------------------------------------------------------


class ModelsLabClient:
    """Cancels trainings and checks keys against ModelsLab's v3 and v6 APIs."""

    def __init__(
        self,
        *,
        base_url: str,
        v6_url: str | None = None,
        http: httpx.AsyncClient | None = None,
        dry_run: bool = False,
        attempt_timeout: float = 10.0,
        budget: float = 30.0,
        max_attempts: int = 3,
        backoff: float = 0.5,
        observer: Callable[[str, str, float], None] | None = None,
    ) -> None:
        """Configure the client; raise ConfigError when the v6 URL cannot be derived."""
        base = base_url.strip().rstrip("/")
        if v6_url is None:
            if not base.endswith("/v3"):
                raise ConfigError(
                    [
                        # The URL itself stays out: it could carry credentials in its userinfo.
                        "MODELSLAB_V6_URL is required when MODELSLAB_API_URL does not end in /v3; "
                        "set it to the v6 base, e.g. https://modelslab.com/api/v6."
                    ]
                )
            v6_url = base[: -len("/v3")] + "/v6"
        if attempt_timeout <= 0 or budget <= 0 or max_attempts < 1 or backoff < 0:
            raise ValueError(
                "attempt_timeout and budget must be > 0, max_attempts >= 1, backoff >= 0"
            )
        self._base = base
        self._v6 = v6_url.strip().rstrip("/")
        self._dry_run = dry_run
        self._attempt_timeout = attempt_timeout
        self._budget = budget
        self._max_attempts = max_attempts
        self._backoff = backoff
        # Told (endpoint, result, seconds) after every HTTP call: metrics, without coupling.
        self._observer = observer
        self._owns_http = http is None
        self._http = (
            http
            if http is not None
            else httpx.AsyncClient(
                timeout=httpx.Timeout(attempt_timeout),
                headers={"User-Agent": _USER_AGENT},
                follow_redirects=False,
            )
        )
        # The spelling that last reached a real route; servers route one or both (design §4).
        self._v3_spelling: str = V3_SPELLINGS[0]

    @property
    def base_url(self) -> str:
        """The v3 base URL, without a trailing slash."""
        return self._base

    @property
    def v6_url(self) -> str:
        """The v6 base URL, without a trailing slash."""
        return self._v6

    @property
    def dry_run(self) -> bool:
        """True when cancels never reach ModelsLab."""
        return self._dry_run

    @property
    def v3_spelling(self) -> str:
        """The cancel route spelling the next v3 cancel tries first."""
        return self._v3_spelling

    async def aclose(self) -> None:
        """Close the HTTP client if this instance created it."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> ModelsLabClient:
        """Return the client; ``async with`` closes it on exit."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the client."""
        await self.aclose()

    # --- cancel --------------------------------------------------------------------------

    async def cancel(
        self,
        training_id: str,
        key: str,
        *,
        may_have_reached: bool = False,
        dry_run: bool | None = None,
    ) -> CancelOutcome:
        """Ask ModelsLab to cancel (v3) or stop (v6) a training; never raises for its answers."""
        training_id = validate_training_id(training_id)
        api = "v6" if is_v6_id(training_id) else "v3"
        # The caller's per-call choice (a dry-run row stays a dry run on any instance) wins.
        if self._dry_run if dry_run is None else dry_run:
            return CancelOutcome(OutcomeKind.DRY_RUN, "dry run: ModelsLab was not called", 0, api)
        if not key:
            # An empty key can only earn "invalid api key" and would spend a rate-limit slot.
            return CancelOutcome(
                OutcomeKind.BAD_KEY,
                "no ModelsLab API key was given; ModelsLab was not called",
                0,
                api,
            )
        return await self._cancel(training_id, key, api, may_have_reached=may_have_reached)

    async def _cancel(
        self, training_id: str, key: str, api: str, *, may_have_reached: bool
    ) -> CancelOutcome:
        deadline = time.monotonic() + self._budget
        reached = may_have_reached
        calls = 0
        attempts = 0
        missing: set[str] = set()
        last: _Transient | None = None
        fallback = False

        def done(kind: OutcomeKind, reason: str, retry_after: float | None = None) -> CancelOutcome:
            return CancelOutcome(kind, _clean(reason, key), calls, api, retry_after, reached)

        while fallback or attempts < self._max_attempts:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            spelling = None
            if api == "v6":
                url = f"{self._v6}/trainer/stop"
                payload = {"key": key, "training_id": training_id}
            else:
                spelling = self._pick_spelling(missing)
                url = f"{self._base}/{spelling}/{training_id}"
                payload = {"key": key}
            if not fallback:
                attempts += 1
            fallback = False
            calls += 1
            verdict = await self._exchange(
                url,
                payload,
                min(self._attempt_timeout, remaining),
                api=api,
                training_id=training_id,
            )

            if isinstance(verdict, _RouteMissing):
                if spelling is None:
                    return done(
                        OutcomeKind.UNAVAILABLE,
                        f"ModelsLab's v6 stop route was not found ({verdict.problem})",
                    )
                missing.add(spelling)
                last = _Transient(f"ModelsLab's {spelling} route was not found", reached=False)
                if missing.issuperset(V3_SPELLINGS):
                    return done(
                        OutcomeKind.UNAVAILABLE,
                        "ModelsLab's cancel route was not found (tried "
                        f"{' and '.join(V3_SPELLINGS)}; {verdict.problem})",
                    )
                # Trying the other spelling is the same attempt, not a retry.
                fallback = True
                continue

            if spelling is not None and not isinstance(verdict, _Transient):
                # The route answered as ModelsLab does, so it exists: go straight to it next time.
                self._v3_spelling = spelling

            if isinstance(verdict, _Definitive):
                return done(*self._settle(verdict, reached=reached))

            if isinstance(verdict, _RateLimited):
                remaining = deadline - time.monotonic()
                if attempts < self._max_attempts and verdict.delay < remaining:
                    last = _Transient(f"ModelsLab rate-limited the call ({verdict.reason})", False)
                    await asyncio.sleep(verdict.delay)
                    continue
                return done(OutcomeKind.RATE_LIMITED, verdict.reason, verdict.delay)

            last = verdict
            reached = reached or verdict.reached
            if attempts >= self._max_attempts or verdict.immediate:
                continue
            # Jitter spreads the retries of many workers hitting one account's queue.
            jitter = random.uniform(0.5, 1.5)  # noqa: S311 - jitter needs no secrecy
            delay = self._backoff * 2 ** (attempts - 1) * jitter
            if delay >= deadline - time.monotonic():
                break
            await asyncio.sleep(delay)

        if last is None:
            return done(
                OutcomeKind.UNAVAILABLE, "ModelsLab was not called: the time budget was used up"
            )
        if last.timed_out:
            return done(OutcomeKind.UNAVAILABLE, f"ModelsLab timed out after {_plural(attempts)}")
        return done(OutcomeKind.UNAVAILABLE, f"{last.problem} ({_plural(attempts)})")

    def _pick_spelling(self, missing: set[str]) -> str:
        preferred = self._v3_spelling
        if preferred not in missing:
            return preferred
        return next(s for s in V3_SPELLINGS if s not in missing)

    @staticmethod
    def _settle(verdict: _Definitive, *, reached: bool) -> tuple[OutcomeKind, str]:
        """Turn a definitive answer into an outcome, allowing for an earlier attempt's effect."""
        if reached and (
            verdict.kind is OutcomeKind.NOT_FOUND
            or (verdict.kind is OutcomeKind.REFUSED and _ALREADY_DONE.search(verdict.reason))
        ):
            return (
                OutcomeKind.PROBABLY_CANCELLED,
                "an earlier attempt may have reached ModelsLab, which now says: " + verdict.reason,
            )
        return verdict.kind, verdict.reason

    async def _exchange(
        self, url: str, payload: dict[str, str], timeout: float, *, api: str, training_id: str
    ) -> _Verdict:
        """Send one cancel request and say what its answer means."""
        try:
            answer = await self._post(url, payload, timeout, training_id=training_id)
        except _AttemptFailed as exc:
            return _Transient(
                exc.problem, exc.reached, timed_out=exc.timed_out, immediate=not exc.reached
            )
        return _interpret(answer, api)

    # --- status --------------------------------------------------------------------------

    async def status(self, training_id: str, key: str) -> TrainingStatus:
        """Ask where a training stands (one attempt: callers poll again later)."""
        training_id = validate_training_id(training_id)
        v6 = is_v6_id(training_id)
        url = (
            f"{self._v6}/trainer/status/{training_id}"
            if v6
            else f"{self._base}/fine_tune_status/{training_id}"
        )
        try:
            answer = await self._post(
                url, {"key": key}, self._attempt_timeout, training_id=training_id
            )
        except _AttemptFailed as exc:
            return TrainingStatus(None, None, _clean(exc.problem, key), definitive=False)
        data = _load_json(answer.body)
        envelope = _envelope(data)
        if answer.status == 429:
            retry = _retry_after_header(answer.retry_after_header) or (
                envelope.retry_after if envelope else None
            )
            return TrainingStatus(
                None, None, "rate-limited", definitive=False, retry_after=retry or 60.0
            )
        if envelope is None or answer.status >= 500:
            return TrainingStatus(
                None, None, f"HTTP {answer.status} with {_describe_body(answer)}", definitive=False
            )
        if envelope.status in _ERROR_STATUSES:
            return TrainingStatus(
                None, None, _clean(envelope.message or "error", key), definitive=True
            )
        state = envelope.message
        if isinstance(data, dict):
            for field in ("training_status", "state"):
                if isinstance(data.get(field), str):
                    state = data[field]
            inner = data.get("data")
            if isinstance(inner, dict) and isinstance(inner.get("status"), str):
                state = inner["status"]
        details = _flatten(data.get("data")) if isinstance(data, dict) else ""
        return TrainingStatus(
            state.strip() or None, details or None, "", definitive=True, api="v6" if v6 else "v3"
        )

    # --- key check -----------------------------------------------------------------------

    async def check_key(self, key: str) -> KeyCheck:
        """Ask ModelsLab whether a key is valid, with a call that changes nothing."""
        if not key:
            return KeyCheck(ok=False, reason="no API key was given", definitive=True)
        try:
            answer = await self._post(
                f"{self._base}/finetune_list", {"key": key}, self._attempt_timeout, training_id=None
            )
        except _AttemptFailed as exc:
            return KeyCheck(False, _clean(f"ModelsLab unreachable: {exc.problem}", key), False)
        envelope = _envelope(_load_json(answer.body))
        if answer.status == 401:
            reason = envelope.message if envelope and envelope.message else "invalid API key"
            return KeyCheck(False, _clean(reason, key), True)
        if answer.status == 429 or answer.status >= 500 or envelope is None:
            problem = (
                f"HTTP {answer.status}"
                if answer.status == 429 or answer.status >= 500
                else f"HTTP {answer.status} with {_describe_body(answer)}"
            )
            return KeyCheck(False, _clean(f"ModelsLab unreachable: {problem}", key), False)
        if envelope.status == "success" and 200 <= answer.status < 300:
            return KeyCheck(True, "", True)
        if envelope.status in _ERROR_STATUSES:
            reason = envelope.message or f"ModelsLab refused the key (HTTP {answer.status})"
            return KeyCheck(False, _clean(reason, key), True)
        return KeyCheck(
            False,
            _clean(f"ModelsLab unreachable: unexpected status {envelope.status!r}", key),
            False,
        )

    # --- HTTP ----------------------------------------------------------------------------

    async def _post(
        self, url: str, payload: dict[str, str], timeout: float, *, training_id: str | None
    ) -> _Answer:
        """POST JSON and read the whole answer within ``timeout`` seconds, or raise _AttemptFailed."""
        path = httpx.URL(url).path
        started = time.monotonic()
        try:
            # wait_for bounds the whole exchange: httpx's own timeouts reset on every byte,
            # so a body dripping forever would otherwise never end.
            answer = await asyncio.wait_for(self._send(url, payload, timeout), timeout)
        except asyncio.TimeoutError as exc:
            self._log(path, "timeout", started, training_id)
            raise _AttemptFailed(
                f"ModelsLab did not answer within {timeout:.3g} s", reached=True, timed_out=True
            ) from exc
        except httpx.TimeoutException as exc:
            self._log(path, type(exc).__name__, started, training_id)
            # A connect timeout means nothing was sent; any other timeout may follow a sent request.
            raise _AttemptFailed(
                f"ModelsLab did not answer within {timeout:.3g} s",
                reached=not isinstance(exc, httpx.ConnectTimeout),
                timed_out=True,
            ) from exc
        except httpx.ConnectError as exc:
            self._log(path, "ConnectError", started, training_id)
            raise _AttemptFailed(
                f"could not connect to ModelsLab ({str(exc) or type(exc).__name__})", reached=False
            ) from exc
        except httpx.HTTPError as exc:
            self._log(path, type(exc).__name__, started, training_id)
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise _AttemptFailed(
                f"the connection to ModelsLab failed ({detail})", reached=True
            ) from exc
        self._log(path, str(answer.status), started, training_id)
        return answer

    async def _send(self, url: str, payload: dict[str, str], timeout: float) -> _Answer:
        async with self._http.stream(
            "POST",
            url,
            json=payload,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout),
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= MAX_BODY_BYTES:
                    break
            return _Answer(
                status=response.status_code,
                content_type=response.headers.get("content-type", "").lower(),
                retry_after_header=response.headers.get("retry-after"),
                body=b"".join(chunks)[:MAX_BODY_BYTES],
            )

    def _log(self, path: str, result: str, started: float, training_id: str | None) -> None:
        # Path and id only: the key is in the body, which is never logged.
        elapsed = time.monotonic() - started
        logger.debug(
            "ModelsLab POST %s -> %s in %.0f ms (training %s)",
            path,
            result,
            elapsed * 1000,
            training_id or "-",
        )
        if self._observer is not None:
            # The endpoint without the training id keeps metric labels bounded.
            endpoint = (
                path.rsplit("/", 1)[0] if training_id and path.endswith(training_id) else path
            )
            self._observer(endpoint.strip("/"), result, elapsed)


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
