"""What every command shares: exit codes, settings, the store, the runtime, the served workspace."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING

from bot.config import Mode, Purpose, Settings, load_settings
from bot.errors import ConfigError, StoreUnavailable
from bot.logs import setup_logging
from bot.store import Store

if TYPE_CHECKING:
    from bot.runtime import Runtime

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SCHEDULED = 0, 1, 2, 3
# Design §3: the start-up waits this long for a PostgreSQL that is not up yet, saying so every
# DB_PROGRESS_SECONDS.
DB_WAIT_SECONDS = 30.0
DB_PROGRESS_SECONDS = 5.0


def _sentence(exc: BaseException) -> str:
    """An error as one sentence ending in a full stop."""
    return str(exc).rstrip(".") + "."


def _settings(purpose: Purpose, *, dry_run: bool = False, log_level: str = "WARNING") -> Settings:
    settings = load_settings(purpose)
    setup_logging(
        level=log_level or settings.log_level, fmt=settings.log_format, secrets=settings.secrets
    )
    if dry_run and not settings.dry_run:
        from dataclasses import replace

        settings = replace(settings, dry_run=True)
    return settings


async def open_store(settings: Settings) -> Store:
    """Connect to the database (waiting for PostgreSQL up to 30 s, saying so) and migrate it."""
    store = Store.from_url(settings.database_url)
    try:
        await _wait_for_database(store)
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    return store


async def _wait_for_database(store: Store) -> None:
    """Ping until the database answers; PostgreSQL may still be starting (design §3: 30 s)."""
    started = time.monotonic()
    deadline = started + DB_WAIT_SECONDS
    next_note = started + DB_PROGRESS_SECONDS
    delay = 0.25
    while True:
        try:
            # Bounded: a host that drops packets would otherwise hold one attempt for minutes.
            await asyncio.wait_for(store.ping(), timeout=max(deadline - time.monotonic(), 0.1))
            return
        except (StoreUnavailable, asyncio.TimeoutError) as exc:
            now = time.monotonic()
            if store.dialect != "postgresql" or now >= deadline - 0.05:
                if isinstance(exc, StoreUnavailable):
                    raise
                raise StoreUnavailable(
                    f"the database did not answer within {DB_WAIT_SECONDS:.0f} s"
                ) from exc
            if now >= next_note:
                print(f"waiting for the database… ({now - started:.0f} s)", file=sys.stderr)
                next_note += DB_PROGRESS_SECONDS
            # Wake for the next progress line and for the deadline, whatever the backoff says.
            await asyncio.sleep(min(delay, max(next_note - now, 0.0), deadline - now))
            delay = min(delay * 2, 1.0)


async def terminal_runtime(settings: Settings, store: Store) -> Runtime:
    """The object graph a terminal command uses (runtime.build, TERMINAL role); closing it
    closes the store."""
    from bot.runtime import Role, build

    try:
        return await build(settings, store, role=Role.TERMINAL)
    except BaseException:
        await store.close()
        raise


async def resolve_team(runtime: Runtime, requested: str | None) -> str:
    """The workspace a terminal command acts on; ConfigError for one this bot does not serve."""
    settings = runtime.settings
    if settings.mode is Mode.OAUTH:
        if requested is None:
            raise ConfigError(["Pass --team T…: in OAuth mode the bot serves many workspaces."])
        return requested
    served = await runtime.workspaces.identify(fresh=False, required=requested is None)
    if requested is not None and served is not None and requested != served:
        raise ConfigError(
            [
                f"This bot serves workspace {served} (single-workspace mode: SLACK_BOT_TOKEN's), "
                f"not {requested}: drop --team, or serve several workspaces in OAuth mode."
            ]
        )
    team = requested or served
    if team is None:
        raise ConfigError(
            [
                "The workspace is not known yet: it is learned from Slack at the first start "
                "(or now, with SLACK_BOT_TOKEN set); or pass --team T…"
            ]
        )
    # Single workspace: the operator's key and allow-list apply to the workspace acted on.
    runtime.workspaces.serve(team)
    return team
