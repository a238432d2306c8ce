"""Button listeners."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.blocks import CANCEL_ACTION, RETRY_ACTION
from bot.listeners.actions.cancel_button import handle_cancel_button


def register(app: AsyncApp) -> None:
    """Register the Cancel and Retry buttons."""
    app.action(CANCEL_ACTION)(handle_cancel_button)
    app.action(RETRY_ACTION)(handle_cancel_button)
