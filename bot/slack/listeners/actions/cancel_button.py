"""The Cancel training buttons (notification, list, preview card) and Retry."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackClientError

from bot.errors import StoreUnavailable
from bot.model import Origin
from bot.slack.context import Deps, deps_of, received_at
from bot.slack.listeners.cancel_flow import STORE_DOWN, CancelRequest, audit_refusal, request_cancel
from bot.slack.messages.blocks import RETRY_ACTION, build_error
from bot.slack.messages.safe import CARD_CANCEL_ACTION

logger = logging.getLogger(__name__)
ORIGINS = {RETRY_ACTION: Origin.RETRY, CARD_CANCEL_ACTION: Origin.COMMAND}

MISMATCH = "This button does not belong to a training notification of this workspace; nothing was cancelled."


async def _belongs(
    deps: Deps, workspace_id: str, training_id: str, container: dict[str, Any]
) -> bool:
    """A click on a notification must match the notification the bot recorded for that training."""
    if container.get("is_ephemeral") or container.get("type") != "message":
        # Buttons in the bare-command list: the id is checked like a typed one.
        return True
    note = await deps.queries.notification(workspace_id, training_id)
    return note is not None and (note.channel_id, note.message_ts) == (
        container.get("channel_id"),
        container.get("message_ts"),
    )


async def handle_cancel_button(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    """Claim the cancellation, then ack; the notification shows progress and outcome."""
    deps = deps_of(context)
    action = (body.get("actions") or [{}])[0]
    value = action.get("value")
    training_id = value if isinstance(value, str) else ""
    workspace_id, user_id = str(context.team_id), str(context.user_id)
    container = body.get("container") or {}
    try:
        belongs = await _belongs(deps, workspace_id, training_id[:64], container)
    except StoreUnavailable:
        await ack()
        await respond(**build_error(STORE_DOWN), replace_original=False)
        return
    if not belongs:
        await ack()
        await respond(**build_error(MISMATCH), replace_original=False)
        return
    req = CancelRequest(
        workspace_id=workspace_id,
        user_id=user_id,
        training_id=training_id,
        origin=ORIGINS.get(str(action.get("action_id")), Origin.BUTTON),
        channel_id=context.channel_id,
        response_url=body.get("response_url"),
        received_at=received_at(context),
    )
    answer = await request_cancel(deps, req)
    await ack()
    if req.origin is Origin.COMMAND:
        # The preview card's click: the card gives way to what became of the request. Best
        # effort: the claim stands, and the thread (or the fallback) tells the outcome anyway.
        try:
            await respond(**answer.message, replace_original=True)
        except (SlackClientError, OSError, asyncio.TimeoutError) as exc:
            logger.warning("preview card not replaced (%s)", type(exc).__name__)
    # A new claim shows on the notification itself; everything else is said privately.
    elif not answer.created or container.get("is_ephemeral"):
        await respond(**answer.message, replace_original=False)
    if answer.refused:
        await audit_refusal(deps, req, answer.reason, rule=answer.rule)
