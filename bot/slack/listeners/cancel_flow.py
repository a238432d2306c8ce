"""The cancel path shared by the command and the buttons: validate → authorise → claim."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from bot.errors import InvalidTrainingId, MissingKey, StoreUnavailable
from bot.ids import validate_training_id
from bot.model import Origin
from bot.slack.context import Deps
from bot.slack.errors import SLACK_FAILURES
from bot.slack.messages.blocks import (
    build_error,
    build_invalid_id,
    build_refusal,
    build_refusal_audit,
    build_request_ack,
)
from bot.timeouts import timeout

logger = logging.getLogger(__name__)
STORE_DOWN = "The bot's database is not answering, so nothing was cancelled. Try again in a moment."
TOO_BUSY = "The bot is too busy to answer in time, so nothing was cancelled. Try again in a moment."
UNCONFIRMED = (
    "The bot is overloaded and could not confirm your request in time. "
    "Check `/cancel-training history` in a moment before asking again."
)
# Slack waits 3 s for the ack; the claim must be decided well before that.
CLAIM_DEADLINE = 2.2


@dataclass(frozen=True)
class CancelRequest:
    """A user's request to cancel, as plain values."""

    workspace_id: str
    user_id: str
    training_id: str
    origin: Origin
    channel_id: str | None
    response_url: str | None
    received_at: float = 0.0  # time.monotonic() at arrival; 0 = now


@dataclass(frozen=True)
class CancelAnswer:
    """What to tell the requester, and whether a new cancellation was claimed."""

    message: dict[str, Any]
    created: bool = False
    refused: bool = False
    reason: str = ""  # why it was refused, as plain words (for the audit channel)
    rule: str = ""  # which rule refused it (the access policy's code, for the audit log)


async def request_cancel(deps: Deps, req: CancelRequest) -> CancelAnswer:
    """Run the cancel path up to the claim; the result is what the ack says."""
    try:
        training_id = validate_training_id(req.training_id)
    except InvalidTrainingId as exc:
        return CancelAnswer(build_invalid_id(str(exc)))
    arrived = req.received_at or time.monotonic()
    decision = await deps.access.check(req.workspace_id, req.user_id)
    if not decision.allowed:
        deps.metrics.refusals.labels(reason=decision.code).inc()
        return CancelAnswer(
            build_refusal(decision), refused=True, reason=decision.reason, rule=decision.code
        )
    remaining = CLAIM_DEADLINE - (time.monotonic() - arrived)
    if remaining <= 0:
        return CancelAnswer(build_error(TOO_BUSY))
    try:
        # Bounded so the ack still reaches Slack: a claim Slack never hears about would cancel
        # while the user sees an error and presses again.
        async with timeout(remaining):
            result = await deps.service.request(
                workspace_id=req.workspace_id,
                training_id=training_id,
                requested_by=req.user_id,
                origin=req.origin,
                channel_id=req.channel_id,
                response_url=deps.response_urls.seal(req.response_url),
            )
    except asyncio.TimeoutError:
        logger.warning("cancel path over its deadline; told the user to check history")
        return CancelAnswer(build_error(UNCONFIRMED))
    except MissingKey as exc:
        return CancelAnswer(build_error(f"{str(exc).capitalize()}."))
    except StoreUnavailable:
        logger.warning("store unavailable on the cancel path")
        return CancelAnswer(build_error(STORE_DOWN))
    if result.created:
        deps.response_urls.remember(result.cancellation.id, req.response_url)
    return CancelAnswer(
        build_request_ack(
            result.cancellation, created=result.created, notification=result.notification
        ),
        created=result.created,
    )


async def audit_refusal(
    deps: Deps,
    req: CancelRequest,
    reason: str,
    *,
    doing: str = "cancelling",
    rule: str = "",
) -> None:
    """Record a refusal in the audit log, and post it to the audit channel if there is one
    (after the ack; the post is best effort).

    `reason` is the refusal in plain words (CancelAnswer.reason), not the user's message;
    `doing` what was refused ("cancelling", "undoing the cancellation of", ...).
    """
    try:
        await deps.audit.record_refusal(
            workspace_id=req.workspace_id,
            user_id=req.user_id,
            training_id=req.training_id[:64] or None,
            origin=req.origin.value,
            rule=(rule or "not_allowed") + ("" if doing == "cancelling" else f" ({doing})"),
            reason=reason,
        )
    except StoreUnavailable:
        logger.warning("audit log: refusal not recorded (the database is not answering)")
    channel = await deps.workspaces.audit_channel(req.workspace_id)
    if not channel:
        return
    client = await deps.slack_client(req.workspace_id)
    message = build_refusal_audit(
        user_id=req.user_id,
        training_id=req.training_id,
        origin=req.origin.value,
        reason=reason,
        doing=doing,
    )
    try:
        await client.chat_postMessage(channel=channel, **message)
    except SLACK_FAILURES as exc:
        logger.warning("audit channel: refusal not posted (%s)", type(exc).__name__)
