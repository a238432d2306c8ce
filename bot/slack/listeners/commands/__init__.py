"""Slash command listeners."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners.commands.cancel_training import handle_cancel_training
from bot.slack.listeners.runner import acks_first
from bot.slack.messages.blocks import COMMAND


def register(app: AsyncApp) -> None:
    """Register /cancel-training."""
    app.command(COMMAND)(acks_first(handle_cancel_training))
