"""app_uninstalled and tokens_revoked: forget what the workspace gave us."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from bot.slack.context import deps_of


async def handle_app_uninstalled(ack: AsyncAck, context: AsyncBoltContext) -> None:
    """Delete the workspace's installation, tokens, key, allow-list, settings and webhook token."""
    await ack()
    await deps_of(context).forget_workspace(context.enterprise_id, context.team_id)


async def handle_tokens_revoked(
    ack: AsyncAck, event: dict[str, Any], context: AsyncBoltContext
) -> None:
    """A revoked bot token is an uninstall; revoked user tokens delete only those."""
    await ack()
    deps = deps_of(context)
    tokens = event.get("tokens") or {}
    if tokens.get("bot"):
        await deps.forget_workspace(context.enterprise_id, context.team_id)
    elif tokens.get("oauth"):
        await deps.forget_user_tokens(context.enterprise_id, context.team_id, list(tokens["oauth"]))
