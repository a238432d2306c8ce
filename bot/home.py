"""App Home and admin modal builders: pure functions returning view payloads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.access import Decision
from bot.blocks import slack_date, who
from bot.cancellation import headline
from bot.model import Cancellation

SET_KEY = "home_set_key"
REMOVE_KEY = "home_remove_key"
EDIT_ALLOW = "home_edit_allow"
ROTATE_WEBHOOK = "home_rotate_webhook"
AUDIT_CHANNEL = "home_audit_channel"
NOTIFY_CHANNEL = "home_notify_channel"
KEY_MODAL = "set_key_modal"
ALLOW_MODAL = "allow_modal"
KEY_BLOCK, KEY_INPUT = "key_block", "key_input"
USERS_BLOCK, USERS_INPUT = "users_block", "users_input"
GROUPS_BLOCK, GROUPS_INPUT = "groups_block", "groups_input"
WEBHOOK_PATH = "/modelslab/webhook/"

View = dict[str, Any]


@dataclass(frozen=True)
class AdminSettings:
    """What an admin sees of a workspace's settings (never a key)."""

    key: str
    fixed_entries: Sequence[str]
    entries: Sequence[str]
    webhook_token: str | None
    audit_channel: str | None
    notify_channel: str | None
    dry_run: bool


def _section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def _button(
    text: str, action_id: str, *, style: str | None = None, confirm: str | None = None
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
    }
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = {
            "title": {"type": "plain_text", "text": "Are you sure?"},
            "text": {"type": "mrkdwn", "text": confirm},
            "confirm": {"type": "plain_text", "text": text},
            "deny": {"type": "plain_text", "text": "Keep it"},
        }
    return button


def mention(entry: str) -> str:
    """Render an allow-list entry: a user or a user group."""
    return f"<!subteam^{entry}>" if entry.startswith("S") else f"<@{entry}>"


def build_home(
    *, decision: Decision, recent: Sequence[Cancellation], admin: AdminSettings | None
) -> View:
    """The Home tab: may I cancel, the last 10 cancellations, and admin settings for admins."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Cancel Training"}},
        _section(
            ":white_check_mark: You may cancel trainings in this workspace: `/cancel-training <id>` "
            "or the red button on a training notification."
            if decision.allowed
            else f":no_entry: {decision.reason}"
        ),
        {"type": "divider"},
        _section("*Last cancellations*"),
    ]
    if recent:
        lines = [
            f"• `{r.training_id}` — {who(r.requested_by)} — {slack_date(r.requested_at)} — {headline(r)}"
            + (" (dry run)" if r.dry_run else "")
            for r in recent
        ]
        blocks.append(_section("\n".join(lines)))
    else:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "None yet."}]})
    if admin is not None:
        blocks += _admin_blocks(admin)
    return {"type": "home", "blocks": blocks}


def _admin_blocks(admin: AdminSettings) -> list[dict[str, Any]]:
    fixed = ", ".join(mention(e) for e in admin.fixed_entries)
    stored = ", ".join(mention(e) for e in admin.entries)
    allow_text = "*Who may cancel*\n"
    if fixed:
        allow_text += f"Set by the operator (always in force): {fixed}\n"
    allow_text += f"Added here: {stored or '_nobody_'}"
    if not fixed and not stored:
        allow_text += "\n:warning: The list is empty, so nobody may cancel."
    webhook = (
        f"`<bot URL>{WEBHOOK_PATH}{admin.webhook_token}`"
        if admin.webhook_token
        else "_none yet — rotate to create one_"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "divider"},
        {"type": "header", "text": {"type": "plain_text", "text": "Settings (admins only)"}},
    ]
    if admin.dry_run:
        blocks.append(_section(":test_tube: *Dry run* is on: ModelsLab's cancel is never called."))
    blocks += [
        _section(f"*ModelsLab API key*: {admin.key}"),
        {
            "type": "actions",
            "block_id": "key_actions",
            "elements": [
                _button("Set or replace key", SET_KEY, style="primary"),
                _button(
                    "Remove key",
                    REMOVE_KEY,
                    style="danger",
                    confirm="Without a key nobody can cancel.",
                ),
            ],
        },
        _section(allow_text),
        {
            "type": "actions",
            "block_id": "allow_actions",
            "elements": [_button("Edit allow-list", EDIT_ALLOW)],
        },
        _section(
            f"*ModelsLab webhook URL* (the `webhook` field when starting a training): {webhook}"
        ),
        {
            "type": "actions",
            "block_id": "webhook_actions",
            "elements": [
                _button(
                    "Rotate webhook token",
                    ROTATE_WEBHOOK,
                    confirm="Trainings started with the old URL stop updating their notification.",
                )
            ],
        },
        _section(
            "*Audit channel* (every outcome and refusal)",
            accessory=_channel_select(AUDIT_CHANNEL, admin.audit_channel),
        ),
        _section(
            "*Notification channel* (webhooks and /notify)",
            accessory=_channel_select(NOTIFY_CHANNEL, admin.notify_channel),
        ),
    ]
    return blocks


def _channel_select(action_id: str, current: str | None) -> dict[str, Any]:
    select: dict[str, Any] = {
        "type": "conversations_select",
        "action_id": action_id,
        "placeholder": {"type": "plain_text", "text": "Pick a channel"},
        "filter": {"include": ["public", "private"], "exclude_bot_users": True},
    }
    if current:
        select["initial_conversation"] = current
    return select


def build_key_modal() -> View:
    """The modal that takes a ModelsLab API key (shown once, never displayed again)."""
    return {
        "type": "modal",
        "callback_id": KEY_MODAL,
        "title": {"type": "plain_text", "text": "ModelsLab API key"},
        "submit": {"type": "plain_text", "text": "Check and save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": KEY_BLOCK,
                "label": {"type": "plain_text", "text": "API key"},
                "hint": {
                    "type": "plain_text",
                    "text": "Checked with ModelsLab (no side effects), stored encrypted, never shown again.",
                },
                "element": {"type": "plain_text_input", "action_id": KEY_INPUT, "max_length": 200},
            }
        ],
    }


def build_allow_modal(*, users: Sequence[str], groups: Sequence[str], fixed: Sequence[str]) -> View:
    """The allow-list editor: user and user-group pickers (operator entries shown as fixed)."""
    blocks: list[dict[str, Any]] = []
    if fixed:
        blocks.append(
            _section(
                "Always allowed (set by the operator): " + ", ".join(mention(e) for e in fixed)
            )
        )
    users_element: dict[str, Any] = {"type": "multi_users_select", "action_id": USERS_INPUT}
    if users:
        users_element["initial_users"] = list(users)
    groups_element: dict[str, Any] = {
        "type": "multi_external_select",
        "action_id": GROUPS_INPUT,
        "min_query_length": 0,
    }
    if groups:
        groups_element["initial_options"] = [
            {"text": {"type": "plain_text", "text": g}, "value": g} for g in groups
        ]
    blocks += [
        {
            "type": "input",
            "block_id": USERS_BLOCK,
            "optional": True,
            "label": {"type": "plain_text", "text": "People who may cancel"},
            "element": users_element,
        },
        {
            "type": "input",
            "block_id": GROUPS_BLOCK,
            "optional": True,
            "label": {"type": "plain_text", "text": "User groups whose members may cancel"},
            "element": groups_element,
        },
    ]
    return {
        "type": "modal",
        "callback_id": ALLOW_MODAL,
        "title": {"type": "plain_text", "text": "Who may cancel"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": blocks,
    }


def build_notice_modal(text: str) -> View:
    """A modal that only says something (e.g. why an action was refused)."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Cancel Training"},
        "close": {"type": "plain_text", "text": "OK"},
        "blocks": [_section(text)],
    }
