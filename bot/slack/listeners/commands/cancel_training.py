"""/cancel-training: cancel, list, history, help."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond

from bot.errors import InvalidTrainingId, StoreUnavailable
from bot.ids import validate_training_id
from bot.model import Origin
from bot.slack.context import Deps, deps_of, received_at
from bot.slack.listeners.cancel_flow import STORE_DOWN, CancelRequest, audit_refusal, request_cancel
from bot.slack.messages.blocks import (
    build_cancellable_list,
    build_error,
    build_history,
    build_invalid_id,
    build_refusal,
    build_usage,
    build_watching,
    notification_link,
    report_links,
)

SUBCOMMANDS = ("help", "history", "watch", "cancel")
# Words design §3 reserves for subcommands still to come: never read as a training id to cancel.
RESERVED = ("can-i", "who-can")


class Verb(str, enum.Enum):
    """What the command text asks for."""

    CANCEL = "cancel"
    LIST = "list"
    HELP = "help"
    HISTORY = "history"
    WATCH = "watch"
    USAGE = "usage"


@dataclass(frozen=True)
class Parsed:
    """The command text, understood."""

    verb: Verb
    argument: str = ""


def parse_command_text(text: str) -> Parsed:
    """Split the text into a subcommand and its argument (design §3)."""
    words = text.split()
    if not words:
        return Parsed(Verb.LIST)
    first = words[0].lower()
    if first in SUBCOMMANDS:
        rest = words[1:]
        if first in ("help", "history"):
            return Parsed(Verb(first)) if not rest else Parsed(Verb.USAGE)
        if len(rest) != 1:
            return Parsed(Verb.USAGE)
        return Parsed(Verb.CANCEL if first == "cancel" else Verb.WATCH, rest[0])
    if first in RESERVED:
        return Parsed(Verb.USAGE)
    if len(words) == 1:
        return Parsed(Verb.CANCEL, words[0])
    return Parsed(Verb.USAGE)


async def start_watching(
    deps: Deps, workspace_id: str, user_id: str, raw_id: str, channel_id: str | None
) -> dict[str, Any]:
    """Post a live message for a training started elsewhere and poll its status."""
    try:
        training_id = validate_training_id(raw_id)
    except InvalidTrainingId as exc:
        return build_invalid_id(str(exc))
    decision = await deps.access.check(workspace_id, user_id)
    if not decision.allowed:
        deps.metrics.refusals.labels(reason=decision.code).inc()
        return build_refusal(decision)
    if not channel_id:
        return build_error("Run this in the channel where the live message should appear.")
    existing = await deps.queries.watch(workspace_id, training_id, channel_id=channel_id)
    deps.notifier.wake()
    link = notification_link(existing) if existing else None
    return build_watching(training_id, existing_link=link)


async def handle_cancel_training(
    ack: AsyncAck, command: dict[str, Any], context: AsyncBoltContext, respond: AsyncRespond
) -> None:
    """Route /cancel-training by its text."""
    deps = deps_of(context)
    parsed = parse_command_text(str(command.get("text") or ""))
    workspace_id, user_id = str(context.team_id), str(context.user_id)
    if parsed.verb is Verb.CANCEL:
        req = CancelRequest(
            workspace_id=workspace_id,
            user_id=user_id,
            training_id=parsed.argument,
            origin=Origin.COMMAND,
            channel_id=context.channel_id,
            response_url=command.get("response_url"),
            received_at=received_at(context),
        )
        answer = await request_cancel(deps, req)
        await ack(**answer.message)
        if answer.refused:
            await audit_refusal(deps, req, answer.reason)
        return
    if parsed.verb in (Verb.HELP, Verb.USAGE):
        await ack(**build_usage())
        return
    await ack()
    try:
        if parsed.verb is Verb.WATCH:
            await respond(
                **await start_watching(
                    deps, workspace_id, user_id, parsed.argument, context.channel_id
                )
            )
            return
        if parsed.verb is Verb.HISTORY:
            history = await deps.queries.history(workspace_id, limit=10)
            links = report_links(history.rows, history.notifications)
            await respond(**build_history(history.rows, links))
            return
        decision = await deps.access.check(workspace_id, user_id)
        if not decision.allowed:
            await respond(**build_refusal(decision))
            return
        notes = await deps.queries.cancellable(workspace_id, limit=10)
        await respond(**build_cancellable_list(notes))
    except StoreUnavailable:
        await respond(**build_error(STORE_DOWN))
