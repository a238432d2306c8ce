"""Shared by the admin surfaces: the one admin policy call, publishing Home, auditing changes."""

from __future__ import annotations

import logging
from typing import Any

from bot.slack.context import Deps
from bot.slack.errors import SLACK_FAILURES
from bot.slack.messages.blocks import build_admin_change, report_links
from bot.slack.messages.home import AdminSettings, build_home

logger = logging.getLogger(__name__)
ADMINS_ONLY = ":lock: Only workspace admins and owners (and the operator's BOT_ADMINS) can change the bot's settings."


async def is_admin(deps: Deps, workspace_id: str, user_id: str, client: Any) -> bool:
    """The admin policy: one call for every admin action."""
    return await deps.workspaces.is_admin(workspace_id, user_id, client)


async def admin_settings(
    deps: Deps, workspace_id: str, *, new_audit_token: str | None = None
) -> AdminSettings:
    """What the admin part of Home shows."""
    ws = deps.workspaces
    token_set = (
        await deps.audit.has_token(workspace_id) if deps.audit.per_workspace_tokens else None
    )
    return AdminSettings(
        key=await ws.describe_key(workspace_id),
        fixed_entries=ws.fixed_entries(workspace_id),
        entries=await deps.queries.editable_entries(workspace_id),
        webhook_token=await ws.webhook_token(workspace_id),
        audit_channel=await ws.audit_channel(workspace_id),
        notify_channel=await ws.notify_channel(workspace_id),
        dry_run=deps.service.dry_run,
        audit_token_set=token_set,
        new_audit_token=new_audit_token,
        safety=await ws.safety(workspace_id),
    )


async def publish_home(
    deps: Deps, client: Any, workspace_id: str, user_id: str, *, new_audit_token: str | None = None
) -> None:
    """Publish the Home tab for one user (an audit token just issued is shown to them once)."""
    decision = await deps.access.check(workspace_id, user_id)
    recent = await deps.queries.history(workspace_id, limit=10)
    admin = (
        await admin_settings(deps, workspace_id, new_audit_token=new_audit_token)
        if await is_admin(deps, workspace_id, user_id, client)
        else None
    )
    view = build_home(
        decision=decision,
        recent=recent.rows,
        admin=admin,
        links=report_links(recent.rows, recent.notifications),
    )
    await client.views_publish(user_id=user_id, view=view)


async def audit_admin_change(deps: Deps, workspace_id: str, user_id: str, what: str) -> None:
    """Post an admin change to the workspace's audit channel, if it has one (never a secret).

    `what` is mrkdwn: anything from outside in it was put there with bot.slack.messages.text.
    """
    channel = await deps.workspaces.audit_channel(workspace_id)
    if not channel:
        return
    client = await deps.slack_client(workspace_id)
    if client is None:
        return
    try:
        await client.chat_postMessage(channel=channel, **build_admin_change(user_id, what))
    except SLACK_FAILURES as exc:
        logger.warning("audit channel: admin change not posted (%s)", type(exc).__name__)
