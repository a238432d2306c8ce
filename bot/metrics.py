"""Prometheus metrics: bounded labels only (never a workspace, user or training id)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from bot.model import Cancellation

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The bot's metrics, on a registry of their own (one per running bot)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "cancelbot_requests",
            "Slack requests by kind and result",
            ["kind", "result"],
            registry=r,
        )
        self.refusals = Counter(
            "cancelbot_refusals", "Cancel requests refused, by reason", ["reason"], registry=r
        )
        self.cancellations = Counter(
            "cancelbot_cancellations", "Cancellations finished, by outcome", ["outcome"], registry=r
        )
        self.modelslab_seconds = Histogram(
            "cancelbot_modelslab_request_seconds",
            "ModelsLab HTTP calls by endpoint",
            ["endpoint"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.modelslab_errors = Counter(
            "cancelbot_modelslab_errors",
            "ModelsLab calls that failed, by type",
            ["type"],
            registry=r,
        )
        self.slack_retries = Counter(
            "cancelbot_slack_api_retries",
            "Slack Web API calls retried, by reason",
            ["reason"],
            registry=r,
        )
        self.slack_rate_limited = Counter(
            "cancelbot_slack_api_rate_limited", "Slack Web API answers with HTTP 429", registry=r
        )
        self.inflight = Gauge(
            "cancelbot_inflight_cancellations", "ModelsLab cancels in flight", registry=r
        )
        self.pending_recoveries = Gauge(
            "cancelbot_pending_recoveries",
            "Cancellations waiting for a retry or a lease to expire",
            registry=r,
        )
        self.outbox_backlog = Gauge(
            "cancelbot_outbox_backlog", "Slack reports not yet delivered", registry=r
        )

    def observe_modelslab(self, endpoint: str, result: str, seconds: float) -> None:
        """Record one ModelsLab HTTP call (the client's observer)."""
        self.modelslab_seconds.labels(endpoint=endpoint).observe(seconds)
        if not result.isdigit():
            self.modelslab_errors.labels(
                type=result if result in _KNOWN_ERRORS else "transport"
            ).inc()
        elif result == "429":
            self.modelslab_errors.labels(type="rate_limited").inc()
        elif result.startswith("5"):
            self.modelslab_errors.labels(type="http_5xx").inc()
        elif result == "401":
            self.modelslab_errors.labels(type="bad_key").inc()

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return bytes(generate_latest(self.registry))

    async def count_cancellation(self, row: Cancellation) -> None:
        """Count a finished cancellation by outcome."""
        self.cancellations.labels(outcome=row.outcome or "unknown").inc()


def request_kind(body: dict[str, object]) -> str:
    """A bounded label for what Slack sent."""
    if body.get("command"):
        return "command"
    kind = body.get("type")
    known = (
        "block_actions",
        "view_submission",
        "block_suggestion",
        "event_callback",
        "url_verification",
    )
    return kind if isinstance(kind, str) and kind in known else "other"


_KNOWN_ERRORS = frozenset(
    {"timeout", "ConnectError", "ReadError", "RemoteProtocolError", "WriteError"}
)
