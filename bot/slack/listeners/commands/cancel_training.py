"""/cancel-training: the preview card for a typed id, list, history, watch, can-i, who-can, help."""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.context.respond.async_respond import AsyncRespond

from bot.errors import InvalidTrainingId, StoreUnavailable
from bot.ids import validate_training_id
from bot.model import Origin
from bot.service.audit import parse_period
from bot.slack.context import Deps, deps_of, received_at
from bot.slack.listeners.cancel_flow import (
    CLAIM_DEADLINE,
    STORE_DOWN,
    CancelAnswer,
    CancelRequest,
    audit_refusal,
)
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
from bot.slack.messages.safe import build_can_i, build_preview_card, build_who_can

SUBCOMMANDS = ("help", "history", "watch", "cancel", "can-i", "who-can")
HISTORY_LIMIT = 10
# The preview card's status call must leave the ack room within Slack's 3 s.
PREVIEW_STATUS_BUDGET = 1.2


class Verb(str, enum.Enum):
    """What the command text asks for."""

    CANCEL = "cancel"
    LIST = "list"
    HELP = "help"
    HISTORY = "history"
    WATCH = "watch"
    CAN_I = "can-i"
    WHO_CAN = "who-can"
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
        if first == "history":
            # Bad filters are a usage error like any other: answered in the ack, not after it.
            argument = " ".join(rest)
            if parse_history_filters(argument) is None:
                return Parsed(Verb.USAGE)
            return Parsed(Verb.HISTORY, argument)
        if first in ("help", "who-can"):
            return Parsed(Verb(first)) if not rest else Parsed(Verb.USAGE)
        if first == "can-i" and len(rest) <= 1:
            return Parsed(Verb.CAN_I, rest[0] if rest else "")
        if len(rest) != 1:
            return Parsed(Verb.USAGE)
        return Parsed(Verb.CANCEL if first == "cancel" else Verb.WATCH, rest[0])
    if len(words) == 1:
        return Parsed(Verb.CANCEL, words[0])
    return Parsed(Verb.USAGE)


# An escaped mention as Slack sends it in command text: <@U123ABC|name> (or <@U123ABC>).
_MENTION = re.compile(r"<@([UW][A-Z0-9]{2,20})(?:\|[^>]*)?>")


@dataclass(frozen=True)
class HistoryFilter:
    """What `/cancel-training history …` narrows to: a training, a requester, a period."""

    training_id: str | None = None
    user_id: str | None = None
    period: str | None = None  # as typed, e.g. "7d"
    seconds: float | None = None


def parse_history_filters(text: str) -> HistoryFilter | None:
    """`[<training_id>] [@user] [24h|7d|…]` in any order; None when a word is none of those."""
    found: dict[str, object] = {}
    for word in text.split():
        mention = _MENTION.fullmatch(word)
        seconds = parse_period(word)
        if mention is not None:
            key, value = "user_id", mention.group(1)
        elif seconds is not None:
            key, value = "period", word.lower()
            found["seconds"] = seconds
        else:
            try:
                key, value = "training_id", validate_training_id(word)
            except InvalidTrainingId:
                return None
        if key in found:
            return None
        found[key] = value
    return HistoryFilter(**found)  # type: ignore[arg-type]


async def answer_history(deps: Deps, workspace_id: str, text: str) -> dict[str, Any]:
    """The history answer: the newest matching cancellations, bounded, with their threads."""
    filters = parse_history_filters(text)
    if filters is None:
        return build_usage()
    history = await deps.queries.history(
        workspace_id,
        training_id=filters.training_id,
        user_id=filters.user_id,
        period=filters.seconds,
        limit=HISTORY_LIMIT,
    )
    return build_history(
        history.rows,
        report_links(history.rows, history.notifications),
        more=history.total - len(history.rows),
        training_id=filters.training_id,
        user_id=filters.user_id,
        period=filters.period,
    )


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


async def preview_card(deps: Deps, req: CancelRequest) -> CancelAnswer:
    """Validate and authorise a typed id, then answer with the card whose button cancels."""
    try:
        training_id = validate_training_id(req.training_id)
    except InvalidTrainingId as exc:
        return CancelAnswer(build_invalid_id(str(exc)))
    decision = await deps.access.check(req.workspace_id, req.user_id)
    if not decision.allowed:
        deps.metrics.refusals.labels(reason=decision.code).inc()
        return CancelAnswer(
            build_refusal(decision), refused=True, reason=decision.reason, rule=decision.code
        )
    elapsed = time.monotonic() - (req.received_at or time.monotonic())
    within = min(PREVIEW_STATUS_BUDGET, CLAIM_DEADLINE - elapsed - 0.5)
    try:
        preview = await deps.service.preview(req.workspace_id, training_id, within=within)
    except StoreUnavailable:
        return CancelAnswer(build_error(STORE_DOWN))
    return CancelAnswer(build_preview_card(preview, dry_run=deps.service.dry_run))


async def explain(deps: Deps, workspace_id: str, user_id: str, raw_id: str) -> dict[str, Any]:
    """can-i: whether the user may cancel (a given training), and which rule decided it."""
    training_id = None
    if raw_id:
        try:
            training_id = validate_training_id(raw_id)
        except InvalidTrainingId as exc:
            return build_invalid_id(str(exc))
    explanation = await deps.access.explain(workspace_id, user_id)
    two_person = bool(training_id) and await deps.service.two_person_applies(
        workspace_id, str(training_id), user_id
    )
    safety = await deps.workspaces.safety(workspace_id)
    return build_can_i(
        explanation,
        training_id=training_id,
        two_person=two_person,
        undo_seconds=safety.undo_seconds,
    )


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
        answer = await preview_card(deps, req)
        await ack(**answer.message)
        if answer.refused:
            await audit_refusal(deps, req, answer.reason, rule=answer.rule)
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
        if parsed.verb is Verb.CAN_I:
            await respond(**await explain(deps, workspace_id, user_id, parsed.argument))
            return
        if parsed.verb is Verb.WHO_CAN:
            await respond(**build_who_can(await deps.access.allowed_entries(workspace_id)))
            return
        if parsed.verb is Verb.HISTORY:
            await respond(**await answer_history(deps, workspace_id, parsed.argument))
            return
        decision = await deps.access.check(workspace_id, user_id)
        if not decision.allowed:
            await respond(**build_refusal(decision))
            return
        notes = await deps.queries.cancellable(workspace_id, limit=10)
        await respond(**build_cancellable_list(notes))
    except StoreUnavailable:
        await respond(**build_error(STORE_DOWN))
