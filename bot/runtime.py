"""The one composition root: builds the object graph for serve, socket, worker and every CLI
command, and runs the long-lived roles until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult

from bot import version
from bot.background import Background
from bot.config import Mode, Settings
from bot.crypto import SecretBox
from bot.errors import StoreUnavailable
from bot.metrics import Metrics
from bot.modelslab import KeyLimiter, ModelsLabClient
from bot.service.access import AccessPolicy, GroupMembers
from bot.service.audit import AuditTrail
from bot.service.cancellation import CancellationService
from bot.service.queries import Queries
from bot.service.workspaces import Workspaces, served_warnings
from bot.slack.app import create_app, single_workspace_authorize
from bot.slack.clients import SlackClients
from bot.slack.context import Deps
from bot.slack.delivery.notifier import Notifier
from bot.slack.delivery.renderer import NotificationRenderer
from bot.slack.delivery.reporter import Reporter
from bot.slack.identity import BotTokenIdentity, user_info, verify_app_token
from bot.slack.messages.home import key_wording
from bot.slack.oauth import (
    CachedInstallationAuthorize,
    EncryptedInstallationStore,
    InstallationTokens,
    TokenDirectory,
    build_installation_store,
    build_oauth_flow,
)
from bot.slack.usergroups import SlackGroupMembers
from bot.store import Store
from bot.store.wakeups import WakeListener, Work
from bot.web import OnlineProbe, TrainingRoutes, create_web_app
from bot.web.audit import add_audit_routes
from bot.web.oauth import add_oauth_routes

logger = logging.getLogger("bot")

# SIGTERM → exit within 25 s: HTTP handlers 5 s, listeners' post-ack work 2 s, in-flight
# cancels 12 s (reports 5 s alongside).
HTTP_SHUTDOWN_SECONDS = 5.0
BACKGROUND_GRACE_SECONDS = 2.0
WORKER_GRACE_SECONDS = 12.0
REPORTER_GRACE_SECONDS = 5.0


class Role(enum.Enum):
    """What a process does (design §2 "Roles")."""

    BOTH = "both"  # serve and work the queues: one process is a complete bot
    WEB = "web"  # --no-worker: verify, authorise, claim, ack; another process works the queues
    WORKER = "worker"  # only the queues (and /healthz, /metrics)
    TERMINAL = "terminal"  # one CLI command: no Bolt app, no routes, no loops

    @property
    def works(self) -> bool:
        """True when this role runs the queue workers."""
        return self in (Role.BOTH, Role.WORKER)

    @property
    def serves_slack(self) -> bool:
        """True when this role answers Slack (the Bolt app and the /slack/events chain)."""
        return self in (Role.BOTH, Role.WEB)


@dataclass
class Runtime:
    """Every long-lived collaborator of a process, built once by `build`."""

    settings: Settings
    store: Store
    role: Role
    clients: SlackClients
    identity: BotTokenIdentity | None
    tokens: TokenDirectory
    modelslab: ModelsLabClient
    workspaces: Workspaces
    service: CancellationService
    reporter: Reporter
    notifier: Notifier
    metrics: Metrics
    deps: Deps
    probe: OnlineProbe | None = None
    bolt_app: AsyncApp | None = None
    web_app: web.Application | None = None
    workspace_id: str = "(each installed workspace)"
    wake_listener: WakeListener | None = None

    def start_workers(self) -> None:
        """Start the cancellation worker, the reporter and the notifier (and, on PostgreSQL,
        the LISTEN that wakes them when another process has work for them)."""
        self.service.start()
        self.reporter.start()
        self.notifier.start()
        if self.wake_listener is None:
            self.wake_listener = WakeListener.for_database(self.store, self.wake)
            if self.wake_listener is not None:
                self.wake_listener.start()

    def wake(self, work: Work | None) -> None:
        """Another process announced work (None: anything may be waiting)."""
        if work in (None, Work.CANCELLATIONS):
            self.service.wake()
        if work in (None, Work.CANCELLATIONS, Work.REPORTS):
            # A claim's report ("Cancelling…") is due at once too.
            self.reporter.wake()
        if work in (None, Work.TRAINING_EVENTS, Work.POLLS):
            self.notifier.wake()

    async def before_scrape(self) -> None:
        """Refresh the gauges /metrics shows."""
        recoveries, backlog = await self.store.cancellations.queue_depths()
        self.metrics.pending_recoveries.set(recoveries)
        self.metrics.outbox_backlog.set(backlog)
        self.metrics.inflight.set(self.service.in_flight)

    async def readiness_warnings(self) -> list[str]:
        """What `check` warns about too, then what the online probe found."""
        served: list[str] = []
        with contextlib.suppress(StoreUnavailable):  # /readyz has just pinged the store
            served = await served_warnings(
                self.settings,
                store=self.store,
                workspaces=self.workspaces,
                workspace_id=self.workspaces.single_workspace_id,
            )
        return [*served, *(await self.probe.warnings_now() if self.probe else [])]

    async def close(self) -> None:
        """Finish or hand back in-flight work, then release every connection."""
        if self.probe is not None:
            await self.probe.stop()
        if self.wake_listener is not None:
            await self.wake_listener.stop()
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


async def build_runtime(settings: Settings, store: Store) -> Runtime:
    """The complete bot (serve or socket without --no-worker); kept for the harness and bench."""
    return await build(settings, store, role=Role.BOTH)


async def build(settings: Settings, store: Store, *, role: Role = Role.BOTH) -> Runtime:
    """Wire the bot together for the configured mode and a process role.

    A long-lived role learns the single workspace from Slack at once (falling back to the cached
    id); a terminal command (TERMINAL) resolves it itself with `workspaces.identify`.
    """
    clients = SlackClients(base_url=settings.slack_api_url)
    try:
        return await _build(settings, store, clients, role)
    except BaseException:
        await clients.close()
        raise


async def _build(settings: Settings, store: Store, clients: SlackClients, role: Role) -> Runtime:
    box = SecretBox(settings.encryption_keys)
    token = settings.slack_bot_token
    identity: BotTokenIdentity | None = None
    if settings.mode is Mode.SINGLE and token:
        identity = (
            BotTokenIdentity.standalone(token=token, base_url=settings.slack_api_url)
            if role is Role.TERMINAL
            else BotTokenIdentity(clients.reporter_for(token))
        )
    metrics = Metrics()
    modelslab = ModelsLabClient(
        base_url=settings.modelslab_api_url,
        v6_url=settings.modelslab_v6_url,
        dry_run=settings.dry_run,
        observer=metrics.observe_modelslab,
    )
    workspaces = Workspaces(
        store=store,
        box=box,
        settings=settings,
        modelslab=modelslab,
        ask_team_id=identity,
        user_info=user_info,
        key_wording=key_wording,
    )
    installations: EncryptedInstallationStore | None = None
    cached_authorize: CachedInstallationAuthorize | None = None
    if settings.mode is Mode.OAUTH:
        assert settings.slack_client_id is not None
        installations = build_installation_store(
            client_id=settings.slack_client_id, store=store, box=box
        )
        cached_authorize = CachedInstallationAuthorize(installations)
    tokens = TokenDirectory(
        store=store,
        clients=clients,
        bot_token=token,
        served=lambda: workspaces.single_workspace_id,
        installations=installations,
    )
    workspaces.installations = InstallationTokens(
        installations=installations, authorize=cached_authorize, tokens=tokens
    )
    if installations is not None:
        installations.on_saved.append(tokens.forget_installation)
        if cached_authorize is not None:
            installations.on_saved.append(cached_authorize.forget)
    if role is not Role.TERMINAL:
        if settings.mode is Mode.SINGLE:
            await workspaces.identify(fresh=True)
        else:
            await workspaces.import_environment()
    groups = GroupMembers(lookup=SlackGroupMembers(clients=tokens.fast_client))
    access = AccessPolicy(entries=workspaces.entries, groups=groups)
    renderer = NotificationRenderer(store=store, visible_to=access.visible_users)
    limiter = KeyLimiter()
    reporter = Reporter(
        store=store,
        clients=tokens.reporter_client,
        secret_box=box,
        audit_channel=workspaces.audit_channel,
        session=clients.session,
        renderer=renderer,
    )
    notifier = Notifier(
        store=store,
        workspaces=workspaces,
        clients=tokens.reporter_client,
        renderer=renderer,
        modelslab=modelslab,
        limiter=limiter,
    )
    service = CancellationService(
        store=store,
        client=modelslab,
        keys=workspaces.key_for,
        dry_run=settings.dry_run,
        on_finished=metrics.count_cancellation,
        limiter=limiter,
        # A terminal command delivers its own report (deliver_now): nothing is handed over.
        reports=reporter if role is not Role.TERMINAL else None,
        safety=workspaces.safety,
        access=access,
    )
    single_id = workspaces.single_workspace_id if settings.mode is Mode.SINGLE else None
    audit = AuditTrail(
        store=store,
        audit_token=settings.audit_token,
        single_workspace_id=single_id,
        per_workspace_tokens=settings.mode is Mode.OAUTH,
    )
    deps = Deps(
        audit=audit,
        service=service,
        queries=Queries(store=store, fixed_entries=workspaces.fixed_entries),
        access=access,
        response_urls=reporter.response_urls,
        workspaces=workspaces,
        slack_client=tokens.reporter_client,
        forget_workspace=workspaces.uninstall,
        forget_user_tokens=workspaces.forget_user_tokens,
        notifier=notifier,
        metrics=metrics,
        background=Background(),
        webhook_session=clients.session,
    )
    runtime = Runtime(
        settings=settings,
        store=store,
        role=role,
        clients=clients,
        identity=identity,
        tokens=tokens,
        modelslab=modelslab,
        workspaces=workspaces,
        service=service,
        reporter=reporter,
        notifier=notifier,
        metrics=metrics,
        deps=deps,
        workspace_id=single_id or "(each installed workspace)",
    )
    if role is Role.TERMINAL:
        return runtime
    runtime.probe = OnlineProbe(
        settings=settings,
        clients=clients,
        modelslab=modelslab,
        workspaces=workspaces,
        single_workspace_id=single_id,
    )
    bolt_app: AsyncApp | None = None
    oauth_flow = None
    if role.serves_slack:
        authorize: Any = cached_authorize
        if settings.mode is Mode.SINGLE:
            assert token is not None
            assert identity is not None
            authorize = single_workspace_authorize(_authorize_result(identity, single_id, token))
        else:
            assert installations is not None
            assert settings.slack_client_id is not None
            assert settings.slack_client_secret is not None
            oauth_flow = build_oauth_flow(
                client_id=settings.slack_client_id,
                client_secret=settings.slack_client_secret,
                installations=installations,
                store=store,
                # The code exchange happens in a browser redirect, not before an ack: it may retry.
                client=clients.reporter_for(None),
            )
        bolt_app = create_app(
            deps=deps,
            client=clients.fast,
            authorize=authorize,
            signing_secret=settings.slack_signing_secret,
            oauth_flow=oauth_flow,
        )
    runtime.bolt_app = bolt_app
    runtime.web_app = create_web_app(
        readiness_warnings=runtime.readiness_warnings,
        bolt_app=bolt_app,
        signing_secret=settings.slack_signing_secret if bolt_app is not None else None,
        store=store,
        metrics=metrics,
        metrics_token=settings.metrics_token,
        before_scrape=runtime.before_scrape,
    )
    if role.serves_slack:
        TrainingRoutes(
            settings=settings,
            store=store,
            single_workspace_id=single_id,
            wake=notifier.wake,
            notify_channel=workspaces.notify_channel,
        ).add_routes(runtime.web_app)
        add_audit_routes(runtime.web_app, trail=audit)
        if oauth_flow is not None:
            add_oauth_routes(runtime.web_app, oauth_flow)
        if single_id is not None:
            groups.warm(single_id, [e for e in settings.allowed_entries if e.startswith("S")])
    return runtime


def _authorize_result(
    identity: BotTokenIdentity, team_id: str | None, token: str
) -> AuthorizeResult:
    """Bolt's authorisation for the single workspace: auth.test's answer, or the cached id."""
    if identity.last is not None:
        return AuthorizeResult.from_auth_test_response(
            auth_test_response=identity.last.response, bot_token=token
        )
    return AuthorizeResult(enterprise_id=None, team_id=team_id, bot_token=token)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _start_site(runtime: Runtime, host: str, port: int) -> web.AppRunner:
    assert runtime.web_app is not None
    runner = web.AppRunner(
        runtime.web_app, handle_signals=False, shutdown_timeout=HTTP_SHUTDOWN_SECONDS
    )
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def _start_working(runtime: Runtime) -> None:
    """Start the queue workers when this role runs them (and, on PostgreSQL, their wake-ups)."""
    if runtime.role.works:
        runtime.start_workers()


async def announce(settings: Settings, runtime: Runtime, how: str) -> None:
    """Say at start-up which version and mode are active (design §2), and every warning `check`
    would give: the configuration's, and a served workspace no cancel can succeed in."""
    workspaces = runtime.workspaces
    served = await served_warnings(
        settings,
        store=runtime.store,
        workspaces=workspaces,
        workspace_id=workspaces.single_workspace_id,
    )
    for warning in [*settings.warnings, *served, *_split_warnings(runtime)]:
        logger.warning("%s", warning)
    dry = " DRY RUN: ModelsLab's cancel is never called." if settings.dry_run else ""
    roles = {
        Role.BOTH: "",
        Role.WEB: " (no worker: another process works the queues)",
        Role.WORKER: " (worker only)",
    }
    logger.info(
        "cancel-training bot %s ready: %s mode, workspace %s, %s%s.%s",
        version(),
        settings.mode.value,
        runtime.workspace_id,
        how,
        roles.get(runtime.role, ""),
        dry,
    )


def _split_warnings(runtime: Runtime) -> list[str]:
    """A web or worker process on SQLite: no process wakes another, so work waits for a poll."""
    if runtime.role in (Role.WEB, Role.WORKER) and runtime.store.dialect == "sqlite":
        return [
            "SQLite means one process: a web or worker process is not woken by the others, so "
            "outcomes wait for the next poll (up to 5 s); run plain `serve`/`socket`, or use "
            "PostgreSQL (DATABASE_URL) to split."
        ]
    return []


async def serve(
    settings: Settings, store: Store, *, host: str, port: int, worker: bool = True
) -> None:
    """Serve HTTP until SIGTERM/SIGINT, then shut down gracefully."""
    stop = _stop_event()
    runtime = await build(settings, store, role=Role.BOTH if worker else Role.WEB)
    try:
        runner = await _start_site(runtime, host, port)
        await _start_working(runtime)
        await announce(settings, runtime, f"HTTP on {host}:{port} (POST /slack/events)")
        await stop.wait()
        logger.info("shutting down: no new requests; in-flight work finishes or stays claimed")
        await runner.cleanup()
    finally:
        await runtime.close()


async def work(settings: Settings, store: Store, *, host: str, port: int | None) -> None:
    """Work the queues (and serve /healthz, /metrics when a port is given) until SIGTERM/SIGINT."""
    stop = _stop_event()
    runtime = await build(settings, store, role=Role.WORKER)
    runner: web.AppRunner | None = None
    try:
        if port is not None:
            runner = await _start_site(runtime, host, port)
        await _start_working(runtime)
        routes = f", /healthz and /metrics on {host}:{port}" if port is not None else ""
        await announce(settings, runtime, f"working the queues{routes}")
        await stop.wait()
        logger.info("shutting down: in-flight work finishes or stays claimed")
        if runner is not None:
            await runner.cleanup()
            runner = None
    finally:
        if runner is not None:
            await runner.cleanup()
        await runtime.close()


async def socket(
    settings: Settings, store: Store, *, host: str, port: int | None, worker: bool = True
) -> None:
    """Run Socket Mode (and the HTTP routes when a port is given) until SIGTERM/SIGINT."""
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    stop = _stop_event()
    runtime = await build(settings, store, role=Role.BOTH if worker else Role.WEB)
    runner: web.AppRunner | None = None
    handler: AsyncSocketModeHandler | None = None
    try:
        await verify_app_token(
            app_token=str(settings.slack_app_token),
            base_url=settings.slack_api_url,
            session=runtime.clients.session,
        )
        # Built once the token is known good: it opens an aiohttp session of its own.
        assert runtime.bolt_app is not None
        handler = AsyncSocketModeHandler(runtime.bolt_app, app_token=settings.slack_app_token)
        if port is not None:
            runner = await _start_site(runtime, host, port)
        await _start_working(runtime)
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
