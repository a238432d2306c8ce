"""Assembles the running bot from settings, and serves it over HTTP or Socket Mode."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import version
from bot.background import Background
from bot.config import Mode, Settings
from bot.crypto import SecretBox
from bot.errors import BotError, ConfigError, StoreUnavailable
from bot.metrics import Metrics
from bot.model import Cancellation
from bot.modelslab import KeyLimiter, ModelsLabClient
from bot.service.access import AccessPolicy, GroupMembers
from bot.service.cancellation import CancellationService
from bot.service.queries import Queries
from bot.service.workspaces import ENV_IMPORTED_META, TEAM_ID_META, Workspaces, served_warnings
from bot.slack.app import create_app, single_workspace_authorize
from bot.slack.clients import SlackClients
from bot.slack.context import Deps
from bot.slack.delivery.notifier import Notifier
from bot.slack.delivery.renderer import NotificationRenderer
from bot.slack.delivery.reporter import Reporter
from bot.slack.oauth import (
    CachedInstallationAuthorize,
    EncryptedInstallationStore,
    build_installation_store,
    build_oauth_flow,
    workspace_key,
)
from bot.slack.usergroups import SlackGroupMembers
from bot.store import Store
from bot.web import OnlineProbe, TrainingRoutes, create_web_app
from bot.web.oauth import add_oauth_routes

logger = logging.getLogger("bot")

# SIGTERM → exit within 25 s: HTTP handlers 5 s, listeners' post-ack work 2 s, in-flight
# cancels 12 s (reports 5 s alongside).
HTTP_SHUTDOWN_SECONDS = 5.0
BACKGROUND_GRACE_SECONDS = 2.0
WORKER_GRACE_SECONDS = 12.0
REPORTER_GRACE_SECONDS = 5.0
TOKEN_CACHE_SECONDS = 600.0


@dataclass
class Runtime:
    """Every long-lived collaborator of a running bot."""

    settings: Settings
    store: Store
    clients: SlackClients
    modelslab: ModelsLabClient
    service: CancellationService
    reporter: Reporter
    notifier: Notifier
    metrics: Metrics
    probe: OnlineProbe
    deps: Deps
    bolt_app: AsyncApp
    web_app: web.Application
    workspace_id: str

    def start_workers(self) -> None:
        """Start the cancellation worker and the reporter."""
        self.service.start()
        self.reporter.start()
        self.notifier.start()

    async def close(self) -> None:
        """Finish or hand back in-flight work, then release every connection."""
        await self.probe.stop()
        # Listeners' post-ack work (replies, audit posts) first: it may still need the clients.
        await self.deps.background.drain(grace=BACKGROUND_GRACE_SECONDS)
        # In parallel, so SIGTERM → exit stays within 25 s.
        await asyncio.gather(
            self.service.stop(grace=WORKER_GRACE_SECONDS),
            self.reporter.stop(grace=REPORTER_GRACE_SECONDS),
            self.notifier.stop(grace=REPORTER_GRACE_SECONDS),
        )
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
        cached = await store.meta.get(TEAM_ID_META)
        if cached is None:
            raise BotError(
                f"Slack could not be reached to identify the workspace ({type(exc).__name__}); "
                "check the network and SLACK_API_URL"
            ) from exc
        logger.warning("Slack unreachable at start-up; using the cached workspace %s", cached)
        return AuthorizeResult(enterprise_id=None, team_id=cached, bot_token=token)
    await store.meta.set(TEAM_ID_META, str(auth["team_id"]))
    return AuthorizeResult.from_auth_test_response(auth_test_response=auth, bot_token=token)


class TokenDirectory:
    """Bot tokens per workspace: the configured one (single) or the installation's (OAuth), cached."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        workspace_id: str | None,
        installations: EncryptedInstallationStore | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.workspace_id = workspace_id
        self.installations = installations
        self._cache: dict[str, tuple[str, float]] = {}

    async def token_for(self, workspace_id: str) -> str | None:
        """Return the workspace's bot token, or None when it is not installed."""
        if self.installations is None:
            return self.settings.slack_bot_token if workspace_id == self.workspace_id else None
        cached = self._cache.get(workspace_id)
        if cached is not None and time.monotonic() - cached[1] < TOKEN_CACHE_SECONDS:
            return cached[0]
        row = await self.store.workspaces.get(workspace_id)
        if row is None or not row.installed:
            return None
        org_wide = row.enterprise_id == workspace_id
        bot = await self.installations.async_find_bot(
            enterprise_id=row.enterprise_id,
            team_id=None if org_wide else workspace_id,
            is_enterprise_install=org_wide,
        )
        if bot is None or not bot.bot_token:
            return None
        self._cache[workspace_id] = (bot.bot_token, time.monotonic())
        return str(bot.bot_token)

    def forget(self, workspace_id: str) -> None:
        """Drop a cached token."""
        self._cache.pop(workspace_id, None)


async def import_environment(settings: Settings, store: Store, workspaces: Workspaces) -> None:
    """Once, move a single-workspace deployment's env key and allow-list into that workspace."""
    target = await store.meta.get(TEAM_ID_META)
    if target is None or await store.meta.get(ENV_IMPORTED_META) is not None:
        return
    if settings.modelslab_api_key and workspaces.box.enabled:
        row = await store.workspaces.get(target)
        if row is None or not row.key_ciphertext:
            key = settings.modelslab_api_key
            await store.workspaces.update(
                target,
                key_ciphertext=workspaces.box.encrypt(key),
                key_hint=key[-4:],
                key_set_at=time.time(),
                key_set_by="cli:import",
            )
    if settings.allowed_entries:
        await store.workspaces.allow(target, list(settings.allowed_entries), by="cli:import")
    await store.workspaces.record_admin_event(
        target, actor="cli:import", action="import_env", detail="key and allow-list"
    )
    await store.meta.set(ENV_IMPORTED_META, target)
    logger.info(
        "imported MODELSLAB_API_KEY and CANCEL_ALLOWED_USERS into workspace %s (once)", target
    )


async def build_runtime(settings: Settings, store: Store) -> Runtime:
    """Wire the bot together for the configured mode."""
    clients = SlackClients(base_url=settings.slack_api_url)
    try:
        return await _build_runtime(settings, store, clients)
    except BaseException:
        await clients.close()
        raise


async def _build_runtime(settings: Settings, store: Store, clients: SlackClients) -> Runtime:
    box = SecretBox(settings.encryption_keys)
    installations: EncryptedInstallationStore | None = None
    oauth_flow = None
    authorize: Any
    cached_authorize: CachedInstallationAuthorize | None = None
    single_id: str | None = None
    if settings.mode is Mode.SINGLE:
        identity = await identify_workspace(settings, store, clients)
        single_id = str(identity.team_id)
        authorize = single_workspace_authorize(identity)
    else:
        assert settings.slack_client_id is not None
        assert settings.slack_client_secret is not None
        installations = build_installation_store(
            client_id=settings.slack_client_id, store=store, box=box
        )
        cached_authorize = CachedInstallationAuthorize(installations)
        authorize = cached_authorize
        oauth_flow = build_oauth_flow(
            client_id=settings.slack_client_id,
            client_secret=settings.slack_client_secret,
            installations=installations,
            store=store,
            # The code exchange happens in a browser redirect, not before an ack: it may retry.
            client=clients.reporter_for(None),
        )
    tokens = TokenDirectory(
        settings=settings, store=store, workspace_id=single_id, installations=installations
    )
    if installations is not None:
        installations.on_saved.append(
            lambda enterprise_id, team_id: tokens.forget(workspace_key(enterprise_id, team_id))
        )
        if cached_authorize is not None:
            installations.on_saved.append(cached_authorize.forget)
    metrics = Metrics()
    modelslab = ModelsLabClient(
        base_url=settings.modelslab_api_url,
        v6_url=settings.modelslab_v6_url,
        dry_run=settings.dry_run,
        observer=metrics.observe_modelslab,
    )
    workspaces = Workspaces(
        store=store, box=box, settings=settings, modelslab=modelslab, single_workspace_id=single_id
    )
    if settings.mode is Mode.OAUTH:
        await import_environment(settings, store, workspaces)

    async def slack_client(team_id: str) -> Any:
        token = await tokens.token_for(team_id)
        return clients.reporter_for(token) if token else None

    async def fast_client(team_id: str) -> Any:
        token = await tokens.token_for(team_id)
        return clients.fast_for(token) if token else None

    groups = GroupMembers(lookup=SlackGroupMembers(clients=fast_client))
    access = AccessPolicy(entries=workspaces.entries, groups=groups)
    renderer = NotificationRenderer(store=store, visible_to=access.visible_users)
    limiter = KeyLimiter()
    reporter = Reporter(
        store=store,
        clients=slack_client,
        secret_box=box,
        audit_channel=workspaces.audit_channel,
        session=clients.session,
        renderer=renderer,
    )
    notifier = Notifier(
        store=store,
        workspaces=workspaces,
        clients=slack_client,
        renderer=renderer,
        modelslab=modelslab,
        limiter=limiter,
    )

    async def report(row: Cancellation) -> None:
        metrics.cancellations.labels(outcome=row.outcome or "unknown").inc()

    service = CancellationService(
        store=store,
        client=modelslab,
        keys=workspaces.key_for,
        dry_run=settings.dry_run,
        on_finished=report,
        limiter=limiter,
        reports=reporter,
        safety=workspaces.safety,
        access=access,
    )

    async def forget_workspace(enterprise_id: str | None, team_id: str | None) -> None:
        workspace_id = workspace_key(enterprise_id, team_id)
        if installations is not None:
            await installations.async_delete_installation(
                enterprise_id=enterprise_id, team_id=team_id
            )
            await installations.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)
        if cached_authorize is not None:
            cached_authorize.forget(enterprise_id, team_id)
        tokens.forget(workspace_id)
        await store.workspaces.forget(workspace_id)
        workspaces.forget_cached(workspace_id)
        logger.info(
            "workspace %s uninstalled: tokens, key, allow-list and settings deleted", workspace_id
        )

    async def forget_user_tokens(
        enterprise_id: str | None, team_id: str | None, users: list[str]
    ) -> None:
        if installations is None:
            return
        for user_id in users:
            await installations.async_delete_installation(
                enterprise_id=enterprise_id, team_id=team_id, user_id=user_id
            )

    deps = Deps(
        service=service,
        queries=Queries(store=store, fixed_entries=workspaces.fixed_entries),
        access=access,
        response_urls=reporter.response_urls,
        workspaces=workspaces,
        slack_client=slack_client,
        forget_workspace=forget_workspace,
        forget_user_tokens=forget_user_tokens,
        notifier=notifier,
        metrics=metrics,
        background=Background(),
        webhook_session=clients.session,
    )
    bolt_app = create_app(
        deps=deps,
        client=clients.fast,
        authorize=authorize,
        signing_secret=settings.slack_signing_secret,
        oauth_flow=oauth_flow,
    )

    async def before_scrape() -> None:
        recoveries, backlog = await store.cancellations.queue_depths()
        metrics.pending_recoveries.set(recoveries)
        metrics.outbox_backlog.set(backlog)
        metrics.inflight.set(service.in_flight)

    probe = OnlineProbe(
        settings=settings,
        clients=clients,
        modelslab=modelslab,
        workspaces=workspaces,
        single_workspace_id=single_id,
    )

    async def readiness_warnings() -> list[str]:
        # What `check` warns about too, then what the online probe found.
        served: list[str] = []
        with contextlib.suppress(StoreUnavailable):  # /readyz has just pinged the store
            served = await served_warnings(
                settings, store=store, workspaces=workspaces, workspace_id=single_id
            )
        return [*served, *await probe.warnings_now()]

    web_app = create_web_app(
        readiness_warnings=readiness_warnings,
        bolt_app=bolt_app,
        signing_secret=settings.slack_signing_secret,
        store=store,
        metrics=metrics,
        metrics_token=settings.metrics_token,
        before_scrape=before_scrape,
    )
    TrainingRoutes(
        settings=settings,
        store=store,
        single_workspace_id=single_id,
        wake=notifier.wake,
        notify_channel=workspaces.notify_channel,
    ).add_routes(web_app)
    if oauth_flow is not None:
        add_oauth_routes(web_app, oauth_flow)
    if single_id is not None:
        groups.warm(single_id, [e for e in settings.allowed_entries if e.startswith("S")])
    return Runtime(
        settings=settings,
        store=store,
        clients=clients,
        modelslab=modelslab,
        service=service,
        reporter=reporter,
        notifier=notifier,
        metrics=metrics,
        probe=probe,
        deps=deps,
        bolt_app=bolt_app,
        web_app=web_app,
        workspace_id=single_id or "(each installed workspace)",
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


async def announce(settings: Settings, runtime: Runtime, how: str) -> None:
    """Say at start-up which version and mode are active (design §2), and every warning `check`
    would give: the configuration's, and a served workspace no cancel can succeed in."""
    workspaces = runtime.deps.workspaces
    served = await served_warnings(
        settings,
        store=runtime.store,
        workspaces=workspaces,
        workspace_id=workspaces.single_workspace_id,
    )
    for warning in [*settings.warnings, *served]:
        logger.warning("%s", warning)
    dry = " DRY RUN: ModelsLab's cancel is never called." if settings.dry_run else ""
    logger.info(
        "cancel-training bot %s ready: %s mode, workspace %s, %s.%s",
        version(),
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
        await announce(settings, runtime, f"HTTP on {host}:{port} (POST /slack/events)")
        await stop.wait()
        logger.info("shutting down: no new requests; in-flight work finishes or stays claimed")
        await runner.cleanup()
    finally:
        await runtime.close()


async def verify_app_token(settings: Settings, clients: SlackClients) -> None:
    """Ask Slack for a Socket Mode URL once, so a bad app token is a clear error, not a retry loop."""
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(base_url=settings.slack_api_url, session=clients.session, timeout=10)
    try:
        await client.apps_connections_open(app_token=str(settings.slack_app_token))
    except SlackApiError as exc:
        error = exc.response.get("error")
        raise ConfigError(
            [
                f"SLACK_APP_TOKEN was refused by Slack ({error}): create an app-level token with "
                "connections:write (Basic Information > App-Level Tokens)."
            ]
        ) from exc
    except (SlackClientError, OSError, asyncio.TimeoutError) as exc:
        raise BotError(
            f"Slack could not be reached to open Socket Mode ({type(exc).__name__})"
        ) from exc


async def socket(settings: Settings, store: Store, *, host: str, port: int | None) -> None:
    """Run Socket Mode (and the HTTP routes when a port is given) until SIGTERM/SIGINT."""
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    stop = _stop_event()
    runtime = await build_runtime(settings, store)
    runner: web.AppRunner | None = None
    handler: AsyncSocketModeHandler | None = None
    try:
        await verify_app_token(settings, runtime.clients)
        # Built once the token is known good: it opens an aiohttp session of its own.
        handler = AsyncSocketModeHandler(runtime.bolt_app, app_token=settings.slack_app_token)
        if port is not None:
            runner = await _start_site(runtime, host, port)
        runtime.start_workers()
        # Connecting retries on its own; SIGTERM must still be honoured while it does.
        connect = asyncio.ensure_future(handler.connect_async())  # type: ignore[no-untyped-call]
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({connect, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if connect.done():
            connect.result()
            routes = f" and HTTP on {host}:{port}" if port is not None else ""
            await announce(settings, runtime, f"Socket Mode{routes}")
            await stopping
        else:
            connect.cancel()
        logger.info("shutting down Socket Mode")
    finally:
        if handler is not None:
            await handler.close_async()  # type: ignore[no-untyped-call]
        if runner is not None:
            await runner.cleanup()
        await runtime.close()
