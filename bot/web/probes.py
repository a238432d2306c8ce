"""Health, readiness and metrics routes, and the online probe behind /readyz's warnings."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import version
from bot.config import Settings
from bot.errors import StoreUnavailable
from bot.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.metrics import Metrics
from bot.modelslab import ModelsLabClient
from bot.service.workspaces import Workspaces
from bot.slack.clients import SlackClients
from bot.store import Store

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[list[str]]]


def add_probe_routes(
    app: web.Application,
    *,
    store: Store,
    readiness_warnings: ReadinessCheck | None,
    metrics: Metrics | None,
    metrics_token: str | None,
    before_scrape: Callable[[], Awaitable[None]] | None,
) -> None:
    """Add /healthz, /readyz and /metrics to the application."""

    async def handle_healthz(_: web.Request) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def handle_readyz(_: web.Request) -> web.StreamResponse:
        try:
            await store.ping()
        except StoreUnavailable as exc:
            return web.json_response(
                {"status": "unavailable", "version": version(), "problems": [str(exc)]}, status=503
            )
        warnings = await readiness_warnings() if readiness_warnings else []
        return web.json_response({"status": "ready", "version": version(), "warnings": warnings})

    async def handle_metrics(request: web.Request) -> web.StreamResponse:
        if metrics is None or not metrics_token:
            raise web.HTTPNotFound(text="metrics are off (set METRICS_TOKEN)")
        auth = request.headers.get("Authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), metrics_token.encode()):
            raise web.HTTPUnauthorized(text="a valid bearer token (METRICS_TOKEN) is required")
        if before_scrape is not None:
            with contextlib.suppress(StoreUnavailable):
                await before_scrape()
        return web.Response(body=metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
    app.router.add_get("/metrics", handle_metrics)


class OnlineProbe:
    """Checks Slack and ModelsLab when /readyz asks (at most once a minute); lists what fails."""

    def __init__(
        self,
        *,
        settings: Settings,
        clients: SlackClients,
        modelslab: ModelsLabClient,
        workspaces: Workspaces,
        single_workspace_id: str | None,
        interval: float = 60.0,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.modelslab = modelslab
        self.workspaces = workspaces
        self.single_workspace_id = single_workspace_id
        self.interval = interval
        self.warnings: list[str] = []
        self._checked_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    async def probe(self) -> list[str]:
        """Run the online checks once; return the problems found."""
        problems: list[str] = []
        if self.settings.slack_bot_token:
            try:
                await self.clients.fast_for(self.settings.slack_bot_token).auth_test()
            except SlackApiError as exc:
                problems.append(f"Slack refused the bot token ({exc.response.get('error')})")
            except (SlackClientError, OSError, asyncio.TimeoutError) as exc:
                problems.append(f"Slack is not reachable ({type(exc).__name__})")
        if self.single_workspace_id is not None and not self.settings.dry_run:
            key = await self.workspaces.key_for(self.single_workspace_id)
            if key:
                check = await self.modelslab.check_key(key)
                if not check.ok:
                    problems.append(f"ModelsLab: {check.reason}")
        return problems

    async def _refresh(self) -> None:
        try:
            self.warnings = await self.probe()
        except Exception:
            logger.exception("online probe failed")
        self._checked_at = time.monotonic()

    async def warnings_now(self) -> list[str]:
        """The latest warnings (for /readyz); probes lazily, at most once per interval."""
        stale = self._checked_at is None or time.monotonic() - self._checked_at > self.interval
        if stale and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._refresh(), name="online-probe")
        if self._checked_at is None and self._task is not None:
            # The first answer waits briefly for the first probe; later ones never wait.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout=3.0)
        return list(self.warnings)

    async def stop(self) -> None:
        """Stop a probe in progress."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
