"""Slash command listeners."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.blocks import COMMAND
from bot.listeners.commands.cancel_training import handle_cancel_training


def register(app: AsyncApp) -> None:
    """Register /cancel-training."""
    app.command(COMMAND)(handle_cancel_training)
