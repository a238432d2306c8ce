"""ModelsLab client: the only module that speaks HTTP to ModelsLab (design §4).

Every HTTP fact (status, body, transport failure) is turned here into one
:class:`CancelOutcome` or :class:`KeyCheck`; nothing above this module sees httpx.
The API key travels only in request bodies and is scrubbed from every text we return.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final

import httpx

from bot.errors import ConfigError
from bot.ids import is_v6_id, validate_training_id
from bot.model import OutcomeKind
from bot.modelslab.wire import (
    _ALREADY_DONE,
    _ERROR_STATUSES,
    MAX_BODY_BYTES,
    V3_SPELLINGS,
    CancelOutcome,
    KeyCheck,
    TrainingStatus,
    _Answer,
    _AttemptFailed,
    _clean,
    _Definitive,
    _describe_body,
    _envelope,
    _flatten,
    _interpret,
    _load_json,
    _plural,
    _RateLimited,
    _retry_after_header,
    _RouteMissing,
    _Transient,
    _Verdict,
)

logger = logging.getLogger(__name__)

_USER_AGENT: Final = "cancel-training-bot"


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
