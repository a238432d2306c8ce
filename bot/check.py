"""`python -m bot check`: a checklist of the configuration, one line per item."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.config import Mode, Purpose, Settings, load_settings
from bot.errors import ConfigError, StoreUnavailable
from bot.modelslab import ModelsLabClient
from bot.store import Store


@dataclass(frozen=True)
class Item:
    """One line of the checklist."""

    ok: bool
    text: str
    warning: bool = False


async def _database(settings: Settings) -> list[Item]:
    from bot.store.migrations import head_revision

    store = Store.from_url(settings.database_url)
    try:
        await store.connect(wait=5.0)
        revision = await store.schema_revision()
    except StoreUnavailable as exc:
        return [
            Item(
                False,
                f"DATABASE_URL: {exc}; check the host, port, credentials and that the server runs.",
            )
        ]
    finally:
        await store.close()
    head = head_revision()
    if revision is None:
        return [Item(True, "database reachable; its tables are created on first start")]
    if revision != head:
        return [
            Item(
                True,
                f"database at schema {revision}; it is migrated to {head} on start",
                warning=True,
            )
        ]
    return [Item(True, f"database reachable, schema current ({revision})")]


async def _slack(settings: Settings) -> Item:
    from slack_sdk.web.async_client import AsyncWebClient

    if settings.mode is Mode.OAUTH or not settings.slack_bot_token:
        return Item(True, "Slack bot token: not used in OAuth mode (each install brings its own)")
    client = AsyncWebClient(
        token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=10
    )
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        return Item(
            False,
            f"SLACK_BOT_TOKEN was refused by Slack ({exc.response.get('error')}): reinstall the app and copy the new token.",
        )
    except (SlackClientError, OSError, asyncio.TimeoutError) as exc:
        return Item(
            False, f"Slack could not be reached at {settings.slack_api_url} ({type(exc).__name__})."
        )
    return Item(
        True,
        f"Slack token works: workspace {auth.get('team')} ({auth.get('team_id')}), bot user {auth.get('user_id')}",
    )


async def _app_token(settings: Settings) -> Item | None:
    from slack_sdk.web.async_client import AsyncWebClient

    if not settings.slack_app_token:
        return None
    client = AsyncWebClient(base_url=settings.slack_api_url, timeout=10)
    try:
        await client.apps_connections_open(app_token=str(settings.slack_app_token))
    except SlackApiError as exc:
        return Item(
            False,
            f"SLACK_APP_TOKEN was refused by Slack ({exc.response.get('error')}): create an app-level token with connections:write.",
        )
    except (SlackClientError, OSError, asyncio.TimeoutError) as exc:
        return Item(
            False, f"Slack could not be reached to check SLACK_APP_TOKEN ({type(exc).__name__})."
        )
    return Item(True, "Socket Mode app token works (apps.connections.open)")


async def _modelslab(settings: Settings) -> Item:
    if not settings.modelslab_api_key:
        return Item(
            True,
            "MODELSLAB_API_KEY not set: a key must be stored for the workspace (set-key)",
            warning=True,
        )
    async with ModelsLabClient(
        base_url=settings.modelslab_api_url, v6_url=settings.modelslab_v6_url
    ) as client:
        result = await client.check_key(settings.modelslab_api_key)
    if result.ok:
        return Item(True, "ModelsLab key accepted (finetune_list)")
    if not result.definitive:
        return Item(
            False,
            f"ModelsLab could not check the key ({result.reason}); check MODELSLAB_API_URL "
            f"({settings.modelslab_api_url}) and the network.",
        )
    return Item(False, f"MODELSLAB_API_KEY was refused by ModelsLab: {result.reason}.")


async def checklist(*, offline: bool, env: Mapping[str, str] | None = None) -> list[Item]:
    """Run every check; never raises for a configuration problem."""
    try:
        settings = load_settings(Purpose.CHECK, env)
    except ConfigError as exc:
        return [Item(False, problem) for problem in exc.problems]
    items = [Item(True, f"configuration valid ({settings.mode.value} mode)")]
    items += [Item(True, w, warning=True) for w in settings.warnings]
    if settings.dry_run:
        items.append(
            Item(True, "CANCEL_DRY_RUN=1: ModelsLab's cancel is never called", warning=True)
        )
    if settings.is_sqlite and (env if env is not None else os.environ).get("DYNO"):
        items.append(
            Item(
                True,
                "SQLite on Heroku: the filesystem is wiped on restart; use the PostgreSQL add-on (DATABASE_URL)",
                warning=True,
            )
        )
    if not settings.allowed_entries:
        items.append(Item(True, "CANCEL_ALLOWED_USERS is empty: nobody may cancel", warning=True))
    items += await _database(settings)
    if not offline:
        items.append(await _slack(settings))
        app_token = await _app_token(settings)
        if app_token is not None:
            items.append(app_token)
        items.append(await _modelslab(settings))
    return items


async def run_check(*, offline: bool) -> int:
    """Print the checklist; exit 0 only when everything passed."""
    items = await checklist(offline=offline)
    for item in items:
        mark = "ok  " if item.ok and not item.warning else ("warn" if item.ok else "FAIL")
        print(f"[{mark}] {item.text}")
    failed = sum(not i.ok for i in items)
    print(
        f"{failed} problem(s) found." if failed else "All checks passed.",
        file=sys.stderr if failed else sys.stdout,
    )
    return 1 if failed else 0
