"""Events API listeners: the Home tab and uninstalls."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners.events.home import handle_app_home_opened
from bot.slack.listeners.events.lifecycle import handle_app_uninstalled, handle_tokens_revoked
from bot.slack.listeners.runner import acks_first


def register(app: AsyncApp) -> None:
    """Register event listeners."""
    app.event("app_home_opened")(acks_first(handle_app_home_opened))
    app.event("app_uninstalled")(acks_first(handle_app_uninstalled))
    app.event("tokens_revoked")(acks_first(handle_tokens_revoked))
