"""Block Kit builders: pure functions from stored state to message payloads."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.model import (
    ACTIVE_STATES,
    QUEUED_STATES,
    Cancellation,
    Hold,
    Notification,
    OutcomeKind,
    State,
)
from bot.service.access import Decision
from bot.service.cancellation import DENIED, EXPIRED, UNDONE
from bot.slack.messages import text as policy
from bot.slack.messages.outcomes import REASON_CHARS, outcome_words, said
from bot.slack.messages.text import escape, outside, truncate
from bot.stages import READY, normalise

CANCEL_ACTION = "cancel_training"
RETRY_ACTION = "retry_cancel"
UNDO_ACTION = "undo_cancel"
APPROVE_ACTION = "approve_cancel"
DENY_ACTION = "deny_cancel"
HOLD_BLOCK = "hold_actions"
ACTIONS_BLOCK = "train_actions"
COMMAND = "/cancel-training"
DRY_RUN_MARK = ":test_tube: *Dry run* — nothing was cancelled. "
# How much of each outside text a message shows (Slack's own limits are in bot.slack.messages.text).
TITLE_CHARS = 500
LIST_TITLE_CHARS = 150
NAME_CHARS = 80
LINE_CHARS = 500
LISTED_TRAININGS = 10

Message = dict[str, Any]


def slack_date(epoch: float) -> str:
    """Return a date token every reader sees in their own time zone."""
    fallback = dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time}}|{fallback}>"


def who(requested_by: str) -> str:
    """Return a mention for a Slack user, or the terminal user's name."""
    if requested_by.startswith("cli:"):
        return f"`{outside(requested_by[4:], NAME_CHARS)}` (terminal)"
    return policy.user(requested_by)


def thread_link(channel_id: str, ts: str) -> str:
    """Guess a link to a message (only where Slack gave no permalink: it may open another workspace)."""
    return f"https://slack.com/archives/{channel_id}/p{ts.replace('.', '')}"


def notification_link(note: Notification) -> str:
    """The link to a notification: the permalink Slack gave when it was posted, else a guess."""
    return note.permalink or thread_link(note.channel_id, note.message_ts)


def report_link(row: Cancellation, note: Notification | None) -> str | None:
    """Where a cancellation's outcome is: its notification's thread, else the report's own."""
    if note is not None:
        return notification_link(note)
    if row.report_channel and row.report_thread_ts and row.report_channel != "-":
        return row.report_permalink or thread_link(row.report_channel, row.report_thread_ts)
    return None


def report_links(rows: Sequence[Cancellation], notes: Mapping[str, Notification]) -> dict[int, str]:
    """The thread link of each row that has one, by row id (`notes` by training id)."""
    links = {row.id: report_link(row, notes.get(row.training_id)) for row in rows}
    return {row_id: link for row_id, link in links.items() if link}


def _message(text: str, blocks: Sequence[Block], **extra: Any) -> Message:
    return {
        "text": truncate(text, policy.MESSAGE_TEXT),
        "blocks": [b.to_dict() for b in blocks],
        **extra,
    }


def _ephemeral(text: str) -> Message:
    return {"response_type": "ephemeral", "text": truncate(text, policy.MESSAGE_TEXT)}


def _section(text: str, **extra: Any) -> SectionBlock:
    # Slack refuses an empty text; nothing here is ever meant to be empty.
    shown = truncate(text, policy.SECTION_TEXT) or policy.ELLIPSIS
    return SectionBlock(text=MarkdownTextObject(text=shown), **extra)


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=truncate(text, policy.CONTEXT_TEXT))])


def build_usage() -> Message:
    """The help text for /cancel-training."""
    arg = escape("<training_id>")
    text = (
        f"*{COMMAND} {arg}* — show what would be cancelled, with a Cancel training button "
        "(ids look like `F5jvdzGnYi` or a UUID)\n"
        f"*{COMMAND}* — list the trainings you can still cancel, each with a button\n"
        f"*{COMMAND} history* — the last 10 cancellations in this workspace; narrow with a "
        f"training id, an @user and/or a period: `{COMMAND} history @alice 7d`\n"
        f"*{COMMAND} watch {arg}* — post a live status message for a training started elsewhere\n"
        f"*{COMMAND} cancel {arg}* — the same for an id that happens to be a subcommand word\n"
        f"*{COMMAND} can-i [{arg}]* — whether you may cancel, and which rule decides it\n"
        f"*{COMMAND} who-can* — the people and user groups allowed to cancel\n"
        f"*{COMMAND} help* — this message"
    )
    return _ephemeral(text)


def build_invalid_id(reason: str) -> Message:
    """Explain why a training id was not accepted."""
    return _ephemeral(
        f":warning: That is not a training id: {outside(reason, REASON_CHARS)}. Ids look like "
        f"`F5jvdzGnYi` or a UUID. Try `{COMMAND} help`."
    )


def build_watching(training_id: str, *, existing_link: str | None = None) -> Message:
    """Confirm that a training is being watched."""
    training = outside(training_id, 64)
    if existing_link:
        return _ephemeral(
            f":eyes: Watching training `{training}`: its {policy.link(existing_link, 'live message')} "
            "is updated until the training finishes."
        )
    return _ephemeral(
        f":eyes: Watching training `{training}`: a live message with its stage and a Cancel "
        "button is posted in this channel and updated until the training finishes."
    )


def build_refusal(decision: Decision) -> Message:
    """Tell a user privately why they may not cancel."""
    return _ephemeral(f":no_entry: {outside(decision.reason, REASON_CHARS)}")


def build_refusal_audit(
    *, user_id: str, training_id: str, origin: str, reason: str, doing: str = "cancelling"
) -> Message:
    """The audit channel's copy of a refusal: who, doing what to which training, via what, why."""
    return {
        "text": truncate(
            f":no_entry: {who(user_id)} was refused {doing} training "
            f"`{outside(training_id, 64)}` (via {outside(origin, 20)}): "
            f"{outside(reason, REASON_CHARS)}",
            policy.MESSAGE_TEXT,
        )
    }


def build_admin_change(user_id: str, what: str) -> Message:
    """The audit channel's record of an admin change; `what` is mrkdwn built with bot.slack.messages.text."""
    return {"text": truncate(f":gear: {who(user_id)} {what}.", policy.MESSAGE_TEXT)}


def build_approval_ended(ended_at: float) -> Message:
    """An Approve pressed too late: when the approval time ended."""
    return build_error(
        f"The approval time ended at {slack_date(ended_at)}, so this request can no longer be "
        "decided; nothing was cancelled."
    )


def build_error(text: str) -> Message:
    """A short ephemeral error for the user; `text` is the bot's own mrkdwn."""
    return _ephemeral(f":warning: {text}")


def build_request_ack(
    row: Cancellation, *, created: bool, notification: Notification | None
) -> Message:
    """What the requester sees right away: cancelling, or who got there first."""
    training = f"`{outside(row.training_id, 64)}`"
    if created:
        where = (
            " The outcome will be posted in "
            + policy.link(notification_link(notification), "the notification's thread")
            + "."
            if notification
            else " The outcome will be posted in a thread in this channel."
        )
        dry = "(dry run) " if row.dry_run else ""
        if row.state == State.HELD:
            # The buttons are here too: without a thread (the bot cannot post in the
            # channel) this private answer is the only place they show.
            text = f"{dry}{hold_line(row)}.{where}"
            return {
                "response_type": "ephemeral",
                **_message(text, [_section(text), hold_buttons(row)]),
            }
        return _ephemeral(f":hourglass_flowing_sand: {dry}Cancelling training {training}…{where}")
    if row.state == State.CANCELLED:
        return _ephemeral(
            f"Training {training} was already cancelled by {who(row.requested_by)} at "
            f"{slack_date(row.finished_at or row.requested_at)} ({outcome_words(row)})."
        )
    if row.state == State.HELD:
        return _ephemeral(f"Training {training} is already {held_words(row)}")
    return _ephemeral(
        f"Training {training} is already being cancelled — requested by {who(row.requested_by)} at "
        f"{slack_date(row.requested_at)}."
    )


def held_words(row: Cancellation) -> str:
    """What a held request waits for, said to someone other than its requester."""
    by = who(row.requested_by)
    until = row.held_until or row.requested_at
    if row.hold is Hold.APPROVAL:
        owner = policy.user(row.owner_id) if row.owner_id else "the training's owner"
        return (
            f"waiting for approval — requested by {by}; {owner} or another allowed user may "
            f"approve it (Approve in the thread) until {slack_date(until)}, or "
            "nothing is cancelled."
        )
    seconds = max(0, round(until - time.time()))
    return (
        f"being cancelled in {seconds} s — requested by {by}; press Undo in the thread to stop it."
    )


def cancel_button(
    training_id: str,
    *,
    retry: bool = False,
    action_id: str | None = None,
    visible_to: Sequence[str] | None = None,
) -> ButtonElement:
    """The red Cancel (or Retry) button with its confirm dialog (shown to `visible_to` only)."""
    shown_to = list(visible_to) if visible_to and len(visible_to) <= policy.VISIBLE_USERS else None
    return ButtonElement(
        visible_to_user_ids=shown_to,
        text="Retry cancel" if retry else "Cancel training",
        action_id=action_id or (RETRY_ACTION if retry else CANCEL_ACTION),
        value=training_id[: policy.BUTTON_VALUE],
        style="danger",
        confirm=ConfirmObject(
            title="Cancel this training?",
            text=MarkdownTextObject(
                text=truncate(
                    f"Training `{outside(training_id, 64)}` will be cancelled on ModelsLab. "
                    "A cancelled run cannot be resumed; it has to be started again.",
                    policy.CONFIRM_TEXT,
                )
            ),
            confirm="Cancel training",
            deny="Keep it running",
            style="danger",
        ),
    )


def hold_line(row: Cancellation) -> str:
    """What a held cancellation waits for: its undo window, or an approval (two-person rule)."""
    training = f"`{outside(row.training_id, 64)}`"
    by = who(row.requested_by)
    until = row.held_until or row.requested_at
    if row.hold is Hold.APPROVAL:
        owner = policy.user(row.owner_id) if row.owner_id else "the training's owner"
        return (
            f":raised_hand: {by} asked to cancel training {training}. The two-person rule applies: "
            f"{owner} or another allowed user must approve by {slack_date(until)}, "
            "or nothing is cancelled."
        )
    seconds = max(0, round(until - row.requested_at))
    return f":hourglass: Cancelling training {training} in {seconds} s — requested by {by}"


def hold_buttons(row: Cancellation) -> ActionsBlock:
    """Undo (undo window) or Approve / Deny (two-person rule) for a held cancellation."""
    value = str(row.id)
    if row.hold is Hold.APPROVAL:
        elements = [
            ButtonElement(text="Approve", action_id=APPROVE_ACTION, value=value, style="primary"),
            ButtonElement(text="Deny", action_id=DENY_ACTION, value=value),
        ]
    else:
        elements = [ButtonElement(text="Undo", action_id=UNDO_ACTION, value=value)]
    return ActionsBlock(block_id=HOLD_BLOCK, elements=elements)


def build_hold_notice(row: Cancellation) -> Message:
    """The thread reply while a cancellation is held, with its Undo or Approve / Deny buttons."""
    line = hold_line(row)
    return _message(line, [_section(line), hold_buttons(row)])


_DECIDED = {UNDONE: "Undone", DENIED: "Denied", EXPIRED: "Not approved in time"}


def build_hold_decided(row: Cancellation) -> Message:
    """The held notice once decided: who undid, denied or approved it (no buttons left)."""
    training = f"`{outside(row.training_id, 64)}`"
    by = who(row.decided_by) if row.decided_by else "nobody"
    if row.state == State.WITHDRAWN:
        words = _DECIDED.get(row.outcome or "", "Withdrawn")
        text = (
            f":leftwards_arrow_with_hook: {words} by {by} — training {training} was not "
            "cancelled; ModelsLab was not called."
        )
    else:
        text = f":white_check_mark: Approved by {by} — cancelling training {training} now."
    return _message(text, [_section(text)])


def _withdrawn_words(row: Cancellation) -> str:
    by = who(row.decided_by) if row.decided_by else ""
    if row.outcome == UNDONE:
        return f"undone by {by}"
    if row.outcome == DENIED:
        return f"denied by {by}"
    return "not approved in time"


def _state_line(latest: Cancellation) -> tuple[str, bool]:
    """Return the notification's status line and whether a Retry button belongs under it."""
    dry = DRY_RUN_MARK if latest.dry_run else ""
    by = who(latest.requested_by)
    if latest.state == State.HELD:
        return hold_line(latest), False
    if latest.state == State.WITHDRAWN:
        return (
            f":leftwards_arrow_with_hook: Not cancelled: the request by {by} was "
            f"{_withdrawn_words(latest)} at {slack_date(latest.finished_at or latest.updated_at)}.",
            False,
        )
    if latest.state in QUEUED_STATES:
        if latest.outcome == OutcomeKind.RATE_LIMITED:
            return (
                f":hourglass: Cancelling… requested by {by}; ModelsLab is rate-limiting, retry at "
                f"{slack_date(latest.next_attempt_at)}.",
                False,
            )
        return f":hourglass_flowing_sand: Cancelling… requested by {by}", False
    when = slack_date(latest.finished_at or latest.updated_at)
    if latest.state == State.CANCELLED:
        return (
            f":octagonal_sign: {dry}*{outcome_words(latest, capitalise=True)}* — requested by {by} "
            f"at {when}",
            False,
        )
    answer = said(latest)
    return (
        f":x: Cancel {outside(latest.state, 20)}: *{outcome_words(latest)}* — requested by {by} "
        f"at {when}." + (f" {answer}" if answer else ""),
        True,
    )


def _stage_line(note: Notification) -> str | None:
    stage = normalise(note.stage)
    if stage is None:
        return None
    line = f"Stage: *{outside(stage.words, 60)}*"
    if note.eta and not stage.final:
        line += f" · ETA {outside(note.eta, 40)}"
    if note.started_at:
        line += f" · started {slack_date(note.started_at)}"
    return line


def build_notification(
    note: Notification, latest: Cancellation | None, *, visible_to: Sequence[str] | None = None
) -> Message:
    """Render a training notification from its stage and latest cancellation (the one renderer).

    `visible_to`: who may cancel (the Cancel button shows to them only); None: to everyone.
    """
    shown_title = outside(note.title, TITLE_CHARS)
    title = f" — {shown_title}" if shown_title else ""
    training = outside(note.training_id, 64)
    lines = [f"*Training `{training}`*{title}"]
    if note.owner_id:
        lines.append(f"Owner: {policy.user(note.owner_id)}")
    blocks: list[Block] = [_section("\n".join(lines))]
    stage_line = _stage_line(note)
    if stage_line:
        blocks.append(_context(stage_line))
    button: ButtonElement | None = (
        None if note.finished else cancel_button(note.training_id, visible_to=visible_to)
    )
    status = "running"
    # A cancellation through the bot shows whatever stage a late webhook reports.
    if latest is not None and (
        latest.state != State.CANCELLED or not latest.dry_run or not note.finished
    ):
        line, retry = _state_line(latest)
        blocks.append(_section(line))
        button = (
            cancel_button(note.training_id, retry=True, visible_to=visible_to)
            if retry and not note.finished
            else None
        )
        if latest.state == State.HELD:
            blocks.append(hold_buttons(latest))
        elif latest.state == State.WITHDRAWN and not note.finished:
            button = cancel_button(note.training_id, visible_to=visible_to)
        # "queued" and "being cancelled" look the same here: the message changes (one chat.update)
        # when the outcome is known, not when the worker picks the row up.
        in_progress = latest.state in QUEUED_STATES and not latest.outcome
        status = "cancelling" if in_progress else outcome_words(latest)
    if note.finished and (latest is None or latest.state not in ACTIVE_STATES):
        ready = note.stage == READY
        text = (
            ":white_check_mark: *Finished*: the model is ready."
            if ready
            else ":x: *The training failed.*"
        )
        blocks.append(_section(text))
        status = "ready" if ready else "failed"
    if button is not None:
        blocks.append(ActionsBlock(block_id=ACTIONS_BLOCK, elements=[button]))
    return _message(f"Training {training}{title}: {status}", blocks)


def build_finished_reply(note: Notification) -> Message:
    """The thread reply when a training finishes on its own."""
    ready = note.stage == READY
    owner = f" {policy.user(note.owner_id)}" if note.owner_id else ""
    training = outside(note.training_id, 64)
    text = (
        f":white_check_mark: Training `{training}` finished: the model is ready.{owner}"
        if ready
        else f":x: Training `{training}` failed.{owner}"
    )
    return _message(text, [_section(text)])


def build_announcement(row: Cancellation) -> Message:
    """The public parent message when a cancellation has no notification to thread under."""
    dry = "(dry run) " if row.dry_run else ""
    text = (
        f"{dry}{who(row.requested_by)} asked to cancel training `{outside(row.training_id, 64)}`."
    )
    return _message(text, [_section(f":hourglass_flowing_sand: {text}")])


def build_retry_notice(row: Cancellation) -> Message:
    """The thread reply saying when a rate-limited cancel is tried again."""
    text = (
        f":hourglass: ModelsLab is rate-limiting this account, so cancelling training "
        f"`{outside(row.training_id, 64)}` is scheduled for {slack_date(row.next_attempt_at)}. "
        f"{said(row)}"
    )
    return {"text": truncate(text.rstrip(), policy.MESSAGE_TEXT)}


def build_outcome(row: Cancellation, *, owner_id: str | None = None) -> Message:
    """The thread reply (and audit post) with who, which training, when, and what ModelsLab said."""
    when = slack_date(row.finished_at or row.updated_at)
    if row.state == State.WITHDRAWN:
        text = (
            f":leftwards_arrow_with_hook: {who(row.requested_by)}'s request to cancel training "
            f"`{outside(row.training_id, 64)}` (via {outside(row.origin, 20)}) was "
            f"{_withdrawn_words(row)} at {when}: nothing was cancelled, ModelsLab was not called."
        )
        return _message(text, [_section(text)])
    # "cancelled" would claim more than ModelsLab confirmed; the headline says what it said.
    verb = "asked to cancel" if row.state == State.CANCELLED else "tried to cancel"
    icon = ":octagonal_sign:" if row.state == State.CANCELLED else ":x:"
    dry = DRY_RUN_MARK if row.dry_run else ""
    answer = said(row)
    text = (
        f"{icon} {dry}{who(row.requested_by)} {verb} training `{outside(row.training_id, 64)}` "
        f"at {when} (via {outside(row.origin, 20)}): *{outcome_words(row)}*."
    )
    if answer:
        text += f" {answer}"
    if row.hold is Hold.APPROVAL and row.decided_by:
        text += f" Approved by {who(row.decided_by)}."
    if owner_id and owner_id != row.requested_by:
        text += f" cc {policy.user(owner_id)}"
    plain = text.replace("*", "")
    return _message(plain, [_section(text)])


def build_history(
    rows: Sequence[Cancellation],
    links: dict[int, str],
    *,
    more: int = 0,
    training_id: str | None = None,
    user_id: str | None = None,
    period: str | None = None,
) -> Message:
    """The newest cancellations (perhaps filtered), one line each, with a link to each thread;
    `more` of them left out are counted, with where to find them all."""
    narrowed = [
        f"training `{outside(training_id, 64)}`" if training_id else "",
        f"requested by {policy.user(user_id)}" if user_id else "",
        f"in the last {outside(period, 8)}" if period else "",
    ]
    scope = ", ".join(n for n in narrowed if n)
    if not rows:
        if scope:
            return _ephemeral(f"No cancellations match: {scope}.")
        return _ephemeral("No cancellations yet in this workspace.")
    lines = []
    for row in rows:
        link = links.get(row.id)
        tail = f" — {policy.link(link, 'thread')}" if link else ""
        dry = " (dry run)" if row.dry_run else ""
        lines.append(
            truncate(
                f"• `{outside(row.training_id, 64)}` — {who(row.requested_by)} — "
                f"{slack_date(row.requested_at)} — via {outside(row.origin, 20)} — "
                f"{outcome_words(row)}{dry}{tail}",
                LINE_CHARS,
            )
        )
    heading = f"*Cancellations: {scope}*\n" if scope else "*Last cancellations*\n"
    footer = ""
    if more > 0:
        footer = (
            f"\n{policy.more(more)}: narrow with `{COMMAND} history {escape('<id>')} @user 7d`, or ask an "
            "operator for `python -m bot audit export`."
        )
    room = policy.MESSAGE_TEXT - policy.units(heading) - policy.units(footer)
    listed = policy.summarise(lines, room, separator="\n")
    return _ephemeral(heading + listed + footer)


def build_cancellable_list(notes: Sequence[Notification]) -> Message:
    """The trainings that can still be cancelled, each with its own button."""
    if not notes:
        return _ephemeral(
            "There is no training with a notification that can still be cancelled. "
            f"Use `{COMMAND} {escape('<training_id>')}` for one started elsewhere."
        )
    blocks: list[Block] = [_section("*Trainings you can cancel*")]
    for note in notes[:LISTED_TRAININGS]:
        shown_title = outside(note.title, LIST_TITLE_CHARS)
        title = f" — {shown_title}" if shown_title else ""
        owner = f" (owner {policy.user(note.owner_id)})" if note.owner_id else ""
        blocks.append(
            _section(
                f"`{outside(note.training_id, 64)}`{title}{owner}",
                accessory=cancel_button(note.training_id),
            )
        )
    if len(notes) > LISTED_TRAININGS:
        blocks.append(
            _context(
                f"{policy.more(len(notes) - LISTED_TRAININGS)}: use "
                f"`{COMMAND} {escape('<training_id>')}` for those."
            )
        )
    return {"response_type": "ephemeral", **_message("Trainings you can cancel", blocks)}
