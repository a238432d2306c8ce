"""Block Kit builders: pure functions from stored state to message payloads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
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

from bot.access import Decision
from bot.cancellation import headline, modelslab_said
from bot.model import ACTIVE_STATES, QUEUED_STATES, Cancellation, Notification, OutcomeKind, State
from bot.stages import READY, normalise

CANCEL_ACTION = "cancel_training"
RETRY_ACTION = "retry_cancel"
ACTIONS_BLOCK = "train_actions"
COMMAND = "/cancel-training"
DRY_RUN_MARK = ":test_tube: *Dry run* — nothing was cancelled. "

Message = dict[str, Any]


def slack_date(epoch: float) -> str:
    """Return a date token every reader sees in their own time zone."""
    fallback = dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time}}|{fallback}>"


def who(requested_by: str) -> str:
    """Return a mention for a Slack user, or the terminal user's name."""
    if requested_by.startswith("cli:"):
        return f"`{requested_by[4:]}` (terminal)"
    return f"<@{requested_by}>"


def thread_link(channel_id: str, ts: str) -> str:
    """Return a link to a message (Slack redirects it to the right workspace)."""
    return f"https://slack.com/archives/{channel_id}/p{ts.replace('.', '')}"


def _message(text: str, blocks: Sequence[Block], **extra: Any) -> Message:
    return {"text": text, "blocks": [b.to_dict() for b in blocks], **extra}


def _ephemeral(text: str) -> Message:
    return {"response_type": "ephemeral", "text": text}


def build_usage() -> Message:
    """The help text for /cancel-training."""
    text = (
        f"*{COMMAND} <training_id>* — cancel a ModelsLab training (ids look like `F5jvdzGnYi` or a UUID)\n"
        f"*{COMMAND}* — list the trainings you can still cancel, each with a button\n"
        f"*{COMMAND} history* — the last 10 cancellations in this workspace\n"
        f"*{COMMAND} watch <training_id>* — post a live status message for a training started elsewhere\n"
        f"*{COMMAND} cancel <training_id>* — cancel an id that happens to be a subcommand word\n"
        f"*{COMMAND} help* — this message"
    )
    return _ephemeral(text)


def build_invalid_id(reason: str) -> Message:
    """Explain why a training id was not accepted."""
    return _ephemeral(
        f":warning: That is not a training id: {reason}. Ids look like `F5jvdzGnYi` or a UUID. "
        f"Try `{COMMAND} help`."
    )


def build_watching(training_id: str, *, existing_link: str | None = None) -> Message:
    """Confirm that a training is being watched."""
    if existing_link:
        return _ephemeral(
            f":eyes: Watching training `{training_id}`: its <{existing_link}|live message> is "
            "updated until the training finishes."
        )
    return _ephemeral(
        f":eyes: Watching training `{training_id}`: a live message with its stage and a Cancel "
        "button is posted in this channel and updated until the training finishes."
    )


def build_refusal(decision: Decision) -> Message:
    """Tell a user privately why they may not cancel."""
    return _ephemeral(f":no_entry: {decision.reason}")


def build_error(text: str) -> Message:
    """A short ephemeral error for the user."""
    return _ephemeral(f":warning: {text}")


def build_request_ack(
    row: Cancellation, *, created: bool, notification: Notification | None
) -> Message:
    """What the requester sees right away: cancelling, or who got there first."""
    training = f"`{row.training_id}`"
    if created:
        where = (
            f" The outcome will be posted in <{thread_link(notification.channel_id, notification.message_ts)}|the notification's thread>."
            if notification
            else " The outcome will be posted in a thread in this channel."
        )
        dry = "(dry run) " if row.dry_run else ""
        return _ephemeral(f":hourglass_flowing_sand: {dry}Cancelling training {training}…{where}")
    if row.state == State.CANCELLED:
        return _ephemeral(
            f"Training {training} was already cancelled by {who(row.requested_by)} at "
            f"{slack_date(row.finished_at or row.requested_at)} ({headline(row)})."
        )
    return _ephemeral(
        f"Training {training} is already being cancelled — requested by {who(row.requested_by)} at "
        f"{slack_date(row.requested_at)}."
    )


def _cancel_button(training_id: str, *, retry: bool = False) -> ButtonElement:
    return ButtonElement(
        text="Retry cancel" if retry else "Cancel training",
        action_id=RETRY_ACTION if retry else CANCEL_ACTION,
        value=training_id,
        style="danger",
        confirm=ConfirmObject(
            title="Cancel this training?",
            text=MarkdownTextObject(
                text=f"Training `{training_id}` will be cancelled on ModelsLab. "
                "A cancelled run cannot be resumed; it has to be started again."
            ),
            confirm="Cancel training",
            deny="Keep it running",
            style="danger",
        ),
    )


def _state_line(latest: Cancellation) -> tuple[str, bool]:
    """Return the notification's status line and whether a Retry button belongs under it."""
    dry = DRY_RUN_MARK if latest.dry_run else ""
    by = who(latest.requested_by)
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
            f":octagonal_sign: {dry}*{headline(latest).capitalize()}* — requested by {by} at {when}",
            False,
        )
    said = modelslab_said(latest)
    return (
        f":x: Cancel {latest.state}: *{headline(latest)}* — requested by {by} at {when}."
        + (f" {said}" if said else ""),
        True,
    )


def _stage_line(note: Notification) -> str | None:
    stage = normalise(note.stage)
    if stage is None:
        return None
    line = f"Stage: *{stage.words}*"
    if note.eta and not stage.final:
        line += f" · ETA {note.eta}"
    if note.started_at:
        line += f" · started {slack_date(note.started_at)}"
    return line


def build_notification(note: Notification, latest: Cancellation | None) -> Message:
    """Render a training notification from its stage and latest cancellation (the one renderer)."""
    title = f" — {note.title}" if note.title else ""
    lines = [f"*Training `{note.training_id}`*{title}"]
    if note.owner_id:
        lines.append(f"Owner: <@{note.owner_id}>")
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text="\n".join(lines)))]
    stage_line = _stage_line(note)
    if stage_line:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=stage_line)]))
    button: ButtonElement | None = None if note.finished else _cancel_button(note.training_id)
    status = "running"
    # A cancellation through the bot shows whatever stage a late webhook reports.
    if latest is not None and (
        latest.state != State.CANCELLED or not latest.dry_run or not note.finished
    ):
        line, retry = _state_line(latest)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=line)))
        button = (
            _cancel_button(note.training_id, retry=True) if retry and not note.finished else None
        )
        # "queued" and "being cancelled" look the same here: the message changes (one chat.update)
        # when the outcome is known, not when the worker picks the row up.
        in_progress = latest.state in QUEUED_STATES and not latest.outcome
        status = "cancelling" if in_progress else headline(latest)
    if note.finished and (latest is None or latest.state not in ACTIVE_STATES):
        ready = note.stage == READY
        text = (
            ":white_check_mark: *Finished*: the model is ready."
            if ready
            else ":x: *The training failed.*"
        )
        blocks.append(SectionBlock(text=MarkdownTextObject(text=text)))
        status = "ready" if ready else "failed"
    if button is not None:
        blocks.append(ActionsBlock(block_id=ACTIONS_BLOCK, elements=[button]))
    return _message(f"Training {note.training_id}{title}: {status}", blocks)


def build_finished_reply(note: Notification) -> Message:
    """The thread reply when a training finishes on its own."""
    ready = note.stage == READY
    owner = f" <@{note.owner_id}>" if note.owner_id else ""
    text = (
        f":white_check_mark: Training `{note.training_id}` finished: the model is ready.{owner}"
        if ready
        else f":x: Training `{note.training_id}` failed.{owner}"
    )
    return _message(text, [SectionBlock(text=MarkdownTextObject(text=text))])


def build_announcement(row: Cancellation) -> Message:
    """The public parent message when a cancellation has no notification to thread under."""
    dry = "(dry run) " if row.dry_run else ""
    text = f"{dry}{who(row.requested_by)} asked to cancel training `{row.training_id}`."
    return _message(
        text, [SectionBlock(text=MarkdownTextObject(text=f":hourglass_flowing_sand: {text}"))]
    )


def build_outcome(row: Cancellation, *, owner_id: str | None = None) -> Message:
    """The thread reply (and audit post) with who, which training, when, and what ModelsLab said."""
    when = slack_date(row.finished_at or row.updated_at)
    # "cancelled" would claim more than ModelsLab confirmed; the headline says what it said.
    verb = "asked to cancel" if row.state == State.CANCELLED else "tried to cancel"
    icon = ":octagonal_sign:" if row.state == State.CANCELLED else ":x:"
    dry = DRY_RUN_MARK if row.dry_run else ""
    said = modelslab_said(row)
    text = (
        f"{icon} {dry}{who(row.requested_by)} {verb} training `{row.training_id}` at {when} "
        f"(via {row.origin}): *{headline(row)}*."
    )
    if said:
        text += f" {said}"
    if owner_id and owner_id != row.requested_by:
        text += f" cc <@{owner_id}>"
    plain = text.replace("*", "")
    return _message(plain, [SectionBlock(text=MarkdownTextObject(text=text))])


def build_history(rows: Sequence[Cancellation], links: dict[int, str]) -> Message:
    """The last cancellations, one line each, with a link to each thread."""
    if not rows:
        return _ephemeral("No cancellations yet in this workspace.")
    lines = []
    for row in rows:
        link = links.get(row.id)
        tail = f" — <{link}|thread>" if link else ""
        dry = " (dry run)" if row.dry_run else ""
        lines.append(
            f"• `{row.training_id}` — {who(row.requested_by)} — {slack_date(row.requested_at)} — "
            f"via {row.origin} — {headline(row)}{dry}{tail}"
        )
    return _ephemeral("*Last cancellations*\n" + "\n".join(lines))


def build_cancellable_list(notes: Sequence[Notification]) -> Message:
    """The trainings that can still be cancelled, each with its own button."""
    if not notes:
        return _ephemeral(
            "There is no training with a notification that can still be cancelled. "
            f"Use `{COMMAND} <training_id>` for one started elsewhere."
        )
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text="*Trainings you can cancel*"))]
    for note in notes:
        title = f" — {note.title}" if note.title else ""
        owner = f" (owner <@{note.owner_id}>)" if note.owner_id else ""
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(text=f"`{note.training_id}`{title}{owner}"),
                accessory=_cancel_button(note.training_id),
            )
        )
    return {"response_type": "ephemeral", **_message("Trainings you can cancel", blocks)}
