"""Assembles the running bot from settings, and serves it over HTTP or Socket Mode."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.access import AccessPolicy, GroupMembers, static_entries
from bot.app import create_app, single_workspace_authorize
from bot.cancellation import CancellationService, StaticKeys
from bot.config import Mode, Settings
from bot.context import Deps
from bot.crypto import SecretBox
from bot.errors import BotError, ConfigError
from bot.modelslab import ModelsLabClient
from bot.reporter import Reporter
from bot.slack import SlackClients
from bot.store import Cancellation, Store
from bot.web import create_web_app
from bot.workspaces import TEAM_ID_META

logger = logging.getLogger("bot")

# SIGTERM → exit within 25 s: HTTP handlers 5 s, in-flight cancels 12 s, reports 5 s.
HTTP_SHUTDOWN_SECONDS = 5.0
WORKER_GRACE_SECONDS = 12.0
REPORTER_GRACE_SECONDS = 5.0


@dataclass
class Runtime:
    """Every long-lived collaborator of a running bot."""

    settings: Settings
    store: Store
    clients: SlackClients
    modelslab: ModelsLabClient
    service: CancellationService
    reporter: Reporter
    deps: Deps
    bolt_app: AsyncApp
    web_app: web.Application
    workspace_id: str

    def start_workers(self) -> None:
        """Start the cancellation worker and the reporter."""
        self.service.start()
        self.reporter.start()

    async def close(self) -> None:
        """Finish or hand back in-flight work, then release every connection."""
        await self.service.stop(grace=WORKER_GRACE_SECONDS)
        await self.reporter.stop(grace=REPORTER_GRACE_SECONDS)
        await self.modelslab.aclose()
        await self.clients.close()
        await self.store.close()


async def identify_workspace(
    settings: Settings, store: Store, clients: SlackClients
) -> AuthorizeResult:
    """Ask Slack who the bot token belongs to (cached, so the terminal and Slack agree)."""
    token = settings.slack_bot_token
    assert token is not None
    try:
        auth = await clients.reporter_for(token).auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error")
        raise ConfigError(
            [
                f"SLACK_BOT_TOKEN was refused by Slack ({error}): reinstall the app and copy the new token."
            ]
        ) from exc
    except (SlackClientError, OSError, asyncio.TimeoutError) as exc:
        cached = await store.get_meta(TEAM_ID_META)
        if cached is None:
            raise BotError(
                f"Slack could not be reached to identify the workspace ({type(exc).__name__}); "
                "check the network and SLACK_API_URL"
            ) from exc
        logger.warning("Slack unreachable at start-up; using the cached workspace %s", cached)
        return AuthorizeResult(enterprise_id=None, team_id=cached, bot_token=token)
    await store.set_meta(TEAM_ID_META, str(auth["team_id"]))
    return AuthorizeResult.from_auth_test_response(auth_test_response=auth, bot_token=token)


async def build_runtime(settings: Settings, store: Store) -> Runtime:
    """Wire the bot together for single-workspace mode."""
    if settings.mode is not Mode.SINGLE:
        raise BotError("OAuth mode (SLACK_CLIENT_ID/SLACK_CLIENT_SECRET) is not available yet")
    clients = SlackClients(base_url=settings.slack_api_url)
    try:
        identity = await identify_workspace(settings, store, clients)
    except BaseException:
        await clients.close()
        raise
    workspace_id = str(identity.team_id)
    token = str(settings.slack_bot_token)

    async def slack_client(team_id: str) -> Any:
        return clients.reporter_for(token) if team_id == workspace_id else None

    async def fast_client(team_id: str) -> Any:
        return clients.fast_for(token)

    async def audit_channel(team_id: str) -> str | None:
        return settings.audit_channel if team_id == workspace_id else None

    modelslab = ModelsLabClient(
        base_url=settings.modelslab_api_url,
        v6_url=settings.modelslab_v6_url,
        dry_run=settings.dry_run,
    )
    reporter = Reporter(
        store=store,
        clients=slack_client,
        secret_box=SecretBox(settings.encryption_keys),
        audit_channel=audit_channel,
        session=clients.session,
    )

    async def report(row: Cancellation) -> None:
        reporter.wake()

    service = CancellationService(
        store=store,
        client=modelslab,
        keys=StaticKeys(settings.modelslab_api_key),
        dry_run=settings.dry_run,
        on_finished=report,
    )
    groups = GroupMembers(clients=fast_client)
    access = AccessPolicy(
        entries=static_entries(workspace_id, settings.allowed_entries), groups=groups
    )
    deps = Deps(
        store=store,
        service=service,
        access=access,
        reporter=reporter,
        audit_channel=audit_channel,
        slack_client=slack_client,
    )
    bolt_app = create_app(
        deps=deps,
        client=clients.fast,
        authorize=single_workspace_authorize(identity),
        signing_secret=settings.slack_signing_secret,
    )
    web_app = create_web_app(
        bolt_app=bolt_app, signing_secret=settings.slack_signing_secret, store=store
    )
    groups.warm(workspace_id, [e for e in settings.allowed_entries if e.startswith("S")])
    return Runtime(
        settings=settings,
        store=store,
        clients=clients,
        modelslab=modelslab,
        service=service,
        reporter=reporter,
        deps=deps,
        bolt_app=bolt_app,
        web_app=web_app,
        workspace_id=workspace_id,
    )


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _start_site(runtime: Runtime, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(
        runtime.web_app, handle_signals=False, shutdown_timeout=HTTP_SHUTDOWN_SECONDS
    )
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def announce(settings: Settings, runtime: Runtime, how: str) -> None:
    """Say at start-up which mode is active (design §2), and any configuration warnings."""
    for warning in settings.warnings:
        logger.warning("%s", warning)
    dry = " DRY RUN: ModelsLab's cancel is never called." if settings.dry_run else ""
    logger.info(
        "cancel-training bot ready: %s mode, workspace %s, %s.%s",
        settings.mode.value,
        runtime.workspace_id,
        how,
        dry,
    )


async def serve(settings: Settings, store: Store, *, host: str, port: int) -> None:
    """Serve HTTP until SIGTERM/SIGINT, then shut down gracefully."""
    stop = _stop_event()
    runtime = await build_runtime(settings, store)
    try:
        runner = await _start_site(runtime, host, port)
        runtime.start_workers()
        announce(settings, runtime, f"HTTP on {host}:{port} (POST /slack/events)")
        await stop.wait()
        logger.info("shutting down: no new requests; in-flight work finishes or stays claimed")
        await runner.cleanup()
    finally:
        await runtime.close()


async def socket(settings: Settings, store: Store, *, host: str, port: int | None) -> None:
    """Run Socket Mode (and the HTTP routes when a port is given) until SIGTERM/SIGINT."""
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    stop = _stop_event()
    runtime = await build_runtime(settings, store)
    runner: web.AppRunner | None = None
    handler = AsyncSocketModeHandler(runtime.bolt_app, app_token=settings.slack_app_token)
    try:
        if port is not None:
            runner = await _start_site(runtime, host, port)
        runtime.start_workers()
        await handler.connect_async()  # type: ignore[no-untyped-call]
        routes = f" and HTTP on {host}:{port}" if port is not None else ""
        announce(settings, runtime, f"Socket Mode{routes}")
        await stop.wait()
        logger.info("shutting down Socket Mode")
        await handler.close_async()  # type: ignore[no-untyped-call]
        if runner is not None:
            await runner.cleanup()
    finally:
        await runtime.close()
