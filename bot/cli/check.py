"""`python -m bot check`: a checklist of the configuration, one line per item.

Its verdict is the start's: the settings are validated by the same `load_settings` call, for the
same purpose (`serve` or `socket`), that `python -m bot` makes; online, the same Slack calls the
start makes (`auth.test`, `apps.connections.open`) are made.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.config import (
    Mode,
    Purpose,
    Settings,
    describe_mode,
    dotenv_path,
    load_settings,
    mode_of,
    read_environment,
    run_purpose,
)
from bot.errors import ConfigError, SlackUnreachable, StoreUnavailable
from bot.modelslab import ModelsLabClient
from bot.service.workspaces import TEAM_ID_META, Workspaces, served_warnings
from bot.store import Store


@dataclass(frozen=True)
class Item:
    """One line of the checklist."""

    ok: bool
    text: str
    warning: bool = False


@dataclass
class _Database:
    items: list[Item]
    store: Store | None  # open and migrated: its contents can be read
    team_id: str | None  # single workspace: the one learned at an earlier start


async def _database(settings: Settings) -> _Database:
    from bot.store.migrations import head_revision, knows_revision

    if settings.is_sqlite:
        path = Path(settings.database_url.split(":///", 1)[1])
        if not await asyncio.to_thread(path.exists):
            # Connecting would create the file: a check must not leave a database behind.
            return _Database(
                [Item(True, f"SQLite file {path} does not exist yet; the first start creates it")],
                None,
                None,
            )
    store = Store.from_url(settings.database_url)
    try:
        await store.connect(wait=5.0)
        revision = await store.schema_revision()
    except StoreUnavailable as exc:
        await store.close()
        return _Database(
            [
                Item(
                    False,
                    f"DATABASE_URL: {exc}; check the host, port, credentials and that the server runs.",
                )
            ],
            None,
            None,
        )
    head = head_revision()
    if revision is None:
        await store.close()
        return _Database(
            [Item(True, "database reachable; its tables are created on first start")], None, None
        )
    if not knows_revision(revision):
        await store.close()
        return _Database(
            [
                Item(
                    False,
                    f"DATABASE_URL: the database is at schema {revision}, which this version "
                    f"(schema {head}) does not know: a newer version of the bot migrated it; run that one.",
                )
            ],
            None,
            None,
        )
    team = await store.meta.get(TEAM_ID_META) if settings.mode is Mode.SINGLE else None
    if revision != head:
        # Tables this version reads may not exist yet: only what the first schema had is read.
        await store.close()
        item = Item(
            True, f"database at schema {revision}; it is migrated to {head} on start", warning=True
        )
        return _Database([item], None, team)
    return _Database([Item(True, f"database reachable, schema current ({revision})")], store, team)


async def _slack(settings: Settings) -> tuple[Item, str | None]:
    """auth.test with the bot token, as the start does; the item and the workspace it names."""
    from bot.slack.identity import BotTokenIdentity

    identity = BotTokenIdentity.standalone(
        token=str(settings.slack_bot_token), base_url=settings.slack_api_url
    )
    try:
        auth = await identity.identify()
    except ConfigError as exc:
        return Item(False, exc.problems[0]), None
    except SlackUnreachable as exc:
        return Item(
            False, f"Slack could not be reached at {settings.slack_api_url} ({exc.cause_name})."
        ), None
    return Item(
        True,
        f"Slack token works: workspace {auth.team} ({auth.team_id}), bot user {auth.user_id}",
    ), auth.team_id


async def _app_token(settings: Settings) -> Item:
    from bot.slack.identity import verify_app_token

    try:
        await verify_app_token(
            app_token=str(settings.slack_app_token), base_url=settings.slack_api_url
        )
    except ConfigError as exc:
        return Item(False, exc.problems[0])
    except SlackUnreachable as exc:
        return Item(
            False, f"Slack could not be reached to check SLACK_APP_TOKEN ({exc.cause_name})."
        )
    return Item(True, "Socket Mode app token works (apps.connections.open)")


async def _modelslab(settings: Settings, key: str, source: str) -> Item:
    async with ModelsLabClient(
        base_url=settings.modelslab_api_url, v6_url=settings.modelslab_v6_url
    ) as client:
        result = await client.check_key(key)
    if result.ok:
        return Item(True, f"ModelsLab key ({source}) accepted (finetune_list)")
    if not result.definitive:
        return Item(
            False,
            f"ModelsLab could not check the key ({result.reason}); check MODELSLAB_API_URL "
            f"({settings.modelslab_api_url}) and the network.",
        )
    return Item(False, f"{source} was refused by ModelsLab: {result.reason}.")


def _source_line(env: Mapping[str, str] | None) -> list[Item]:
    if env is not None:
        return []
    path = dotenv_path()
    if path is None:
        return [
            Item(
                True,
                "settings: the environment only (no .env in the working directory; "
                "copy .env.example to .env to keep them there)",
            )
        ]
    return [Item(True, f"settings: the environment, then {path}")]


async def checklist(
    *, offline: bool, env: Mapping[str, str] | None = None, purpose: Purpose | None = None
) -> list[Item]:
    """Run every check for what `python -m bot` (or `purpose`) would run; never raises for a
    configuration problem."""
    values = read_environment(env)
    chosen = purpose is None
    purpose = purpose or run_purpose(values)
    items = _source_line(env)
    items.append(Item(True, f"mode: {describe_mode(mode_of(values), purpose, chosen=chosen)}"))
    try:
        settings = load_settings(purpose, values)
    except ConfigError as exc:
        items += [Item(False, problem) for problem in exc.problems]
        return items + [Item(True, w, warning=True) for w in exc.warnings]
    items += [Item(True, w, warning=True) for w in settings.warnings]
    if settings.dry_run:
        items.append(
            Item(True, "CANCEL_DRY_RUN=1: ModelsLab's cancel is never called", warning=True)
        )
    if settings.is_sqlite and values.get("DYNO"):
        items.append(
            Item(
                True,
                "SQLite on Heroku: the filesystem is wiped on restart; use the PostgreSQL add-on (DATABASE_URL)",
                warning=True,
            )
        )
    database = await _database(settings)
    items += database.items
    runtime = None
    if database.store is not None:
        from bot.runtime import Role, build

        # The graph a terminal command uses: no Slack or ModelsLab call is made building it.
        runtime = await build(settings, database.store, role=Role.TERMINAL)
    try:
        items += await _served(
            settings,
            database,
            purpose,
            offline=offline,
            workspaces=runtime.workspaces if runtime is not None else None,
        )
    finally:
        if runtime is not None:
            await runtime.close()  # closes the store too
        elif database.store is not None:
            await database.store.close()
    return items


async def _served(
    settings: Settings,
    database: _Database,
    purpose: Purpose,
    *,
    offline: bool,
    workspaces: Workspaces | None,
) -> list[Item]:
    """The workspace the bot serves, the online checks, and what would make every cancel fail."""
    items: list[Item] = []
    team = database.team_id
    if settings.mode is Mode.SINGLE:
        if offline and team is None:
            items.append(
                Item(
                    True,
                    "not checked offline: the first start must reach Slack once (auth.test) to learn "
                    "which workspace SLACK_BOT_TOKEN belongs to; it is cached in the database from then on",
                    warning=True,
                )
            )
        elif team is not None:
            items.append(
                Item(True, f"workspace {team} (learned from Slack at an earlier start, cached)")
            )
    store = database.store
    if workspaces is not None:
        workspaces.serve(team)
    if not offline:
        if settings.mode is Mode.SINGLE:
            slack_item, online_team = await _slack(settings)
            items.append(slack_item)
            if online_team is not None and online_team != team:
                team = online_team
                if workspaces is not None:
                    workspaces.serve(team)
        if purpose is Purpose.SOCKET:
            items.append(await _app_token(settings))
        if settings.mode is Mode.SINGLE and not settings.dry_run:
            items += await _key_check(settings, workspaces, team)
    warnings = await served_warnings(
        settings, store=store, workspaces=workspaces, workspace_id=team
    )
    return items + [Item(True, w, warning=True) for w in warnings]


async def _key_check(
    settings: Settings, workspaces: Workspaces | None, team: str | None
) -> Sequence[Item]:
    """Check the key the served workspace's cancels would use (stored first, else the env's)."""
    stored = None
    if workspaces is not None and team is not None:
        row = await workspaces.store.workspaces.get(team)
        if row is not None and row.key_ciphertext and workspaces.box.enabled:
            stored = await workspaces.key_for(team)
    if stored:
        return [await _modelslab(settings, stored, f"stored for {team}")]
    if settings.modelslab_api_key:
        return [await _modelslab(settings, settings.modelslab_api_key, "MODELSLAB_API_KEY")]
    return []  # the missing key is a warning of its own


def mark(item: Item) -> str:
    """The four-character mark a line starts with."""
    return "ok  " if item.ok and not item.warning else ("warn" if item.ok else "FAIL")


async def run_check(*, offline: bool, purpose: Purpose | None = None) -> int:
    """Print the checklist; exit 0 only when everything passed."""
    items = await checklist(offline=offline, purpose=purpose)
    for item in items:
        print(f"[{mark(item)}] {item.text}")
    failed = sum(not i.ok for i in items)
    print(
        f"{failed} problem(s) found." if failed else "All checks passed.",
        file=sys.stderr if failed else sys.stdout,
    )
    return 1 if failed else 0


async def cmd_check(args: argparse.Namespace) -> int:
    """Validate the configuration (and, unless --offline, the tokens and key)."""
    return await run_check(offline=args.offline, purpose=args.purpose)
