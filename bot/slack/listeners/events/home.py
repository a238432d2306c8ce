"""app_home_opened: publish the Home tab."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from bot.slack.context import deps_of
from bot.slack.listeners.admin import publish_home


async def handle_app_home_opened(
    ack: AsyncAck, event: dict[str, Any], context: AsyncBoltContext
) -> None:
    """Publish Home for the user who opened it."""
    await ack()
    if event.get("tab", "home") != "home":
        return
    await publish_home(deps_of(context), context.client, str(context.team_id), str(event["user"]))
