"""Who the configured tokens belong to: `auth.test` for the bot token, `apps.connections.open`
for the app token. The one place either call is made; every failure is a ConfigError (Slack
refused the token) or SlackUnreachable (it could not be asked)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ConfigError, SlackUnreachable
from bot.slack.errors import SLACK_FAILURES

IDENTITY_TIMEOUT = 10
BOT_REFUSED_TEXT = (
    "SLACK_BOT_TOKEN was refused by Slack ({error}): reinstall the app and copy the new token."
)
APP_REFUSED_TEXT = (
    "SLACK_APP_TOKEN was refused by Slack ({error}): create an app-level token with "
    "connections:write (Basic Information > App-Level Tokens)."
)


@dataclass(frozen=True)
class BotIdentity:
    """What `auth.test` says about the bot token."""

    team_id: str
    team: str | None
    user_id: str | None
    response: Any  # the raw answer, for Bolt's AuthorizeResult


class BotTokenIdentity:
    """Asks Slack who SLACK_BOT_TOKEN belongs to; the service's `ask` for the team id."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.last: BotIdentity | None = None  # the latest answer, for Bolt's AuthorizeResult

    @classmethod
    def standalone(cls, *, token: str, base_url: str) -> BotTokenIdentity:
        """An identity with its own short-lived client (for `check`, which opens no pool)."""
        return cls(AsyncWebClient(token=token, base_url=base_url, timeout=IDENTITY_TIMEOUT))

    async def identify(self) -> BotIdentity:
        """Call auth.test; ConfigError when the token is refused, SlackUnreachable otherwise."""
        try:
            auth = await self.client.auth_test()
        except SlackApiError as exc:
            error = exc.response.get("error")
            raise ConfigError([BOT_REFUSED_TEXT.format(error=error)]) from exc
        except SLACK_FAILURES as exc:
            raise SlackUnreachable(exc) from exc
        self.last = BotIdentity(
            team_id=str(auth["team_id"]),
            team=auth.get("team"),
            user_id=auth.get("user_id"),
            response=auth,
        )
        return self.last

    async def __call__(self) -> str:
        """Return the bot token's team id."""
        return (await self.identify()).team_id


async def verify_app_token(*, app_token: str, base_url: str, session: Any | None = None) -> None:
    """Ask Slack for a Socket Mode URL once, so a bad app token is a clear error, not a retry loop."""
    client = AsyncWebClient(base_url=base_url, session=session, timeout=IDENTITY_TIMEOUT)
    try:
        await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = exc.response.get("error")
        raise ConfigError([APP_REFUSED_TEXT.format(error=error)]) from exc
    except SLACK_FAILURES as exc:
        raise SlackUnreachable(exc, "to open Socket Mode") from exc


async def user_info(client: Any, user_id: str) -> Mapping[str, Any] | None:
    """users.info with a request's client; None when Slack could not say (refused or unreachable)."""
    try:
        response = await client.users_info(user=user_id)
    except SLACK_FAILURES:
        return None
    return dict(response.data) if hasattr(response, "data") else dict(response)
