"""OAuth install (many workspaces): encrypted installation store and cached authorisation."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient

from bot.crypto import SecretBox
from bot.ids import workspace_key
from bot.model import AuditAction, AuditEntry
from bot.slack.clients import SlackClients
from bot.store import Store

logger = logging.getLogger(__name__)

# Exactly the manifest's bot scopes (tests/unit/test_manifest.py keeps them equal).
BOT_SCOPES = (
    "commands",
    "chat:write",
    "chat:write.public",
    "usergroups:read",
    "users:read",
    "channels:history",
    "groups:history",
)
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
_INSTALLATION_SECRETS = (
    "bot_token",
    "bot_refresh_token",
    "user_token",
    "user_refresh_token",
    "incoming_webhook_url",
)
_BOT_SECRETS = ("bot_token", "bot_refresh_token")


class EncryptedInstallationStore(AsyncInstallationStore):
    """slack_sdk's SQLAlchemy installation store with every token field encrypted at rest."""

    def __init__(
        self, inner: AsyncSQLAlchemyInstallationStore, box: SecretBox, store: Store
    ) -> None:
        self.inner = inner
        self.box = box
        self.store = store
        # Called with (enterprise_id, team_id) after an install, so caches drop old tokens.
        self.on_saved: list[Callable[[str | None, str | None], None]] = []

    @property
    def logger(self) -> logging.Logger:
        """The inner store's logger."""
        return self.inner.logger

    def _seal(self, obj: Any, fields: tuple[str, ...]) -> Any:
        sealed = copy.copy(obj)
        for name in fields:
            value = getattr(sealed, name, None)
            if value:
                setattr(sealed, name, self.box.encrypt(value))
        return sealed

    def _open(self, obj: Any, fields: tuple[str, ...]) -> Any:
        if obj is None:
            return None
        for name in fields:
            value = getattr(obj, name, None)
            if value:
                setattr(obj, name, self.box.decrypt(value))
        return obj

    async def async_save(self, installation: Installation) -> None:
        """Save an installation (tokens encrypted) and mark the workspace installed."""
        await self.inner.async_save(self._seal(installation, _INSTALLATION_SECRETS))
        workspace_id = workspace_key(installation.enterprise_id, installation.team_id)
        await self.store.workspaces.ensure(
            workspace_id,
            enterprise_id=installation.enterprise_id,
            name=installation.team_name or installation.enterprise_name,
            installed=True,
            audit=AuditEntry(workspace_id, installation.user_id or "slack", AuditAction.INSTALLED),
        )
        for hook in self.on_saved:
            hook(installation.enterprise_id, installation.team_id)

    async def async_save_bot(self, bot: Bot) -> None:
        """Save a bot installation with its tokens encrypted."""
        await self.inner.async_save_bot(self._seal(bot, _BOT_SECRETS))

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        """Find a bot installation and decrypt its tokens."""
        bot = await self.inner.async_find_bot(
            enterprise_id=enterprise_id,
            team_id=team_id,
            is_enterprise_install=is_enterprise_install,
        )
        return self._open(bot, _BOT_SECRETS)  # type: ignore[no-any-return]

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        """Find an installation and decrypt its tokens."""
        installation = await self.inner.async_find_installation(
            enterprise_id=enterprise_id,
            team_id=team_id,
            user_id=user_id,
            is_enterprise_install=is_enterprise_install,
        )
        return self._open(installation, _INSTALLATION_SECRETS)  # type: ignore[no-any-return]

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Delete a workspace's bot installations."""
        await self.inner.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        """Delete a workspace's installations (or one user's)."""
        await self.inner.async_delete_installation(
            enterprise_id=enterprise_id, team_id=team_id, user_id=user_id
        )


class CachedInstallationAuthorize(AsyncAuthorize):
    """Bolt `authorize`: the workspace's bot installation, cached; no auth.test per request."""

    def __init__(self, installations: EncryptedInstallationStore, *, ttl: float = 600.0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.installations = installations
        self.ttl = ttl
        self._cache: dict[tuple[str | None, str | None], tuple[AuthorizeResult, float]] = {}

    async def __call__(
        self,
        *,
        context: Any,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult | None:
        """Return the bot token and ids for the request's workspace."""
        return await self.lookup(enterprise_id, team_id, context)

    async def lookup(
        self, enterprise_id: str | None, team_id: str | None, context: Any
    ) -> AuthorizeResult | None:
        """Return the bot token and ids for the request's workspace."""
        org_wide = bool(context.get("is_enterprise_install")) if context is not None else False
        key = (enterprise_id, None if org_wide else team_id)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[1] < self.ttl:
            return cached[0]
        bot = await self.installations.async_find_bot(
            enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=org_wide
        )
        if bot is None:
            return None
        result = AuthorizeResult(
            enterprise_id=bot.enterprise_id,
            team_id=bot.team_id,
            bot_token=bot.bot_token,
            bot_id=bot.bot_id,
            bot_user_id=bot.bot_user_id,
            bot_scopes=bot.bot_scopes,
        )
        self._cache[key] = (result, time.monotonic())
        return result

    def forget(self, enterprise_id: str | None, team_id: str | None) -> None:
        """Drop cached authorisations of a workspace (uninstall, revocation)."""
        for key in [
            k for k in self._cache if k[1] == team_id or (team_id is None and k[0] == enterprise_id)
        ]:
            del self._cache[key]


def build_installation_store(
    *, client_id: str, store: Store, box: SecretBox
) -> EncryptedInstallationStore:
    """Return slack_sdk's SQLAlchemy installation store on our engine, wrapped for encryption."""
    inner = AsyncSQLAlchemyInstallationStore(client_id=client_id, engine=store.engine)
    return EncryptedInstallationStore(inner, box, store)


def build_oauth_flow(
    *,
    client_id: str,
    client_secret: str,
    installations: EncryptedInstallationStore,
    store: Store,
    client: AsyncWebClient,
) -> AsyncOAuthFlow:
    """Return Bolt's OAuth flow with our stores, paths and Slack API URL."""
    settings = AsyncOAuthSettings(
        client_id=client_id,
        client_secret=client_secret,
        scopes=list(BOT_SCOPES),
        user_scopes=[],
        installation_store=installations,
        installation_store_bot_only=True,
        state_store=AsyncSQLAlchemyOAuthStateStore(expiration_seconds=600, engine=store.engine),
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        install_page_rendering_enabled=True,
    )
    return AsyncOAuthFlow(client=client, settings=settings)


TOKEN_CACHE_SECONDS = 600.0


class TokenDirectory:
    """Bot tokens per workspace: the configured one (single) or the installation's (OAuth), cached."""

    def __init__(
        self,
        *,
        store: Store,
        clients: SlackClients,
        bot_token: str | None,
        served: Callable[[], str | None],
        installations: EncryptedInstallationStore | None,
    ) -> None:
        self.store = store
        self.clients = clients
        self.bot_token = bot_token
        self.served = served
        self.installations = installations
        self._cache: dict[str, tuple[str, float]] = {}

    async def token_for(self, workspace_id: str) -> str | None:
        """Return the workspace's bot token, or None when it is not installed."""
        if self.installations is None:
            return self.bot_token if workspace_id == self.served() else None
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

    def forget_installation(self, enterprise_id: str | None, team_id: str | None) -> None:
        """Drop the cached token of an installation that was just saved (reinstalled)."""
        self.forget(workspace_key(enterprise_id, team_id))

    async def reporter_client(self, workspace_id: str) -> Any:
        """The reporter's (retrying) Slack client for a workspace; None when it is not installed."""
        token = await self.token_for(workspace_id)
        return self.clients.reporter_for(token) if token else None

    async def fast_client(self, workspace_id: str) -> Any:
        """The pre-ack Slack client for a workspace; None when it is not installed."""
        token = await self.token_for(workspace_id)
        return self.clients.fast_for(token) if token else None


class InstallationTokens:
    """Slack's side of an uninstall: the installation's stored tokens and every cached copy."""

    def __init__(
        self,
        *,
        installations: EncryptedInstallationStore | None,
        authorize: CachedInstallationAuthorize | None,
        tokens: TokenDirectory,
    ) -> None:
        self.installations = installations
        self.authorize = authorize
        self.tokens = tokens

    async def forget_workspace(self, enterprise_id: str | None, team_id: str | None) -> None:
        """Delete the workspace's installation and bot tokens; drop the cached ones."""
        if self.installations is not None:
            await self.installations.async_delete_installation(
                enterprise_id=enterprise_id, team_id=team_id
            )
            await self.installations.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)
        if self.authorize is not None:
            self.authorize.forget(enterprise_id, team_id)
        self.tokens.forget_installation(enterprise_id, team_id)

    async def forget_user_tokens(
        self, enterprise_id: str | None, team_id: str | None, users: list[str]
    ) -> None:
        """Delete the user tokens of these users (tokens_revoked for user tokens only)."""
        if self.installations is None:
            return
        for user_id in users:
            await self.installations.async_delete_installation(
                enterprise_id=enterprise_id, team_id=team_id, user_id=user_id
            )
