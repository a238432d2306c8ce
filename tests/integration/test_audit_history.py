"""`/cancel-training history` filters (issue 15): a training id, an @user as Slack escapes it,
a period; the last 10 by default; bounded, with "…and N more" and where to find the rest."""

from __future__ import annotations

import time

import pytest

from bot.model import Origin
from bot.slack.listeners.commands.cancel_training import (
    HistoryFilter,
    Parsed,
    Verb,
    parse_command_text,
    parse_history_filters,
)
from tests.harness import ALICE, BOB, CAROL, Bot, wait_until

DAY = 86400.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", HistoryFilter()),
        ("F5jvdzGnYi", HistoryFilter(training_id="F5jvdzGnYi")),
        (f"<@{BOB}|bob>", HistoryFilter(user_id=BOB)),
        (f"<@{BOB}>", HistoryFilter(user_id=BOB)),
        ("7d", HistoryFilter(period="7d", seconds=7 * DAY)),
        (
            f"24H <@{ALICE}|alice> run-1",
            HistoryFilter(training_id="run-1", user_id=ALICE, period="24h", seconds=DAY),
        ),
    ],
)
def test_history_filters_parse_in_any_order(text: str, expected: HistoryFilter) -> None:
    assert parse_history_filters(text) == expected


@pytest.mark.parametrize("text", ["a b", "7d 24h", "../etc", "<@nope>", "<!channel>", "x" * 65])
def test_anything_else_is_not_a_history_filter(text: str) -> None:
    assert parse_history_filters(text) is None


def test_history_takes_its_filters_as_the_argument() -> None:
    assert parse_command_text("history <@U0BOB0001|bob> 7d") == Parsed(
        Verb.HISTORY, "<@U0BOB0001|bob> 7d"
    )


async def seed(bot: Bot) -> None:
    """Cancellations by Alice and Bob, some old, in the bot's store."""
    store, team, now = bot.runtime.store, bot.slack.team_id, time.time()
    plan = [
        ("recent-a1", ALICE, now - 60),
        ("recent-b1", BOB, now - 3600),
        ("old-b2", BOB, now - 10 * DAY),
        ("old-a2", ALICE, now - 20 * DAY),
    ]
    for training_id, user, at in plan:
        await store.cancellations.enqueue(
            workspace_id=team,
            training_id=training_id,
            requested_by=user,
            origin=Origin.COMMAND.value,
            now=at,
            # Leased far ahead: the running worker leaves these rows alone.
            lease_owner="test",
            lease_seconds=10 * 365 * DAY,
        )


async def history(bot: Bot, text: str) -> str:
    """Send the command; return the answer it posted to its response_url."""
    before = len(bot.slack.response_posts.get("cmd", []))
    assert await bot.command(text) == {}
    posts = await bot.slack.wait_for_response("cmd", count=before + 1)
    assert len(posts) == before + 1 and posts[-1]["response_type"] == "ephemeral"
    return str(posts[-1]["text"])


async def test_history_by_person_period_and_id(bot: Bot) -> None:
    await seed(bot)
    by_bob = await history(bot, f"history <@{BOB}|bob>")
    assert "recent-b1" in by_bob and "old-b2" in by_bob
    assert "recent-a1" not in by_bob and "old-a2" not in by_bob
    assert f"requested by <@{BOB}>" in by_bob

    week = await history(bot, "history 7d")
    assert "recent-a1" in week and "recent-b1" in week and "old" not in week

    both = await history(bot, f"history 7d <@{BOB}|bob>")
    assert "recent-b1" in both and "recent-a1" not in both and "old-b2" not in both

    one = await history(bot, "history old-a2")
    assert "old-a2" in one and "recent" not in one

    none = await history(bot, f"history <@{CAROL}|carol>")
    assert "No cancellations match" in none

    # Filters that are not filters get the usage (filters explained) in the ack itself.
    junk = await bot.command("history two ids")
    assert "/cancel-training history" in str(junk.get("text")), junk


async def test_history_is_the_last_10_and_says_how_many_more(bot: Bot) -> None:
    store, team, now = bot.runtime.store, bot.slack.team_id, time.time()
    for i in range(15):
        await store.cancellations.enqueue(
            workspace_id=team,
            training_id=f"run-{i:02d}",
            requested_by=ALICE,
            origin=Origin.COMMAND.value,
            now=now - 1000 + i,
            lease_owner="test",
            lease_seconds=10 * 365 * DAY,
        )
    text = await history(bot, "history")
    listed = [f"run-{i:02d}" for i in range(15) if f"run-{i:02d}" in text]
    assert listed == [f"run-{i:02d}" for i in range(5, 15)]  # the newest 10
    assert "…and 5 more" in text and "python -m bot audit export" in text


async def test_a_refused_request_is_in_the_audit_log_with_its_rule(bot: Bot) -> None:
    ack = await bot.command("F5jvdzGnYi", user_id=CAROL, user_name="carol")
    assert "allow-list" in ack["text"]

    store, team = bot.runtime.store, bot.slack.team_id

    async def recorded() -> bool:
        return await store.audit.head(team) is not None

    await wait_until(recorded, timeout=5, what="the refusal's audit record")
    found = [r async for r in store.audit.records(workspace_id=team)]
    [record] = found
    assert (record.action, record.actor, record.training_id, record.origin) == (
        "refusal",
        CAROL,
        "F5jvdzGnYi",
        "command",
    )
    assert record.detail.startswith("not_listed: ")
