"""The notification builder: what people see changes only when the cancellation visibly does."""

from __future__ import annotations

import dataclasses

from bot.model import Cancellation, Notification
from bot.slack.messages.blocks import build_notification

TEAM, TRAINING, CHANNEL, TS = "T1", "F5jvdzGnYi", "C0TRAIN01", "1764201600.000100"


def note() -> Notification:
    return Notification(TEAM, TRAINING, CHANNEL, TS, "U0OWNER01", "LoRA run", "training", 1.0e9)


def requested() -> Cancellation:
    now = 1.764e9
    return Cancellation(
        id=7,
        workspace_id=TEAM,
        training_id=TRAINING,
        requested_by="U0BOB0001",
        origin="button",
        state="requested",
        outcome=None,
        reason=None,
        dry_run=False,
        requested_at=now,
        updated_at=now,
        finished_at=None,
        attempts=0,
        next_attempt_at=now,
        lease_owner=None,
        lease_expires_at=None,
        channel_id=CHANNEL,
        report_state="pending",
    )


def test_queued_and_being_cancelled_render_the_same_message() -> None:
    queued = requested()
    # What mark_calling changes when the worker picks the row up.
    calling = dataclasses.replace(
        queued,
        state="calling",
        attempts=1,
        updated_at=queued.updated_at + 0.5,
        lease_owner="host:1:abcd",
        lease_expires_at=queued.updated_at + 45,
    )
    shown = build_notification(note(), queued)
    assert build_notification(note(), calling) == shown
    assert "Cancelling" in str(shown["blocks"]) and "cancelling" in shown["text"]
    assert build_notification(note(), None) != shown  # the claim itself is a visible change


def test_the_outcome_and_a_rate_limit_are_visible_changes() -> None:
    queued = requested()
    shown = build_notification(note(), queued)
    rate_limited = dataclasses.replace(
        queued, outcome="rate_limited", reason="slow down", next_attempt_at=queued.updated_at + 60
    )
    cancelled = dataclasses.replace(
        queued,
        state="cancelled",
        outcome="accepted",
        reason="Training cancelled successfully",
        finished_at=queued.updated_at + 1,
    )
    assert build_notification(note(), rate_limited) != shown
    assert build_notification(note(), cancelled) != shown
    assert "Cancel accepted" in str(build_notification(note(), cancelled)["blocks"])
