"""Which Slack workspace the bot acts for."""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.errors import BotError
from bot.store import Store

TEAM_ID_META = "single_workspace_team_id"


async def single_workspace_id(*, store: Store, slack: Any | None) -> str:
    """Return the workspace id: cached in the store, else asked of Slack's auth.test and cached."""
    cached = await store.get_meta(TEAM_ID_META)
    if cached:
        return cached
    if slack is None:
        raise BotError("the workspace is not known yet: pass --team T… or set SLACK_BOT_TOKEN")
    try:
        response = await slack.auth_test()
    except SlackApiError as exc:
        raise BotError(f"Slack refused the bot token ({exc.response.get('error')})") from exc
    except (SlackClientError, OSError, TimeoutError) as exc:
        raise BotError(
            f"Slack could not be reached to identify the workspace ({type(exc).__name__})"
        ) from exc
    team_id = str(response["team_id"])
    await store.set_meta(TEAM_ID_META, team_id)
    return team_id
