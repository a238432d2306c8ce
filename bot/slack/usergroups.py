"""User-group membership from Slack (usergroups.users.list), as the access policy needs it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.errors import GroupLookupFailed, SlackError
from bot.slack.errors import slack_call

ClientLookup = Callable[[str], Awaitable[Any]]


class SlackGroupMembers:
    """Reads one user group's members; every Slack failure becomes GroupLookupFailed."""

    def __init__(self, *, clients: ClientLookup) -> None:
        self._clients = clients

    async def __call__(self, workspace_id: str, group_id: str) -> frozenset[str]:
        """Return the group's members; raise GroupLookupFailed with a reason a user can act on."""
        client = await self._clients(workspace_id)
        if client is None:
            raise GroupLookupFailed(f"the bot is not installed where user group {group_id} is")
        try:
            with slack_call("usergroups.users.list"):
                response = await client.usergroups_users_list(usergroup=group_id)
        except SlackError as exc:
            if exc.status is None:
                raise GroupLookupFailed(
                    f"Slack could not be reached to list user group {group_id}"
                ) from exc
            if exc.error == "plan_upgrade_required":
                raise GroupLookupFailed(
                    f"user group {group_id} cannot be checked: Slack user groups need a paid plan; "
                    "ask an admin to list people individually"
                ) from exc
            raise GroupLookupFailed(
                f"Slack refused to list user group {group_id} ({exc.error or None})"
            ) from exc
        return frozenset(response.get("users") or ())
