"""Per-workspace settings: the stored ModelsLab key, allow-list, channels, webhook token, admins.

Single-workspace mode adds the operator's environment (MODELSLAB_API_KEY, CANCEL_ALLOWED_USERS,
AUDIT_CHANNEL, NOTIFY_CHANNEL, MODELSLAB_WEBHOOK_TOKEN) for the one workspace; OAuth mode uses
only what each workspace stored.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from bot.cache import TtlCache
from bot.config import Mode, Settings, allow_list_warning, key_warning
from bot.crypto import SecretBox
from bot.errors import BotError, InvalidKey, InvalidSetting, SlackUnreachable
from bot.ids import workspace_key
from bot.model import AuditAction, AuditEntry, Safety
from bot.modelslab import ModelsLabClient
from bot.store import Store

logger = logging.getLogger("bot")

TEAM_ID_META = "single_workspace_team_id"
ENV_IMPORTED_META = "env_imported_into"
ADMIN_CACHE_SECONDS = 300.0
# How long this instance trusts its copy of a workspace's settings (key, allow-list, channels). A change made
# through this instance applies at once; one made elsewhere (another instance, the CLI) within this.
SETTINGS_CACHE_SECONDS = 5.0


# Asks Slack which workspace SLACK_BOT_TOKEN belongs to; raises ConfigError (refused) or
# SlackUnreachable (bot.slack.identity.BotTokenIdentity).
AskTeamId = Callable[[], Awaitable[str]]
# users.info for one user with a request's client; None when Slack could not say.
UserInfo = Callable[[Any, str], Awaitable[Mapping[str, Any] | None]]


class InstallationTokens(Protocol):
    """Slack's side of an uninstall (bot.slack.oauth.InstallationTokens)."""

    async def forget_workspace(self, enterprise_id: str | None, team_id: str | None) -> None:
        """Delete the workspace's installation tokens and every cached copy."""

    async def forget_user_tokens(
        self, enterprise_id: str | None, team_id: str | None, users: list[str]
    ) -> None:
        """Delete these users' tokens."""


@dataclass(frozen=True)
class KeyState:
    """What may be said about a workspace's key: who set it, when, its last four characters."""

    stored: bool
    hint: str | None = None
    set_at: float | None = None
    set_by: str | None = None  # "cli:…" when set from a terminal
    from_environment: bool = False


MAX_UNDO_SECONDS = 300
MAX_APPROVAL_MINUTES = 24 * 60


def hash_token(token: str) -> str:
    """Return the lookup hash of a webhook token (the token itself is stored encrypted)."""
    return hashlib.sha256(token.encode()).hexdigest()


class Workspaces:
    """Reads and changes one workspace's settings, always keyed by its id."""

    def __init__(
        self,
        *,
        store: Store,
        box: SecretBox,
        settings: Settings,
        modelslab: ModelsLabClient | None = None,
        single_workspace_id: str | None = None,
        ask_team_id: AskTeamId | None = None,
        user_info: UserInfo | None = None,
        installations: InstallationTokens | None = None,
        key_wording: Callable[[KeyState], str] | None = None,
    ) -> None:
        self.store = store
        self.box = box
        self.settings = settings
        self.modelslab = modelslab
        self.single_workspace_id = single_workspace_id
        self.ask_team_id = ask_team_id
        self.user_info = user_info
        self.installations = installations
        self.key_wording = key_wording
        self._admins: dict[tuple[str, str], tuple[bool, float]] = {}
        # No row means the defaults (single-workspace mode may never write one): kept like a row,
        # or every claim and report would read the table for the same answer.
        self._rows = TtlCache(store.workspaces.get, ttl=SETTINGS_CACHE_SECONDS, keep_none=True)
        self._keys = TtlCache(self._load_key, ttl=SETTINGS_CACHE_SECONDS)
        self._entries = TtlCache(self._load_entries, ttl=SETTINGS_CACHE_SECONDS)

    def forget_cached(self, workspace_id: str) -> None:
        """Drop this instance's copy of a workspace's settings (after a change)."""
        self._rows.forget(workspace_id)
        self._keys.forget(workspace_id)
        self._entries.forget(workspace_id)

    def serve(self, workspace_id: str | None) -> None:
        """Single workspace: say which workspace the environment's key and allow-list are for."""
        if workspace_id != self.single_workspace_id:
            self.single_workspace_id = workspace_id
            self._rows.clear()
            self._keys.clear()
            self._entries.clear()

    def _is_env_workspace(self, workspace_id: str) -> bool:
        return self.settings.mode is Mode.SINGLE and workspace_id == self.single_workspace_id

    # -- keys -----------------------------------------------------------------------------------

    async def key_for(self, workspace_id: str) -> str | None:
        """Return the workspace's ModelsLab key: stored, else (single workspace) MODELSLAB_API_KEY."""
        return await self._keys.get(workspace_id)

    async def _load_key(self, workspace_id: str) -> str | None:
        row = await self.store.workspaces.get(workspace_id)
        if row is not None and row.key_ciphertext and self.box.enabled:
            return self.box.decrypt(row.key_ciphertext)
        if self._is_env_workspace(workspace_id) or (
            self.settings.mode is Mode.SINGLE and self.single_workspace_id is None
        ):
            return self.settings.modelslab_api_key
        return None

    async def set_key(self, workspace_id: str, key: str, *, by: str, check: bool = True) -> str:
        """Check a key with ModelsLab (no side effects, unless not `check`), store it encrypted;
        return its hint."""
        key = key.strip()
        if not key or any(ch.isspace() for ch in key):
            raise InvalidKey("a ModelsLab API key is one word with no spaces")
        ciphertext = self.box.encrypt(key)  # raises SecretStorageDisabled before anything else
        if check and self.modelslab is not None:
            checked = await self.modelslab.check_key(key)
            if not checked.ok:
                if checked.definitive:
                    raise InvalidKey(f"ModelsLab refused the key: {checked.reason}")
                raise InvalidKey(f"the key could not be checked now ({checked.reason}); try again")
        hint = key[-4:]
        await self.store.workspaces.update(
            workspace_id,
            key_ciphertext=ciphertext,
            key_hint=hint,
            key_set_at=time.time(),
            key_set_by=by,
            audit=AuditEntry(workspace_id, by, AuditAction.KEY_SET, detail=f"key ending …{hint}"),
        )
        self.forget_cached(workspace_id)
        return hint

    async def remove_key(self, workspace_id: str, *, by: str) -> None:
        """Delete the workspace's stored key."""
        await self.store.workspaces.update(
            workspace_id,
            key_ciphertext=None,
            key_hint=None,
            key_set_at=None,
            key_set_by=None,
            audit=AuditEntry(workspace_id, by, AuditAction.KEY_REMOVED),
        )
        self.forget_cached(workspace_id)

    # -- allow-lists ------------------------------------------------------------------------------

    def fixed_entries(self, workspace_id: str) -> tuple[str, ...]:
        """The operator's CANCEL_ALLOWED_USERS entries (single workspace), always in force."""
        return self.settings.allowed_entries if self._is_env_workspace(workspace_id) else ()

    async def entries(self, workspace_id: str) -> Sequence[str] | None:
        """Return who may cancel in a workspace, or None when this deployment does not serve it."""
        return await self._entries.get(workspace_id)

    async def _load_entries(self, workspace_id: str) -> Sequence[str] | None:
        if self.settings.mode is Mode.SINGLE:
            if workspace_id != self.single_workspace_id:
                return None
            return (
                *self.settings.allowed_entries,
                *await self.store.workspaces.allow_list(workspace_id),
            )
        row = await self.store.workspaces.get(workspace_id)
        if row is None or not row.installed:
            return None
        return await self.store.workspaces.allow_list(workspace_id)

    async def allow(self, workspace_id: str, entries: Sequence[str], *, by: str) -> list[str]:
        """Add users/groups to the stored allow-list (the store audits the change)."""
        added = await self.store.workspaces.allow(workspace_id, list(entries), by=by)
        self.forget_cached(workspace_id)
        return added

    async def deny(self, workspace_id: str, entries: Sequence[str], *, by: str) -> list[str]:
        """Remove users/groups from the stored allow-list (the store audits the change)."""
        removed = await self.store.workspaces.deny(workspace_id, list(entries), by=by)
        self.forget_cached(workspace_id)
        return removed

    # -- safe cancel: undo window and two-person rule ---------------------------------------------

    async def safety(self, workspace_id: str) -> Safety:
        """Return the workspace's undo window and two-person rule (both off by default)."""
        row = await self._rows.get(workspace_id)
        if row is None:
            return Safety()
        return Safety(row.undo_seconds, row.two_person, row.approval_seconds)

    async def set_safety(
        self,
        workspace_id: str,
        *,
        by: str,
        undo_seconds: int | None = None,
        two_person: bool | None = None,
        approval_minutes: int | None = None,
    ) -> Safety:
        """Change the undo window and/or the two-person rule and record the change."""
        values: dict[str, object] = {}
        if undo_seconds is not None:
            if not 0 <= undo_seconds <= MAX_UNDO_SECONDS:
                raise InvalidSetting(f"the undo window is 0 (off) to {MAX_UNDO_SECONDS} seconds")
            values["undo_seconds"] = undo_seconds
        if two_person is not None:
            values["two_person"] = two_person
        if approval_minutes is not None:
            if not 1 <= approval_minutes <= MAX_APPROVAL_MINUTES:
                raise InvalidSetting(f"the approval time is 1 to {MAX_APPROVAL_MINUTES} minutes")
            values["approval_seconds"] = approval_minutes * 60
        if values:
            detail = ", ".join(f"{k}={v}" for k, v in values.items())
            await self.store.workspaces.update(
                workspace_id,
                audit=AuditEntry(workspace_id, by, AuditAction.POLICY_SET, detail=detail),
                **values,
            )
            self.forget_cached(workspace_id)
        return await self.safety(workspace_id)

    # -- channels and webhook tokens -----------------------------------------------------------

    async def audit_channel(self, workspace_id: str) -> str | None:
        """Return the channel that receives every outcome and refusal, if any."""
        row = await self._rows.get(workspace_id)
        if row is not None and row.audit_channel:
            return row.audit_channel
        return self.settings.audit_channel if self._is_env_workspace(workspace_id) else None

    async def notify_channel(self, workspace_id: str) -> str | None:
        """Return the channel for notifications from webhooks and /notify."""
        row = await self._rows.get(workspace_id)
        if row is not None and row.notify_channel:
            return row.notify_channel
        return self.settings.notify_channel if self._is_env_workspace(workspace_id) else None

    async def set_channel(
        self, workspace_id: str, *, audit: bool, channel: str | None, by: str
    ) -> None:
        """Store the audit or notification channel and record the change."""
        column, action = (
            ("audit_channel", AuditAction.AUDIT_CHANNEL_SET)
            if audit
            else ("notify_channel", AuditAction.NOTIFY_CHANNEL_SET)
        )
        await self.store.workspaces.update(
            workspace_id,
            audit=AuditEntry(workspace_id, by, action, detail=str(channel)),
            **{column: channel},
        )
        self.forget_cached(workspace_id)

    async def webhook_token(self, workspace_id: str) -> str | None:
        """Return the workspace's webhook token (OAuth: its own; single: MODELSLAB_WEBHOOK_TOKEN)."""
        row = await self._rows.get(workspace_id)
        if row is not None and row.webhook_token_ciphertext and self.box.enabled:
            return self.box.decrypt(row.webhook_token_ciphertext)
        return self.settings.webhook_token if self._is_env_workspace(workspace_id) else None

    async def rotate_webhook_token(self, workspace_id: str, *, by: str) -> str:
        """Issue a new unguessable webhook token; the old one stops working at once."""
        token = secrets.token_urlsafe(24)
        await self.store.workspaces.update(
            workspace_id,
            webhook_token_hash=hash_token(token),
            webhook_token_ciphertext=self.box.encrypt(token),
            audit=AuditEntry(workspace_id, by, AuditAction.WEBHOOK_TOKEN_ROTATED),
        )
        self.forget_cached(workspace_id)
        return token

    async def rotate_audit_token(self, workspace_id: str, *, by: str) -> str:
        """Issue a new GET /audit token (stored only as its hash: shown once); the old one stops."""
        token = secrets.token_urlsafe(32)
        await self.store.workspaces.update(
            workspace_id,
            audit_token_hash=hash_token(token),
            audit=AuditEntry(workspace_id, by, AuditAction.AUDIT_TOKEN_ROTATED),
        )
        self.forget_cached(workspace_id)
        return token

    # -- admins -----------------------------------------------------------------------------------

    async def is_admin(self, workspace_id: str, user_id: str, client: Any) -> bool:
        """BOT_ADMINS, or a workspace admin/owner according to users.info (cached a few minutes)."""
        if user_id in self.settings.bot_admins:
            return True
        key = (workspace_id, user_id)
        cached = self._admins.get(key)
        if cached is not None and time.monotonic() - cached[1] < ADMIN_CACHE_SECONDS:
            return cached[0]
        response = await self.user_info(client, user_id) if self.user_info else None
        if response is None:
            return False
        user = response.get("user") or {}
        admin = (
            bool(user.get("is_admin") or user.get("is_owner"))
            and user.get("team_id", workspace_id) == workspace_id
        )
        self._admins[key] = (admin, time.monotonic())
        return admin

    async def key_state(self, workspace_id: str) -> KeyState:
        """Whether a key is set, by whom and when, and its last four characters — never more."""
        row = await self.store.workspaces.get(workspace_id)
        if row is not None and row.key_ciphertext:
            return KeyState(
                stored=True, hint=row.key_hint, set_at=row.key_set_at, set_by=row.key_set_by
            )
        env = self._is_env_workspace(workspace_id) and bool(self.settings.modelslab_api_key)
        return KeyState(stored=False, from_environment=env)

    async def describe_key(self, workspace_id: str) -> str:
        """The key's state in the words the surface that built this service uses."""
        if self.key_wording is None:
            raise BotError("no wording for the key's state was given to Workspaces")
        return self.key_wording(await self.key_state(workspace_id))

    # -- identity, uninstall, the one-time import ----------------------------------------------

    async def identify(self, *, fresh: bool, required: bool = True) -> str | None:
        """Single workspace: the id of SLACK_BOT_TOKEN's workspace (auth.test), cached in the store
        so the terminal and Slack agree; the bot now serves it.

        `fresh` (a start): ask Slack first, fall back to the cached id when it cannot be reached.
        Otherwise (a terminal command): the cached id first; None when it cannot be known now and
        not `required`.
        """
        cached = await self.store.meta.get(TEAM_ID_META)
        if (not fresh and cached is not None) or self.ask_team_id is None:
            self.serve(cached)
            return cached
        try:
            team = await self.ask_team_id()
        except SlackUnreachable as exc:
            if fresh and cached is not None:
                logger.warning(
                    "Slack unreachable at start-up; using the cached workspace %s", cached
                )
                self.serve(cached)
                return cached
            if fresh:
                raise BotError(
                    f"Slack could not be reached to identify the workspace ({exc.cause_name}); "
                    "check the network and SLACK_API_URL"
                ) from exc
            if not required:
                return None
            raise BotError(
                f"Slack could not be reached to learn which workspace SLACK_BOT_TOKEN belongs to "
                f"({exc.cause_name}); pass --team T…"
            ) from exc
        await self.store.meta.set(TEAM_ID_META, team)
        self.serve(team)
        return team

    async def uninstall(self, enterprise_id: str | None, team_id: str | None) -> None:
        """Forget a workspace: its tokens, key, allow-list and settings (app_uninstalled)."""
        workspace_id = workspace_key(enterprise_id, team_id)
        if self.installations is not None:
            await self.installations.forget_workspace(enterprise_id, team_id)
        await self.store.workspaces.forget(workspace_id)
        self.forget_cached(workspace_id)
        logger.info(
            "workspace %s uninstalled: tokens, key, allow-list and settings deleted", workspace_id
        )

    async def forget_user_tokens(
        self, enterprise_id: str | None, team_id: str | None, users: list[str]
    ) -> None:
        """Forget users' tokens (tokens_revoked for user tokens only)."""
        if self.installations is not None:
            await self.installations.forget_user_tokens(enterprise_id, team_id, users)

    async def import_environment(self) -> None:
        """Once, move a single-workspace deployment's env key and allow-list into that workspace."""
        store, settings = self.store, self.settings
        target = await store.meta.get(TEAM_ID_META)
        if target is None or await store.meta.get(ENV_IMPORTED_META) is not None:
            return
        if settings.modelslab_api_key and self.box.enabled:
            row = await store.workspaces.get(target)
            if row is None or not row.key_ciphertext:
                key = settings.modelslab_api_key
                await store.workspaces.update(
                    target,
                    key_ciphertext=self.box.encrypt(key),
                    key_hint=key[-4:],
                    key_set_at=time.time(),
                    key_set_by="cli:import",
                    audit=AuditEntry(
                        target, "cli:import", AuditAction.KEY_SET, f"key ending …{key[-4:]}"
                    ),
                )
        if settings.allowed_entries:
            await store.workspaces.allow(target, list(settings.allowed_entries), by="cli:import")
        await store.workspaces.record_admin_event(
            target, actor="cli:import", action="import_env", detail="key and allow-list"
        )
        await store.meta.set(ENV_IMPORTED_META, target)
        self.forget_cached(target)
        logger.info(
            "imported MODELSLAB_API_KEY and CANCEL_ALLOWED_USERS into workspace %s (once)", target
        )


async def served_warnings(
    settings: Settings,
    *,
    store: Store | None,
    workspaces: Workspaces | None,
    workspace_id: str | None,
) -> list[str]:
    """What lets the bot start but makes every cancel fail: no ModelsLab key, nobody allowed.

    Said by `check`, at start-up and in /readyz. Single workspace: the served workspace (its
    stored key and list, plus the environment's); OAuth: every installed workspace.
    """
    if settings.mode is Mode.OAUTH:
        rows = [(ws, n) for ws, n in await store.workspaces.all() if ws.installed] if store else []
        no_key = [ws.workspace_id for ws, _ in rows if not ws.key_ciphertext]
        nobody = [ws.workspace_id for ws, allowed in rows if not allowed]
        lacks_key, lacks_people = bool(no_key), bool(nobody)
    else:
        no_key = nobody = [workspace_id] if workspace_id else []
        if workspaces is not None and workspace_id is not None:
            lacks_key = not await workspaces.key_for(workspace_id)
            lacks_people = not await workspaces.entries(workspace_id)
        else:  # nothing stored yet: only the environment can say
            lacks_key = not settings.modelslab_api_key
            lacks_people = not settings.allowed_entries
    warnings = []
    if lacks_key and not settings.dry_run:  # a dry run never calls ModelsLab: no key is needed
        warnings.append(key_warning(*no_key))
    if lacks_people:
        warnings.append(allow_list_warning(*nobody))
    return warnings
