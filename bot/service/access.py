"""Who may cancel: one policy for every path (command, button, Retry, the list)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.errors import GroupLookupFailed

logger = logging.getLogger(__name__)

# None: this deployment does not serve that workspace.
EntriesLookup = Callable[[str], Awaitable[Sequence[str] | None]]
# (workspace_id, group_id) -> the group's members; raises GroupLookupFailed (bot.slack.usergroups).
MembersLookup = Callable[[str, str], Awaitable[frozenset[str]]]

NOT_LISTED = "You are not on this workspace's cancel allow-list; ask an admin to add you."
OTHER_WORKSPACE = "This bot is not set up for your workspace, so it cannot cancel anything for you."
EMPTY_LIST = (
    "Nobody may cancel yet: this workspace's cancel allow-list is empty. "
    "Ask an admin to add people or user groups."
)


@dataclass(frozen=True)
class Decision:
    """An authorisation answer with the reason a refused user is shown."""

    allowed: bool
    reason: str = ""
    code: str = "allowed"  # a bounded label for metrics


@dataclass(frozen=True)
class Explanation:
    """Which rule decided whether a user may cancel (can-i)."""

    allowed: bool
    rule: str  # listed | group | not_listed | group_lookup | empty_list | other_workspace
    group_id: str | None = None
    detail: str = ""  # the refusal's words, or what went wrong looking a group up


class GroupDirectory(Protocol):
    """Where the policy learns a user group's members."""

    async def members(self, workspace_id: str, group_id: str, *, timeout: float) -> frozenset[str]:
        """Return the group's members within `timeout`; raise GroupLookupFailed."""

    def cached(self, workspace_id: str, group_id: str) -> frozenset[str] | None:
        """The group's members if known now, without waiting; None if not."""


class GroupMembers:
    """Caches user-group membership; refreshes it in the background, never on the ack path twice."""

    def __init__(
        self, *, lookup: MembersLookup, ttl: float = 300.0, max_stale: float = 3600.0
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._max_stale = max_stale
        self._cache: dict[tuple[str, str], tuple[frozenset[str], float]] = {}
        self._refreshing: dict[tuple[str, str], asyncio.Task[frozenset[str]]] = {}

    async def members(self, workspace_id: str, group_id: str, *, timeout: float) -> frozenset[str]:
        """Return the group's members, from cache when fresh enough; raise GroupLookupFailed."""
        key = (workspace_id, group_id)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None:
            members, fetched = cached
            if now - fetched > self._ttl:
                self._refresh(key)
            if now - fetched <= self._max_stale:
                return members
        task = self._refresh(key)
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout=timeout)
        except asyncio.TimeoutError as exc:
            raise GroupLookupFailed(
                f"Slack did not list the members of user group {group_id} in time; try again in a moment"
            ) from exc

    def _refresh(self, key: tuple[str, str]) -> asyncio.Task[frozenset[str]]:
        task = self._refreshing.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(key))
            self._refreshing[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return task

    def _done(self, key: tuple[str, str], task: asyncio.Task[frozenset[str]]) -> None:
        self._refreshing.pop(key, None)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("user group %s: %s", key[1], task.exception())

    async def _fetch(self, key: tuple[str, str]) -> frozenset[str]:
        members = await self._lookup(*key)
        self._cache[key] = (members, time.monotonic())
        return members

    def cached(self, workspace_id: str, group_id: str) -> frozenset[str] | None:
        """The group's members if known now (never waits; a missing or stale entry is fetched)."""
        key = (workspace_id, group_id)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is None or now - cached[1] > self._ttl:
            self._refresh(key)
        if cached is None or now - cached[1] > self._max_stale:
            return None
        return cached[0]

    def warm(self, workspace_id: str, group_ids: Sequence[str]) -> None:
        """Start fetching groups in the background (at start-up)."""
        for group_id in group_ids:
            self._refresh((workspace_id, group_id))


class AccessPolicy:
    """Decides whether a user may cancel in a workspace."""

    def __init__(
        self, *, entries: EntriesLookup, groups: GroupDirectory, timeout: float = 1.5
    ) -> None:
        self._entries = entries
        self._groups = groups
        self._timeout = timeout

    async def check(self, workspace_id: str, user_id: str) -> Decision:
        """Allow listed users and members of listed groups; refuse everyone else (fail closed)."""
        entries = await self._entries(workspace_id)
        if entries is None:
            return Decision(False, OTHER_WORKSPACE, "other_workspace")
        if not entries:
            return Decision(False, EMPTY_LIST, "empty_list")
        if user_id in entries:
            return Decision(True)
        groups = [e for e in entries if e.startswith("S")]
        if not groups:
            return Decision(False, NOT_LISTED, "not_listed")
        # All groups at once, under one deadline: the ack must still reach Slack within 3 s.
        results = await asyncio.gather(
            *(self._groups.members(workspace_id, g, timeout=self._timeout) for g in groups),
            return_exceptions=True,
        )
        problems: list[str] = []
        for result in results:
            if isinstance(result, GroupLookupFailed):
                problems.append(str(result))
            elif isinstance(result, BaseException):
                raise result
            elif user_id in result:
                return Decision(True)
        if problems:
            return Decision(
                False, f"Your access could not be confirmed: {problems[0]}.", "group_lookup"
            )
        return Decision(False, NOT_LISTED, "not_listed")

    async def explain(self, workspace_id: str, user_id: str) -> Explanation:
        """Like check, naming the rule that decided: listed by id, member of a group, not listed…"""
        entries = await self._entries(workspace_id)
        if entries is None:
            return Explanation(False, "other_workspace", detail=OTHER_WORKSPACE)
        if not entries:
            return Explanation(False, "empty_list", detail=EMPTY_LIST)
        if user_id in entries:
            return Explanation(True, "listed")
        groups = [e for e in entries if e.startswith("S")]
        results = await asyncio.gather(
            *(self._groups.members(workspace_id, g, timeout=self._timeout) for g in groups),
            return_exceptions=True,
        )
        failed: Explanation | None = None
        for group_id, result in zip(groups, results, strict=True):
            if isinstance(result, GroupLookupFailed):
                failed = failed or Explanation(False, "group_lookup", group_id, str(result))
            elif isinstance(result, BaseException):
                raise result
            elif user_id in result:
                return Explanation(True, "group", group_id)
        return failed or Explanation(False, "not_listed", detail=NOT_LISTED)

    async def visible_users(self, workspace_id: str) -> list[str] | None:
        """Everyone allowed, groups resolved from cached membership; None if not all are known."""
        entries = await self._entries(workspace_id)
        if entries is None:
            return None
        users = {e for e in entries if not e.startswith("S")}
        for group_id in (e for e in entries if e.startswith("S")):
            members = self._groups.cached(workspace_id, group_id)
            if members is None:
                return None  # the button shows to everyone; pressing it is still checked
            users |= members
        return sorted(users)

    async def allowed_entries(self, workspace_id: str) -> Sequence[str] | None:
        """The users and groups allowed to cancel (who-can); None: workspace not served."""
        return await self._entries(workspace_id)


def static_entries(workspace_id: str, entries: Sequence[str]) -> EntriesLookup:
    """Return the allow-list lookup of a single-workspace deployment (from the environment)."""
    fixed = tuple(entries)

    async def lookup(team_id: str) -> Sequence[str] | None:
        return fixed if team_id == workspace_id else None

    return lookup
