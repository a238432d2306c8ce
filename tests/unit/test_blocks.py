"""The notification renderer: one chat.update per change people can see, none in between."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from bot.model import Cancellation, Notification
from bot.slack.delivery.renderer import NotificationRenderer
from bot.slack.messages.blocks import build_notification
from bot.store import Store

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


class RecordingClient:
    """Just enough of AsyncWebClient for the renderer: records chat.update calls."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []

    async def chat_update(self, **kwargs: Any) -> dict[str, Any]:
        self.updates.append(kwargs)
        return {"ok": True}


async def test_the_worker_picking_a_row_up_costs_no_chat_update(store: Store) -> None:
    await store.notifications.save(
        workspace_id=TEAM, training_id=TRAINING, channel_id=CHANNEL, message_ts=TS, title="LoRA"
    )
    client = RecordingClient()
    renderer = NotificationRenderer(store=store)
    claim = await store.cancellations.enqueue(
        workspace_id=TEAM, training_id=TRAINING, requested_by="U0BOB0001", origin="button"
    )
    await renderer.render(client, TEAM, TRAINING)
    assert len(client.updates) == 1 and "Cancelling" in str(client.updates[0]["blocks"])

    [row] = await store.cancellations.take("w1", lease_seconds=30, now=time.time())
    assert await store.cancellations.mark_calling(row.id, "w1", lease_seconds=30) is not None
    await renderer.render(client, TEAM, TRAINING)
    assert len(client.updates) == 1  # "calling" looks like "requested": nothing to update

    await store.cancellations.finish(
        claim.cancellation.id, "w1", state="cancelled", outcome="accepted", reason="ok"
    )
    await renderer.render(client, TEAM, TRAINING)
    assert len(client.updates) == 2 and "Cancel accepted" in str(client.updates[1]["blocks"])
    await renderer.render(client, TEAM, TRAINING)
    assert len(client.updates) == 2
