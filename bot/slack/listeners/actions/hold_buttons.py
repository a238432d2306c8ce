"""Undo, Approve and Deny on a held cancellation; Dismiss on the preview card."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond

from bot.errors import StoreUnavailable
from bot.slack.context import deps_of
from bot.slack.listeners.cancel_flow import STORE_DOWN
from bot.slack.messages.blocks import (
    APPROVE_ACTION,
    DENY_ACTION,
    build_error,
    build_hold_decided,
)

NOT_A_REQUEST = "This button does not belong to a cancellation of this workspace; nothing changed."


async def handle_hold_button(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    """Decide a held cancellation (the store decides who was first), then ack and say so."""
    deps = deps_of(context)
    action = (body.get("actions") or [{}])[0]
    value = str(action.get("value") or "")
    workspace_id, user_id = str(context.team_id), str(context.user_id)
    if not value.isdigit() or len(value) > 18:
        await ack()
        await respond(**build_error(NOT_A_REQUEST), replace_original=False)
        return
    decide = {
        APPROVE_ACTION: deps.service.approve,
        DENY_ACTION: deps.service.deny,
    }.get(str(action.get("action_id")), deps.service.undo)
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
    if not answer.done:
        await respond(**build_error(answer.refusal), replace_original=False)
        return
    message = body.get("message") or {}
    # The held notice in the thread shows the decision; the notification is the renderer's.
    if message.get("thread_ts") and message.get("thread_ts") != message.get("ts"):
        await respond(**build_hold_decided(answer.cancellation), replace_original=True)


async def handle_dismiss(ack: AsyncAck, context: AsyncBoltContext, respond: AsyncRespond) -> None:
    """Remove the private preview card."""
    await ack()
    await respond(delete_original=True)
