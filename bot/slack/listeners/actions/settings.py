"""Admin buttons and pickers on the Home tab."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from bot.model import UNDO_CHOICES
from bot.slack.context import deps_of
from bot.slack.listeners.admin import ADMINS_ONLY, audit_admin_change, is_admin, publish_home
from bot.slack.messages import text
from bot.slack.messages.home import (
    AUDIT_CHANNEL,
    TWO_PERSON,
    build_allow_modal,
    build_key_modal,
    build_notice_modal,
)


async def _admin_or_refuse(body: dict[str, Any], context: AsyncBoltContext) -> bool:
    deps = deps_of(context)
    if await is_admin(deps, str(context.team_id), str(context.user_id), context.client):
        return True
    await context.client.views_open(
        trigger_id=body["trigger_id"], view=build_notice_modal(ADMINS_ONLY)
    )
    return False


async def handle_set_key(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
    """Open the key modal."""
    await ack()
    if await _admin_or_refuse(body, context):
        await context.client.views_open(trigger_id=body["trigger_id"], view=build_key_modal())


async def handle_remove_key(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
    """Remove the stored key."""
    await ack()
    if not await _admin_or_refuse(body, context):
        return
    deps, team, user = deps_of(context), str(context.team_id), str(context.user_id)
    await deps.workspaces.remove_key(team, by=user)
    await audit_admin_change(deps, team, user, "removed the workspace's ModelsLab API key")
    await publish_home(deps, context.client, team, user)


async def handle_edit_allow(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
    """Open the allow-list editor."""
    await ack()
    if not await _admin_or_refuse(body, context):
        return
    deps, team = deps_of(context), str(context.team_id)
    stored = await deps.queries.editable_entries(team)
    view = build_allow_modal(
        users=[e for e in stored if not e.startswith("S")],
        groups=[e for e in stored if e.startswith("S")],
        fixed=deps.workspaces.fixed_entries(team),
    )
    await context.client.views_open(trigger_id=body["trigger_id"], view=view)


async def handle_rotate_webhook(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext
) -> None:
    """Issue a new webhook token."""
    await ack()
    if not await _admin_or_refuse(body, context):
        return
    deps, team, user = deps_of(context), str(context.team_id), str(context.user_id)
    await deps.workspaces.rotate_webhook_token(team, by=user)
    await audit_admin_change(
        deps, team, user, "rotated the ModelsLab webhook token (the old URL no longer works)"
    )
    await publish_home(deps, context.client, team, user)


async def handle_rotate_audit_token(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext
) -> None:
    """Issue a new GET /audit token (OAuth), shown once in the issuing admin's Home."""
    await ack()
    if not await _admin_or_refuse(body, context):
        return
    deps, team, user = deps_of(context), str(context.team_id), str(context.user_id)
    if not deps.audit.per_workspace_tokens:
        return  # single workspace: the operator's AUDIT_TOKEN; Home offers no button
    token = await deps.workspaces.rotate_audit_token(team, by=user)
    await audit_admin_change(deps, team, user, "issued a new audit log token (the old one stops)")
    await publish_home(deps, context.client, team, user, new_audit_token=token)


async def handle_channel_pick(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext
) -> None:
    """Save the audit or notification channel."""
    await ack()
    if not await _admin_or_refuse(body, context):
        return
    deps, team, user = deps_of(context), str(context.team_id), str(context.user_id)
    action = (body.get("actions") or [{}])[0]
    channel = action.get("selected_conversation")
    audit = action.get("action_id") == AUDIT_CHANNEL
    await deps.workspaces.set_channel(team, audit=audit, channel=channel, by=user)
    name = "audit" if audit else "notification"
    await audit_admin_change(deps, team, user, f"set the {name} channel to {text.channel(channel)}")
    await publish_home(deps, context.client, team, user)


async def handle_safety_pick(
    ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext
) -> None:
    """Save the undo window or switch the two-person rule."""
    await ack()
    if not await _admin_or_refuse(body, context):
        return
    deps, team, user = deps_of(context), str(context.team_id), str(context.user_id)
    action = (body.get("actions") or [{}])[0]
    value = str((action.get("selected_option") or {}).get("value") or "")
    if action.get("action_id") == TWO_PERSON:
        await deps.workspaces.set_safety(team, by=user, two_person=value == "on")
        said = f"turned the two-person rule {'on' if value == 'on' else 'off'}"
    else:
        seconds = int(value) if value.isdigit() and int(value) in UNDO_CHOICES else 0
        await deps.workspaces.set_safety(team, by=user, undo_seconds=seconds)
        said = f"set the undo window to {seconds} s" if seconds else "turned the undo window off"
    await audit_admin_change(deps, team, user, said)
    await publish_home(deps, context.client, team, user)
