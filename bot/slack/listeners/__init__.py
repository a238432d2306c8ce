"""Bolt listeners, one package per Slack surface."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import actions, commands, events, views


def register(app: AsyncApp) -> None:
    """Register every surface's listeners."""
    commands.register(app)
    actions.register(app)
    events.register(app)
    views.register(app)
