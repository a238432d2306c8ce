"""Listeners answer Slack at their ack and go on in the background (bot.listeners.runner).

Through the real bot over signed HTTP: the store and access checks are held or made to fail with
monkeypatch, so what happens before and after the ack is decided by the test, not by timing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bot.slack.listeners.runner import SORRY, PooledRespond
from tests.fakes.slack_requests import slash_command_body
from tests.harness import BOB, TRAINING, Bot

FAILURE_START = ":warning: Something went wrong"


async def test_the_ack_is_answered_before_the_work_after_it_is_done(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = bot.runtime.store
    real = store.cancellations.search
    reading = asyncio.Event()
    release = asyncio.Event()

    async def slow_history(*args: Any, **kwargs: Any) -> Any:
        reading.set()
        await release.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(store.cancellations, "search", slow_history)
    # /cancel-training history acks at once, then reads the store and respond()s.
    ack = await asyncio.wait_for(bot.command("history"), 5)
    assert ack == {}
    # Slack has its (empty) answer while the listener is still working after its ack.
    await asyncio.wait_for(reading.wait(), 5)
    assert len(bot.runtime.deps.background) == 1
    assert bot.slack.response_posts.get("cmd", []) == []
    release.set()
    [posted] = await bot.slack.wait_for_response("cmd")
    assert posted["text"] == "No cancellations yet in this workspace."


async def test_an_error_after_the_ack_is_logged_and_the_user_is_told(
    bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.slack.listeners.runner")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("history query blew up")

    monkeypatch.setattr(bot.runtime.store.cancellations, "search", broken)
    assert await bot.command("history") == {}
    [posted] = await bot.slack.wait_for_response("cmd")
    assert posted["text"] == SORRY and posted["text"].startswith(FAILURE_START)
    assert posted["response_type"] == "ephemeral"
    assert posted.get("replace_original") is False
    [record] = [r for r in caplog.records if r.name == "bot.slack.listeners.runner"]
    assert "failed after its ack" in record.getMessage()
    assert record.exc_info is not None and "history query blew up" in str(record.exc_info[1])
    # The bot keeps serving: the next command is answered normally.
    monkeypatch.undo()
    assert "/cancel-training history" in (await bot.command("help"))["text"]


async def test_an_error_before_the_ack_still_answers_200_and_tells_the_user(
    bot: Bot, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.slack.app")

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("allow-list lookup blew up")

    # The cancel path checks access before it acks.
    monkeypatch.setattr(bot.runtime.deps.access, "check", broken)
    body = slash_command_body(text=TRAINING, response_url=bot.slack.response_url("cmd"))
    status, text = await bot.post(body, "application/x-www-form-urlencoded")
    assert (status, text) == (200, "")
    [posted] = await bot.slack.wait_for_response("cmd")
    assert posted["text"] == SORRY and posted["response_type"] == "ephemeral"
    assert any(
        r.exc_info is not None and "allow-list lookup blew up" in str(r.exc_info[1])
        for r in caplog.records
        if r.name == "bot.slack.app"
    )
    assert bot.modelslab.calls == []
    assert await bot.runtime.store.cancellations.latest(bot.slack.team_id, TRAINING) is None


async def test_a_click_is_answered_before_its_private_reply_is_posted(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A button in the command's private list: the claim is made before the ack, the private
    # reply ("Cancelling training …") is posted to the response_url after it.
    respond_started = asyncio.Event()
    release = asyncio.Event()
    real_call = PooledRespond.__call__

    async def held_respond(self: PooledRespond, *args: Any, **kwargs: Any) -> Any:
        respond_started.set()
        await release.wait()
        return await real_call(self, *args, **kwargs)

    monkeypatch.setattr(PooledRespond, "__call__", held_respond)
    assert await asyncio.wait_for(bot.click(ephemeral=True), 5) == 200
    # The HTTP answer is back while the reply is still being posted.
    await asyncio.wait_for(respond_started.wait(), 5)
    assert bot.slack.response_posts.get(f"click-{BOB}", []) == []
    assert (await bot.runtime.store.cancellations.latest(bot.slack.team_id, TRAINING)) is not None
    release.set()
    [posted] = await bot.slack.wait_for_response(f"click-{BOB}")
    assert TRAINING in posted["text"] and not posted["text"].startswith(FAILURE_START)
    await bot.modelslab.wait_for_calls(1)
