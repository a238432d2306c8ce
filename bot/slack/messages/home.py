"""App Home and admin modal builders: pure functions returning view payloads."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    ConversationFilter,
    ConversationSelectElement,
    DividerBlock,
    ExternalDataMultiSelectElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
    UserMultiSelectElement,
)
from slack_sdk.models.views import View as ViewModel

from bot.model import UNDO_CHOICES, Cancellation, Safety
from bot.service.access import Decision
from bot.service.workspaces import KeyState
from bot.slack.messages import text as policy
from bot.slack.messages.blocks import LINE_CHARS, slack_date, who
from bot.slack.messages.outcomes import REASON_CHARS, outcome_words
from bot.slack.messages.text import escape, outside, truncate

SET_KEY = "home_set_key"
REMOVE_KEY = "home_remove_key"
EDIT_ALLOW = "home_edit_allow"
ROTATE_WEBHOOK = "home_rotate_webhook"
ROTATE_AUDIT_TOKEN = "home_rotate_audit_token"  # noqa: S105 - an action id, not a secret
AUDIT_CHANNEL = "home_audit_channel"
NOTIFY_CHANNEL = "home_notify_channel"
UNDO_WINDOW = "home_undo_window"
TWO_PERSON = "home_two_person"
KEY_MODAL = "set_key_modal"
ALLOW_MODAL = "allow_modal"
KEY_BLOCK, KEY_INPUT = "key_block", "key_input"
USERS_BLOCK, USERS_INPUT = "users_block", "users_input"
GROUPS_BLOCK, GROUPS_INPUT = "groups_block", "groups_input"
WEBHOOK_PATH = "/modelslab/webhook/"
RECENT_SHOWN = 10
# The allow-list editor lists the stored entries it can hold; the rest are shown, untouched.
EDITABLE_PREFIX = "editable:"

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
    # GET /audit: None in single-workspace mode (the operator's AUDIT_TOKEN), else whether this
    # workspace has a token; a token just issued is shown once, to the admin who issued it.
    audit_token_set: bool | None = None
    new_audit_token: str | None = None
    safety: Safety = field(default_factory=Safety)


def _section(text: str, **extra: Any) -> SectionBlock:
    # Slack refuses an empty text; nothing here is ever meant to be empty.
    shown = truncate(text, policy.SECTION_TEXT) or policy.ELLIPSIS
    return SectionBlock(text=MarkdownTextObject(text=shown), **extra)


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(text=policy.plain(text, policy.HEADER_TEXT))


def _button(
    text: str, action_id: str, *, style: str | None = None, confirm: str | None = None
) -> ButtonElement:
    return ButtonElement(
        text=policy.plain(text, policy.BUTTON_TEXT),
        action_id=action_id,
        style=style,
        confirm=ConfirmObject(
            title="Are you sure?",
            text=MarkdownTextObject(text=truncate(confirm, policy.CONFIRM_TEXT)),
            confirm=policy.plain(text, policy.CONFIRM_BUTTON),
            deny="Keep it",
        )
        if confirm
        else None,
    )


def _view(**fields: Any) -> View:
    # to_dict() checks what slack_sdk knows of Slack's limits (blocks per view, title length …).
    view: View = ViewModel(**fields).to_dict()
    return view


def mention(entry: str) -> str:
    """Render an allow-list entry: a user or a user group."""
    return policy.entry(entry)


def build_home(
    *,
    decision: Decision,
    recent: Sequence[Cancellation],
    admin: AdminSettings | None,
    links: Mapping[int, str] | None = None,
) -> View:
    """The Home tab: may I cancel, the last 10 cancellations, and admin settings for admins.

    `links`: each cancellation's thread link, by row id.
    """
    links = links or {}
    blocks: list[Block] = [
        _header("Cancel Training"),
        _section(
            ":white_check_mark: You may cancel trainings in this workspace: "
            f"`/cancel-training {escape('<id>')}` or the red button on a training notification."
            if decision.allowed
            else f":no_entry: {outside(decision.reason, REASON_CHARS)}"
        ),
        DividerBlock(),
        _section("*Last cancellations*"),
    ]
    if recent:
        lines = [
            truncate(
                f"• `{outside(r.training_id, 64)}` — {who(r.requested_by)} — "
                f"{slack_date(r.requested_at)} — {outcome_words(r)}"
                + (" (dry run)" if r.dry_run else "")
                + (f" — {policy.link(links[r.id], 'thread')}" if r.id in links else ""),
                LINE_CHARS,
            )
            for r in recent
        ]
        blocks.append(
            _section(
                policy.summarise(lines, policy.SECTION_TEXT, separator="\n", max_items=RECENT_SHOWN)
            )
        )
    else:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text="None yet.")]))
    if admin is not None:
        blocks += _admin_blocks(admin)
    return _view(type="home", blocks=blocks)


def _admin_blocks(admin: AdminSettings) -> list[Block]:
    # The two lists share the section; each ends "…and N more" when it does not fit.
    share = (policy.SECTION_TEXT - 200) // 2
    fixed = policy.summarise([mention(e) for e in admin.fixed_entries], share)
    stored = policy.summarise([mention(e) for e in admin.entries], share)
    allow_text = "*Who may cancel*\n"
    if fixed:
        allow_text += f"Set by the operator (always in force): {fixed}\n"
    allow_text += f"Added here: {stored or '_nobody_'}"
    if not fixed and not stored:
        allow_text += "\n:warning: The list is empty, so nobody may cancel."
    webhook = (
        f"`{escape('<bot URL>')}{WEBHOOK_PATH}{outside(admin.webhook_token, 200)}`"
        if admin.webhook_token
        else "_none yet — rotate to create one_"
    )
    blocks: list[Block] = [DividerBlock(), _header("Settings (admins only)")]
    if admin.dry_run:
        blocks.append(_section(":test_tube: *Dry run* is on: ModelsLab's cancel is never called."))
    blocks += [
        _section(f"*ModelsLab API key*: {admin.key}"),
        ActionsBlock(
            block_id="key_actions",
            elements=[
                _button("Set or replace key", SET_KEY, style="primary"),
                _button(
                    "Remove key",
                    REMOVE_KEY,
                    style="danger",
                    confirm="Without a key nobody can cancel.",
                ),
            ],
        ),
        _section(allow_text),
        ActionsBlock(block_id="allow_actions", elements=[_button("Edit allow-list", EDIT_ALLOW)]),
        _section(
            f"*ModelsLab webhook URL* (the `webhook` field when starting a training): {webhook}"
        ),
        ActionsBlock(
            block_id="webhook_actions",
            elements=[
                _button(
                    "Rotate webhook token",
                    ROTATE_WEBHOOK,
                    confirm="Trainings started with the old URL stop updating their notification.",
                )
            ],
        ),
        *_audit_token_blocks(admin),
        _section(
            "*Audit channel* (every outcome and refusal)",
            accessory=_channel_select(AUDIT_CHANNEL, admin.audit_channel),
        ),
        _section(
            "*Notification channel* (webhooks and /notify)",
            accessory=_channel_select(NOTIFY_CHANNEL, admin.notify_channel),
        ),
        _section(
            "*Undo window*: each request waits this long, with an Undo button, before ModelsLab "
            "is called",
            accessory=_choice(
                UNDO_WINDOW,
                [(_undo_label(n), str(n)) for n in _undo_choices(admin.safety.undo_seconds)],
                str(admin.safety.undo_seconds),
            ),
        ),
        _section(
            "*Two-person rule*: cancelling someone else's training needs the owner or a second "
            f"allowed user to approve within {admin.safety.approval_seconds // 60} min",
            accessory=_choice(
                TWO_PERSON,
                [("Off", "off"), ("On", "on")],
                "on" if admin.safety.two_person else "off",
            ),
        ),
    ]
    return blocks


def _audit_token_blocks(admin: AdminSettings) -> list[Block]:
    """GET /audit's token: issued (and rotated) here in OAuth mode, shown only once."""
    if admin.audit_token_set is None:
        return [
            _section(
                "*Audit log export* (`GET /audit`, JSON lines): with the operator's AUDIT_TOKEN."
            )
        ]
    state = "a token is set" if admin.audit_token_set else "_no token yet_"
    blocks: list[Block] = [
        _section(f"*Audit log export* (`GET /audit`, JSON lines, bearer token): {state}.")
    ]
    if admin.new_audit_token:
        blocks.append(
            _section(
                ":key: New token, shown only this once (copy it now): "
                f"`{outside(admin.new_audit_token, 100)}`"
            )
        )
    blocks.append(
        ActionsBlock(
            block_id="audit_token_actions",
            elements=[
                _button(
                    "Issue new audit token",
                    ROTATE_AUDIT_TOKEN,
                    confirm="The old token stops working at once.",
                )
            ],
        )
    )
    return blocks


def _undo_choices(current: int) -> list[int]:
    # A window set from the terminal (e.g. 45 s) is shown as it is, among the usual ones.
    return sorted({*UNDO_CHOICES, current})


def _undo_label(seconds: int) -> str:
    return f"{seconds} s" if seconds else "Off"


def _choice(action_id: str, options: list[tuple[str, str]], current: str) -> StaticSelectElement:
    choices = [Option(text=label, value=value) for label, value in options]
    initial = next((o for o in choices if o.value == current), None)
    return StaticSelectElement(action_id=action_id, options=choices, initial_option=initial)


def _channel_select(action_id: str, current: str | None) -> ConversationSelectElement:
    return ConversationSelectElement(
        action_id=action_id,
        placeholder="Pick a channel",
        filter=ConversationFilter(include=["public", "private"], exclude_bot_users=True),
        # Slack refuses the whole view for an initial_conversation that is not a channel id.
        initial_conversation=current if policy.is_channel_id(current) else None,
    )


def build_key_modal() -> View:
    """The modal that takes a ModelsLab API key (shown once, never displayed again)."""
    return _view(
        type="modal",
        callback_id=KEY_MODAL,
        title="ModelsLab API key",
        submit="Check and save",
        close="Cancel",
        blocks=[
            InputBlock(
                block_id=KEY_BLOCK,
                label="API key",
                hint="Checked with ModelsLab (no side effects), stored encrypted, never shown again.",
                element=PlainTextInputElement(action_id=KEY_INPUT, max_length=200),
            )
        ],
    )


def editable_entries(users: Sequence[str], groups: Sequence[str]) -> tuple[list[str], list[str]]:
    """The stored entries the editor's pickers hold: up to Slack's menu size, and as many as
    the view's private_metadata can name (the others stay on the list untouched)."""
    budget = policy.PRIVATE_METADATA - len(EDITABLE_PREFIX)
    shown: tuple[list[str], list[str]] = ([], [])
    used = 0
    for kind, entries in enumerate((users, groups)):
        for e in entries:
            if len(shown[kind]) >= policy.OPTIONS or used + len(e) + 1 > budget:
                break
            if not (0 < len(e) <= policy.OPTION_VALUE):
                continue
            shown[kind].append(e)
            used += len(e) + 1
    return shown


def editable_from_metadata(private_metadata: str | None) -> set[str] | None:
    """The entries an allow-list editor held (None: a view that does not say; all were held)."""
    if not private_metadata or not private_metadata.startswith(EDITABLE_PREFIX):
        return None
    return {e for e in private_metadata[len(EDITABLE_PREFIX) :].split(",") if e}


def build_allow_modal(*, users: Sequence[str], groups: Sequence[str], fixed: Sequence[str]) -> View:
    """The allow-list editor: user and user-group pickers (operator entries shown as fixed)."""
    shown_users, shown_groups = editable_entries(users, groups)
    hidden = [e for e in (*users, *groups) if e not in shown_users and e not in shown_groups]
    blocks: list[Block] = []
    if fixed:
        prefix = "Always allowed (set by the operator): "
        blocks.append(
            _section(
                prefix
                + policy.summarise(
                    [mention(e) for e in fixed], policy.SECTION_TEXT - policy.units(prefix)
                )
            )
        )
    if hidden:
        prefix = (
            f"Also allowed, more than these pickers hold ({len(hidden)}; they stay on the list, "
            f"remove them with `python -m bot deny {escape('<id>')}`): "
        )
        blocks.append(
            _section(
                prefix
                + policy.summarise(
                    [mention(e) for e in hidden], policy.SECTION_TEXT - policy.units(prefix)
                )
            )
        )
    blocks += [
        InputBlock(
            block_id=USERS_BLOCK,
            optional=True,
            label="People who may cancel",
            element=UserMultiSelectElement(
                action_id=USERS_INPUT, initial_users=shown_users or None
            ),
        ),
        InputBlock(
            block_id=GROUPS_BLOCK,
            optional=True,
            label="User groups whose members may cancel",
            element=ExternalDataMultiSelectElement(
                action_id=GROUPS_INPUT,
                min_query_length=0,
                initial_options=[
                    Option(text=policy.plain(g, policy.OPTION_TEXT), value=g) for g in shown_groups
                ]
                or None,
            ),
        ),
    ]
    return _view(
        type="modal",
        callback_id=ALLOW_MODAL,
        title="Who may cancel",
        submit="Save",
        close="Cancel",
        blocks=blocks,
        private_metadata=EDITABLE_PREFIX + ",".join(shown_users + shown_groups),
    )


def build_notice_modal(text: str) -> View:
    """A modal that only says something (e.g. why an action was refused); `text` is mrkdwn."""
    return _view(
        type="modal",
        title="Cancel Training",
        close="OK",
        blocks=[_section(text)],
    )


def build_group_options(groups: Sequence[Mapping[str, Any]], typed: str) -> dict[str, Any]:
    """The user-group picker's options (a block_suggestion answer), filtered by what was typed."""
    typed = typed.strip().lower()
    options: list[dict[str, Any]] = []
    for group in groups:
        group_id = group.get("id")
        if not (isinstance(group_id, str) and group_id[:1] == "S" and group_id.isalnum()):
            continue
        if len(group_id) > policy.OPTION_VALUE:
            continue
        handle, name = str(group.get("handle") or ""), str(group.get("name") or "")
        if typed and typed not in f"{handle} {name}".lower():
            continue
        label = f"@{handle} ({name})" if handle and name else (f"@{handle}" if handle else name)
        # plain_text: nothing in a group's name is read as markup or a mention.
        option = Option(
            text=policy.plain(label, policy.OPTION_TEXT, empty=group_id), value=group_id
        )
        options.append(option.to_dict())
        if len(options) == policy.OPTIONS:
            break
    return {"options": options}


def key_wording(state: KeyState) -> str:
    """Say whether a key is set, by whom and when, and its last four characters — never more."""
    if state.stored:
        by = (
            f" by {policy.user(state.set_by)}"
            if state.set_by and not state.set_by.startswith("cli:")
            else ""
        )
        when = (
            f" on <!date^{int(state.set_at)}^{{date_short}}|{time.strftime('%Y-%m-%d', time.gmtime(state.set_at))}>"
            if state.set_at
            else ""
        )
        return f"set{when}{by}, ends …{outside(state.hint, 20)}"
    if state.from_environment:
        return "set by the operator (MODELSLAB_API_KEY)"
    return "not set"
