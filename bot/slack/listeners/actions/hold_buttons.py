"""Undo, Approve and Deny on a held cancellation; Dismiss on the preview card."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond

from bot.errors import StoreUnavailable
from bot.model import Origin
from bot.slack.context import deps_of
from bot.slack.listeners.cancel_flow import STORE_DOWN, CancelRequest, audit_refusal
from bot.slack.messages.blocks import (
    APPROVE_ACTION,
    DENY_ACTION,
    build_approval_ended,
    build_error,
    build_hold_decided,
)

NOT_A_REQUEST = "This button does not belong to a cancellation of this workspace; nothing changed."
# What a refused press tried to do, for the audit channel.
DOING = {
    APPROVE_ACTION: "approving the cancellation of",
    DENY_ACTION: "denying the cancellation of",
}
UNDOING = "undoing the cancellation of"


async def handle_hold_button(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    """Decide a held cancellation (the store decides who was first), then ack and say so."""
    deps = deps_of(context)
    action = (body.get("actions") or [{}])[0]
    value = str(action.get("value") or "")
    workspace_id, user_id = str(context.team_id), str(context.user_id)
    # isascii too: "²".isdigit() is true, and int() would raise before the ack.
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        await ack()
        await respond(**build_error(NOT_A_REQUEST), replace_original=False)
        return
    action_id = str(action.get("action_id"))
    decide = {
        APPROVE_ACTION: deps.service.approve,
        DENY_ACTION: deps.service.deny,
    }.get(action_id, deps.service.undo)
    try:
        answer = await decide(int(value), workspace_id=workspace_id, user_id=user_id)
    except StoreUnavailable:
        await ack()
        await respond(**build_error(STORE_DOWN), replace_original=False)
        return
    await ack()
    if answer.cancellation is None:
        await respond(**build_error(NOT_A_REQUEST), replace_original=False)
        return
    if answer.ended_at is not None:
        await respond(**build_approval_ended(answer.ended_at), replace_original=False)
        return
    if not answer.done:
        await respond(**build_error(answer.refusal), replace_original=False)
        if answer.refused:
            req = CancelRequest(
                workspace_id=workspace_id,
                user_id=user_id,
                training_id=answer.cancellation.training_id,
                origin=Origin.BUTTON,
                channel_id=context.channel_id,
                response_url=None,
            )
            await audit_refusal(deps, req, answer.refusal, doing=DOING.get(action_id, UNDOING))
        return
    message = body.get("message") or {}
    in_thread = message.get("thread_ts") and message.get("thread_ts") != message.get("ts")
    # The held notice in the thread and the requester's private answer show the decision;
    # the notification is the renderer's.
    if in_thread or (body.get("container") or {}).get("is_ephemeral"):
        await respond(**build_hold_decided(answer.cancellation), replace_original=True)


async def handle_dismiss(ack: AsyncAck, context: AsyncBoltContext, respond: AsyncRespond) -> None:
    """Remove the private preview card."""
    await ack()
    await respond(delete_original=True)
