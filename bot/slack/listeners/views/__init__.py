"""Modal submissions and the options they load."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners.runner import acks_first
from bot.slack.listeners.views.admin_modals import (
    handle_allow_submit,
    handle_group_options,
    handle_key_submit,
)
from bot.slack.messages import home


def register(app: AsyncApp) -> None:
    """Register the admin modals."""
    app.view(home.KEY_MODAL)(acks_first(handle_key_submit))
    app.view(home.ALLOW_MODAL)(acks_first(handle_allow_submit))
    app.options(home.GROUPS_INPUT)(acks_first(handle_group_options))
