"""`python -m bot cancel`: cancel a training from the terminal."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import logging
import sys
from typing import TYPE_CHECKING

from bot.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SCHEDULED,
    EXIT_USAGE,
    _sentence,
    _settings,
    open_store,
    resolve_team,
    terminal_runtime,
)
from bot.config import Purpose
from bot.errors import BotError, ConfigError, InvalidTrainingId, MissingKey, StoreUnavailable
from bot.model import Cancellation, Hold, Origin, OutcomeKind, State
from bot.slack.messages.outcomes import headline, modelslab_said

if TYPE_CHECKING:
    from bot.runtime import Runtime

logger = logging.getLogger("bot")

# The client's whole budget plus a margin: the terminal waits for one complete attempt series.
CLI_WAIT_SECONDS = 40.0


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def describe_for_terminal(row: Cancellation) -> str:
    """Return one line saying what became of a cancellation."""
    said = modelslab_said(row)
    line = f"Training {row.training_id}: {headline(row)}"
    if row.state == State.REQUESTED and row.outcome == OutcomeKind.RATE_LIMITED.value:
        line += f"; retry at {_when(row.next_attempt_at)} by a running server (python -m bot serve)"
    if said:
        line += f". {said}"
    return line + "."


def exit_code_for(row: Cancellation) -> int:
    """Map a cancellation to the `cancel` command's exit code (design §3)."""
    if row.outcome == OutcomeKind.PROBABLY_CANCELLED.value:
        return EXIT_FAILED  # not confirmed: the operator should look
    if row.state == State.CANCELLED:
        return EXIT_OK
    if row.state == State.REQUESTED and row.outcome == OutcomeKind.RATE_LIMITED.value:
        return EXIT_SCHEDULED
    return EXIT_FAILED


async def report_from_terminal(runtime: Runtime, row: Cancellation) -> None:
    """Post the outcome in the notification's thread and the audit channel, as any origin is."""
    if not runtime.settings.slack_bot_token:
        return
    try:
        # Bounded: a running server's reporter delivers whatever is left.
        await asyncio.wait_for(runtime.reporter.deliver_now(row.id), timeout=15)
    except asyncio.TimeoutError:
        logger.warning("Slack report not delivered yet; a running server will deliver it")


async def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a training with the stored key and print the outcome in one line."""
    settings = _settings(Purpose.CANCEL, dry_run=args.dry_run)
    try:
        store = await open_store(settings)
    except StoreUnavailable as exc:
        print(f"Cannot cancel: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    runtime = await terminal_runtime(settings, store)
    try:
        workspace_id = await resolve_team(runtime, args.team)
        # The workspace's stored key first; MODELSLAB_API_KEY for the single workspace.
        service = runtime.service
        result = await service.request(
            workspace_id=workspace_id,
            training_id=args.training_id,
            requested_by=f"cli:{getpass.getuser()}",
            origin=Origin.CLI,
        )
        row = result.cancellation
        if not result.created and row.is_final:
            print(
                f"Training {row.training_id} was already cancelled by {row.requested_by} "
                f"at {_when(row.finished_at or row.requested_at)}: {headline(row)}."
            )
            return EXIT_OK
        if not result.created and row.state is State.HELD:
            # Waiting would end in "another instance": say at once what it waits for.
            why = "an approval in Slack" if row.hold is Hold.APPROVAL else "its undo window"
            until = f" until {_when(row.held_until)}" if row.held_until else ""
            print(
                f"Training {row.training_id} was requested by {row.requested_by} at "
                f"{_when(row.requested_at)} and is held for {why}{until}; nothing was sent "
                "from here. Its outcome will be posted in Slack."
            )
            return EXIT_FAILED
        if result.created:
            await service.run_now(row.id)
        settled = await service.wait_settled(row.id, timeout=CLI_WAIT_SECONDS)
        if settled is None or not (settled.is_final or settled.outcome):
            print(
                f"Training {row.training_id} is being cancelled by another instance; "
                "its outcome will be posted in Slack."
            )
            return EXIT_FAILED
        print(describe_for_terminal(settled))
        await report_from_terminal(runtime, settled)
        return exit_code_for(settled)
    except InvalidTrainingId as exc:
        print(f"Not a training id: {exc}.", file=sys.stderr)
        return EXIT_USAGE
    except MissingKey:
        print(
            "Cannot cancel: no ModelsLab API key for this workspace. Set MODELSLAB_API_KEY "
            "or store one with `python -m bot set-key`.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except StoreUnavailable as exc:
        print(f"Cannot cancel: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError:
        raise
    except BotError as exc:
        print(f"Cannot cancel: {_sentence(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await runtime.close()
