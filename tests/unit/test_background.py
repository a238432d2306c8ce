"""bot.background.Background: the work listeners go on with after their ack, drained at shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from bot.background import Background


async def test_spawned_tasks_are_tracked_until_they_end() -> None:
    background = Background()
    gate = asyncio.Event()
    done: list[str] = []

    async def reply(name: str) -> None:
        await gate.wait()
        done.append(name)

    first = background.spawn(reply("a"), name="reply a")
    second = background.spawn(reply("b"), name="reply b")
    assert len(background) == 2
    assert first.get_name() == "reply a"
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    await asyncio.sleep(0)  # the done-callbacks run on the next turn
    assert sorted(done) == ["a", "b"]
    assert len(background) == 0


async def test_a_failing_task_is_logged_and_not_raised_into_the_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.background")
    loop = asyncio.get_running_loop()
    unhandled: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    background = Background()

    async def audit_post() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("chat.postMessage exploded")

    try:
        task = background.spawn(audit_post(), name="audit post")  # returns; does not raise
        await asyncio.wait({task}, timeout=5)
        await asyncio.sleep(0)
        assert len(background) == 0
        [record] = [r for r in caplog.records if r.name == "bot.background"]
        assert record.levelno == logging.ERROR and "audit post failed" in record.getMessage()
        assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
        # The error was handled: no "Task exception was never retrieved" when the task goes away.
        del task
        gc.collect()
        assert unhandled == []
    finally:
        loop.set_exception_handler(None)


async def test_a_cancelled_task_is_not_reported_as_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot.background")
    background = Background()
    task = background.spawn(asyncio.Event().wait(), name="stuck")
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    await asyncio.sleep(0)
    assert len(background) == 0
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_drain_with_nothing_running_returns_at_once() -> None:
    await asyncio.wait_for(Background().drain(grace=30), 1)


async def test_drain_waits_for_quick_tasks() -> None:
    background = Background()
    gate = asyncio.Event()
    finished: list[str] = []

    async def reply() -> None:
        await gate.wait()
        finished.append("reply")

    background.spawn(reply(), name="reply")
    asyncio.get_running_loop().call_soon(gate.set)  # finishes just after shutdown starts
    await asyncio.wait_for(background.drain(grace=30), 5)
    assert finished == ["reply"]
    assert len(background) == 0


async def test_drain_cancels_what_outlives_its_grace(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bot.background")
    background = Background()
    gate = asyncio.Event()
    events: list[str] = []

    async def quick() -> None:
        await gate.wait()
        events.append("quick finished")

    async def slow() -> None:
        try:
            await asyncio.Event().wait()  # e.g. a Slack call that hangs
        except asyncio.CancelledError:
            events.append("slow cancelled")
            raise
        finally:
            events.append("slow cleaned up")

    background.spawn(quick(), name="quick")
    slow_task = background.spawn(slow(), name="slow")
    asyncio.get_running_loop().call_soon(gate.set)
    await asyncio.wait_for(background.drain(grace=0.05), 5)
    # Drain returns after the cancelled task has run its clean-up, not before.
    assert events == ["quick finished", "slow cancelled", "slow cleaned up"]
    assert slow_task.cancelled()
    assert len(background) == 0
    assert any(
        "1 post-ack task(s) cancelled" in r.getMessage()
        for r in caplog.records
        if r.name == "bot.background"
    )
