"""The notification renderer on a real store: one chat.update per change people can see, none in between."""

from __future__ import annotations

import time
from typing import Any

from bot.slack.delivery.renderer import NotificationRenderer
from bot.store import Store
from tests.unit.test_blocks import CHANNEL, TEAM, TRAINING, TS


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
