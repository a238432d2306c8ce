"""Logging: text or JSON lines, with every secret redacted on the handler's formatter."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

# Slack tokens and signed-URL-like secrets, whatever logger emits them.
_TOKEN_PATTERNS = re.compile(
    r"xox[abposre]-[0-9A-Za-z-]+|xapp-[0-9]-[0-9A-Za-z-]+"
    r"|https://hooks\.slack\.com/[^\s\"'<>]+"
    # The bare host, as aiohttp names it in a failed response_url post: say nothing of them.
    r"|hooks\.slack\.com"
    # The webhook token is the path segment after /modelslab/webhook/ (aiohttp's access log).
    r"|(?<=/modelslab/webhook/)[^\s\"'/?]+"
)
REDACTED = "[redacted]"
_EXTRA_FIELDS = ("workspace", "user", "training", "origin", "outcome", "latency_ms")


class Redactor:
    """Replaces token patterns and the configured secret values in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, values))) if values else None

    def __call__(self, text: str) -> str:
        """Return text with every secret replaced."""
        text = _TOKEN_PATTERNS.sub(REDACTED, text)
        if self._secrets is not None:
            text = self._secrets.sub(REDACTED, text)
        return text


class RedactingFormatter(logging.Formatter):
    """A formatter whose output never contains a secret."""

    def __init__(self, redact: Redactor, *, json_lines: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._redact = redact
        self._json = json_lines

    def format(self, record: logging.LogRecord) -> str:
        """Format the record, then redact."""
        if not self._json:
            return self._redact(super().format(record))
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _EXTRA_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self._redact(json.dumps(entry, default=str))


def setup_logging(*, level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    """Send every logger's records through one redacting handler on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(Redactor(secrets), json_lines=fmt == "json"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # One access-log line per request costs real CPU at load; it is there for debugging.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level == "DEBUG" else logging.WARNING
    )
    # slack_sdk and Bolt test `logger.level <= DEBUG` (the logger's own level, NOTSET = 0, not the
    # effective one) and then format every request body for a debug line nobody reads.
    for name in _SELF_LEVELLED:
        logging.getLogger(name).setLevel(level)
    # Alembic announces its autogenerate plugins (when imported) and its migration context on
    # every start, at INFO; only "Running upgrade …" tells an operator something.
    logging.getLogger("alembic.runtime.plugins").setLevel(
        logging.NOTSET if level == "DEBUG" else logging.WARNING
    )
    logging.getLogger("alembic.runtime.migration").addFilter(_alembic_context_at_debug_only)


def _alembic_context_at_debug_only(record: logging.LogRecord) -> bool:
    if not str(record.msg).startswith(_ALEMBIC_CONTEXT_LINES):
        return True
    return logging.getLogger().getEffectiveLevel() <= logging.DEBUG


_ALEMBIC_CONTEXT_LINES = ("Context impl ", "Will assume ")
_SELF_LEVELLED = (
    "bot.bolt",
    "slack_sdk.web.async_base_client",
    "slack_sdk.webhook.async_client",
)
