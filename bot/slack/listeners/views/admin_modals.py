"""The key and allow-list modals."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext

from bot.errors import InvalidKey, SecretStorageDisabled
from bot.slack.context import deps_of
from bot.slack.errors import SLACK_FAILURES
from bot.slack.listeners.admin import ADMINS_ONLY, audit_admin_change, is_admin, publish_home
from bot.slack.messages import home, text

logger = logging.getLogger(__name__)
# Slack closes a modal submission after 3 s; the key check must answer well before that.
KEY_CHECK_SECONDS = 2.2


def _value(view: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    values: dict[str, Any] = ((view.get("state") or {}).get("values") or {}).get(block, {}).get(
        action
    ) or {}
    return values


async def handle_key_submit(ack: AsyncAck, view: dict[str, Any], context: AsyncBoltContext) -> None:
    """Check the key with ModelsLab, store it encrypted, or say why not (the modal stays open)."""
    deps, team, user = deps_of(context), str(context.team_id), str(context.user_id)
    if not await is_admin(deps, team, user, context.client):
        await ack(response_action="errors", errors={home.KEY_BLOCK: ADMINS_ONLY})
        return
    key = str(_value(view, home.KEY_BLOCK, home.KEY_INPUT).get("value") or "")
    try:
        hint = await asyncio.wait_for(
            deps.workspaces.set_key(team, key, by=user), timeout=KEY_CHECK_SECONDS
        )
    except (InvalidKey, SecretStorageDisabled) as exc:
        await ack(response_action="errors", errors={home.KEY_BLOCK: text.plain(str(exc), 150)})
        return
    except asyncio.TimeoutError:
        await ack(
            response_action="errors",
            errors={
                home.KEY_BLOCK: "ModelsLab did not answer in time, so the key was not saved; try again."
            },
        )
        return
    await ack()
    await audit_admin_change(
        deps, team, user, f"set the workspace's ModelsLab API key (ends …{text.escape(hint)})"
    )
    await publish_home(deps, context.client, team, user)


async def handle_allow_submit(
    ack: AsyncAck, view: dict[str, Any], context: AsyncBoltContext
) -> None:
    """Replace the stored allow-list with the pickers' selection."""
    deps, team, user = deps_of(context), str(context.team_id), str(context.user_id)
    if not await is_admin(deps, team, user, context.client):
        await ack(response_action="errors", errors={home.USERS_BLOCK: ADMINS_ONLY})
        return
    await ack()
    users = list(_value(view, home.USERS_BLOCK, home.USERS_INPUT).get("selected_users") or [])
    groups = [
        o["value"]
        for o in _value(view, home.GROUPS_BLOCK, home.GROUPS_INPUT).get("selected_options") or []
    ]
    wanted = [
        e for e in users + groups if isinstance(e, str) and e[:1] in ("U", "W", "S") and e.isalnum()
    ]
    fixed = deps.workspaces.fixed_entries(team)
    current = await deps.queries.editable_entries(team)
    # Only what the editor held can have been unselected: entries beyond its pickers stay.
    held = home.editable_from_metadata(view.get("private_metadata"))
    removable = current if held is None else [e for e in current if e in held]
    added = await deps.workspaces.allow(
        team, [e for e in wanted if e not in current and e not in fixed], by=user
    )
    removed = await deps.workspaces.deny(team, [e for e in removable if e not in wanted], by=user)
    if added or removed:
        parts = []
        # Each list gets a share of the message; a long one ends "…and N more".
        share = text.MESSAGE_TEXT // 3
        if added:
            parts.append("allowed " + text.summarise([text.entry(e) for e in added], share))
        if removed:
            parts.append("removed " + text.summarise([text.entry(e) for e in removed], share))
        await audit_admin_change(
            deps, team, user, " and ".join(parts) + " on the cancel allow-list"
        )
        # The notifications' Cancel buttons show to whoever may press them now.
        client = await deps.slack_client(team)
        if client is not None:
            deps.background.spawn(
                deps.notifier.renderer.refresh_workspace(client, team), name="refresh buttons"
            )
    await publish_home(deps, context.client, team, user)


async def handle_group_options(
    ack: AsyncAck, payload: dict[str, Any], context: AsyncBoltContext
) -> None:
    """Offer the workspace's user groups, filtered by what was typed."""
    typed = str(payload.get("value") or "").lower()
    try:
        response = await context.client.usergroups_list()
    except SLACK_FAILURES as exc:
        logger.info("user groups not listed (%s)", type(exc).__name__)
        await ack(options=[])
        return
    await ack(**home.build_group_options(response.get("usergroups") or [], typed))
