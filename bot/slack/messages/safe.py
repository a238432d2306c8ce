"""Block Kit builders for safe cancelling: the preview card, can-i and who-can answers."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import ActionsBlock, Block, ButtonElement

from bot.service.access import Explanation
from bot.service.cancellation import Preview
from bot.slack.messages import text as policy
from bot.slack.messages.blocks import (
    COMMAND,
    TITLE_CHARS,
    Message,
    _context,
    _message,
    _section,
    build_request_ack,
    cancel_button,
    slack_date,
)
from bot.slack.messages.text import outside
from bot.stages import normalise

CARD_CANCEL_ACTION = "cancel_from_card"
DISMISS_ACTION = "dismiss_card"
CARD_BLOCK = "card_actions"
# who-can lists at most this many entries; the rest is "…and N more".
LISTED_ENTRIES = 40

RULES = {
    "listed": "you are listed on the allow-list by your user ID",
    "group": "you are a member of the allowed user group {group}",
    "not_listed": "you are not on the allow-list, by ID or through any listed user group",
    "group_lookup": "the members of user group {group} could not be looked up, so access "
    "could not be confirmed (the bot fails closed)",
    "empty_list": "the allow-list is empty, so nobody may cancel yet",
    "other_workspace": "this bot is not set up for your workspace",
}


def build_preview_card(preview: Preview, *, dry_run: bool = False) -> Message:
    """What a typed id would cancel, privately, with a red Cancel training button and Dismiss."""
    note = preview.notification
    training = outside(preview.training_id, 64)
    title = outside(note.title, TITLE_CHARS) if note is not None else ""
    lines = [f"*Training `{training}`*" + (f" — {title}" if title else "")]
    owner = policy.user(note.owner_id) if note is not None and note.owner_id else "unknown"
    lines.append(f"Owner: {owner}")
    stage = normalise(preview.stage, api=preview.api)
    reported = normalise(note.stage) if note is not None else None
    if stage is not None:
        stage_words = f"*{outside(stage.words, 60)}*"
    elif reported is not None:
        stage_words = f"*{outside(reported.words, 60)}* (last reported)"
    else:
        stage_words = "unknown (ModelsLab did not answer in time)"
    eta = preview.eta or (note.eta if note is not None else None)
    lines.append(f"Stage: {stage_words} · ETA: {outside(eta, 40) if eta else 'unknown'}")
    started = note.started_at if note is not None else None
    lines.append(f"Started: {slack_date(started) if started else 'unknown'}")
    if note is None:
        lines.append(
            "_The bot posted no notification for this id: check it is the one you mean. "
            "ModelsLab decides whether it exists._"
        )
    blocks: list[Block] = [_section("\n".join(lines))]
    if preview.active is not None:
        # Nothing to press: a second request would only be told the same.
        told = build_request_ack(preview.active, created=False, notification=note)["text"]
        blocks.append(_section(told))
        blocks.append(
            ActionsBlock(
                block_id=CARD_BLOCK,
                elements=[ButtonElement(text="Dismiss", action_id=DISMISS_ACTION, value="dismiss")],
            )
        )
        return {"response_type": "ephemeral", **_message(told, blocks)}
    if dry_run:
        blocks.append(_context(":test_tube: Dry run: nothing will be cancelled."))
    blocks.append(
        ActionsBlock(
            block_id=CARD_BLOCK,
            elements=[
                cancel_button(preview.training_id, action_id=CARD_CANCEL_ACTION),
                ButtonElement(text="Dismiss", action_id=DISMISS_ACTION, value="dismiss"),
            ],
        )
    )
    return {"response_type": "ephemeral", **_message(f"Cancel training {training}?", blocks)}


def build_can_i(
    explanation: Explanation,
    *,
    training_id: str | None = None,
    two_person: bool = False,
    undo_seconds: int = 0,
) -> Message:
    """Whether the user may cancel, and which rule decided it."""
    group = policy.usergroup(explanation.group_id) if explanation.group_id else ""
    rule = RULES.get(explanation.rule, explanation.rule).format(group=group)
    what = f"training `{outside(training_id, 64)}`" if training_id else "trainings here"
    if explanation.allowed:
        text = f":white_check_mark: Yes, you may cancel {what}: {rule}."
        if two_person:
            text += (
                " The workspace's *two-person rule* applies to this training (you are not its "
                "owner): the owner or another allowed user must approve your request."
            )
        if undo_seconds:
            text += f" Requests wait {undo_seconds} s (the undo window) before ModelsLab is called."
    else:
        text = f":no_entry: No, you may not cancel {what}: {rule}."
        if explanation.rule == "group_lookup" and explanation.detail:
            text += f" ({outside(explanation.detail, 300)})"
    return {"response_type": "ephemeral", "text": policy.truncate(text, policy.MESSAGE_TEXT)}


def build_who_can(entries: Sequence[str] | None) -> Message:
    """The people and groups allowed to cancel, bounded."""
    if entries is None:
        text = ":no_entry: This bot is not set up for your workspace."
    elif not entries:
        text = "Nobody may cancel yet: the allow-list is empty. An admin adds people in App Home."
    else:
        users = [policy.user(e) for e in entries if not e.startswith("S")]
        groups = [policy.usergroup(e) for e in entries if e.startswith("S")]
        parts = []
        if users:
            parts.append(
                "*People:* "
                + policy.summarise(users, policy.SECTION_TEXT // 2, max_items=LISTED_ENTRIES)
            )
        if groups:
            parts.append(
                "*User groups* (their members): "
                + policy.summarise(groups, policy.SECTION_TEXT // 2, max_items=LISTED_ENTRIES)
            )
        text = "Who may cancel trainings here:\n" + "\n".join(parts)
        text += f"\nAsk `{COMMAND} can-i` to see which rule applies to you."
    return {"response_type": "ephemeral", "text": policy.truncate(text, policy.MESSAGE_TEXT)}
