"""Button and picker listeners."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners.actions.cancel_button import handle_cancel_button
from bot.slack.listeners.actions.hold_buttons import handle_dismiss, handle_hold_button
from bot.slack.listeners.actions.settings import (
    handle_channel_pick,
    handle_edit_allow,
    handle_remove_key,
    handle_rotate_audit_token,
    handle_rotate_webhook,
    handle_safety_pick,
    handle_set_key,
)
from bot.slack.listeners.runner import acks_first
from bot.slack.messages import home
from bot.slack.messages.blocks import (
    APPROVE_ACTION,
    CANCEL_ACTION,
    DENY_ACTION,
    RETRY_ACTION,
    UNDO_ACTION,
)
from bot.slack.messages.safe import CARD_CANCEL_ACTION, DISMISS_ACTION


def register(app: AsyncApp) -> None:
    """Register the Cancel, Retry, card, Undo/Approve/Deny buttons and the Home tab's controls."""
    app.action(CANCEL_ACTION)(acks_first(handle_cancel_button))
    app.action(RETRY_ACTION)(acks_first(handle_cancel_button))
    app.action(CARD_CANCEL_ACTION)(acks_first(handle_cancel_button))
    app.action(DISMISS_ACTION)(acks_first(handle_dismiss))
    for hold_action in (UNDO_ACTION, APPROVE_ACTION, DENY_ACTION):
        app.action(hold_action)(acks_first(handle_hold_button))
    app.action(home.SET_KEY)(acks_first(handle_set_key))
    app.action(home.REMOVE_KEY)(acks_first(handle_remove_key))
    app.action(home.EDIT_ALLOW)(acks_first(handle_edit_allow))
    app.action(home.ROTATE_WEBHOOK)(acks_first(handle_rotate_webhook))
    app.action(home.ROTATE_AUDIT_TOKEN)(acks_first(handle_rotate_audit_token))
    app.action(home.AUDIT_CHANNEL)(acks_first(handle_channel_pick))
    app.action(home.NOTIFY_CHANNEL)(acks_first(handle_channel_pick))
    app.action(home.UNDO_WINDOW)(acks_first(handle_safety_pick))
    app.action(home.TWO_PERSON)(acks_first(handle_safety_pick))
