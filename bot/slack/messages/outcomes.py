"""Outcome wording: what became of a cancellation, in words (the service records only values).

`headline` and `modelslab_said` are plain text (the terminal prints them too); `outcome_words`
and `said` are the same words made safe and bounded for mrkdwn.
"""

from __future__ import annotations

from bot.model import Cancellation, Hold, OutcomeKind, State
from bot.service.cancellation import DENIED, EXPIRED, NO_KEY, UNDONE
from bot.slack.messages.text import outside

# How much of ModelsLab's answer (and other outside reasons) a message shows.
REASON_CHARS = 1_000

_HEADLINES = {
    OutcomeKind.ACCEPTED.value: "cancel accepted",
    OutcomeKind.STOPPED.value: "stopped (ModelsLab confirmed)",
    OutcomeKind.PROBABLY_CANCELLED.value: "probably cancelled (not confirmed)",
    OutcomeKind.DRY_RUN.value: "dry run: ModelsLab was not called, nothing was cancelled",
    OutcomeKind.REFUSED.value: "refused by ModelsLab",
    OutcomeKind.NOT_FOUND.value: "not found: ModelsLab has no training with this id",
    OutcomeKind.BAD_KEY.value: "refused: ModelsLab rejected the API key",
    OutcomeKind.UNAVAILABLE.value: "failed: ModelsLab could not be reached",
    OutcomeKind.RATE_LIMITED.value: "rate-limited by ModelsLab; a retry is scheduled",
    NO_KEY: "refused: no ModelsLab API key is set for this workspace",
    UNDONE: "undone: nothing was cancelled",
    DENIED: "denied: nothing was cancelled",
    EXPIRED: "not approved in time: nothing was cancelled",
}


def headline(row: Cancellation) -> str:
    """Return the outcome of a cancellation in a few words."""
    if row.outcome is None:
        if row.state == State.HELD:
            return "waiting for approval" if row.hold is Hold.APPROVAL else "waiting to be undone"
        return "being cancelled" if row.state == State.CALLING else "queued"
    return _HEADLINES.get(row.outcome, row.outcome)


def modelslab_said(row: Cancellation) -> str:
    """Return what ModelsLab answered, quoted, or an empty string."""
    if not row.reason or row.outcome in (
        NO_KEY,
        OutcomeKind.DRY_RUN.value,
        UNDONE,
        DENIED,
        EXPIRED,
    ):
        return ""
    return f'ModelsLab said: "{row.reason}"'


def said(row: Cancellation) -> str:
    """What ModelsLab answered (outside text), escaped and bounded; or an empty string."""
    return outside(modelslab_said(row), REASON_CHARS)


def outcome_words(row: Cancellation, *, capitalise: bool = False) -> str:
    """The outcome in a few words, ready for mrkdwn."""
    words = headline(row)
    return outside(words.capitalize() if capitalise else words, 200)
