"""Allow-listed user groups: membership read from Slack at the edge, refused clearly when it can't be.

Against the strict fake Slack over loopback, with the same pre-ack client policy the bot uses.
"""

from __future__ import annotations

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.service.access import AccessPolicy, GroupMembers, static_entries
from bot.slack.usergroups import SlackGroupMembers
from tests.fakes.slack import FakeSlack, hang, server_error

TEAM = "T0TEAM001"
GROUP = "S0MLTEAM1"
ALICE, CAROL = "U0ALICE01", "U0CAROL01"


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(
        token=slack.bot_token, base_url=slack.base_url, timeout=2, retry_handlers=[]
    )


def policy(client: AsyncWebClient, *, timeout: float = 1.5) -> AccessPolicy:
    async def clients(team_id: str) -> AsyncWebClient | None:
        return client if team_id == TEAM else None

    groups = GroupMembers(lookup=SlackGroupMembers(clients=clients))
    return AccessPolicy(entries=static_entries(TEAM, [GROUP]), groups=groups, timeout=timeout)


async def test_a_member_of_a_listed_group_may_cancel_and_others_may_not(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.usergroups = {GROUP: [ALICE]}
    access = policy(client)
    assert (await access.check(TEAM, ALICE)).allowed
    refused = await access.check(TEAM, CAROL)
    assert not refused.allowed and refused.code == "not_listed"
    # Cached: the second check asked Slack nothing new.
    assert len(slack.calls_to("usergroups.users.list")) == 1


async def test_a_free_plan_is_refused_with_what_to_do(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.usergroups = {GROUP: [ALICE]}
    slack.paid_plan = False
    decision = await policy(client).check(TEAM, ALICE)
    assert not decision.allowed and decision.code == "group_lookup"
    assert "paid plan" in decision.reason and "list people individually" in decision.reason


async def test_slack_failing_or_hanging_refuses_in_time(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    slack.usergroups = {GROUP: [ALICE]}
    slack.fail("usergroups.users.list", server_error(503))
    failed = await policy(client).check(TEAM, ALICE)
    assert not failed.allowed and f"user group {GROUP}" in failed.reason
    slack.fail("usergroups.users.list", hang())
    slow = await policy(client, timeout=0.2).check(TEAM, ALICE)
    assert not slow.allowed and "in time" in slow.reason
