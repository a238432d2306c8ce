"""The collaborators listeners use, carried in Bolt's request context."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bot.background import Background
from bot.metrics import Metrics
from bot.service.access import AccessPolicy
from bot.service.audit import AuditTrail
from bot.service.cancellation import CancellationService
from bot.service.queries import Queries
from bot.service.workspaces import Workspaces
from bot.slack.delivery.notifier import Notifier
from bot.slack.delivery.response_urls import ResponseUrls

DEPS_KEY = "cancel_bot_deps"
RECEIVED_AT = "cancel_bot_received_at"  # time.monotonic() when the web layer got the request


@dataclass(frozen=True)
class Deps:
    """Everything a listener may call; handed in by create_app, never imported globally."""

    service: CancellationService
    # Every store look-up a listener makes (listeners never touch the store themselves).
    queries: Queries
    access: AccessPolicy
    # Custody of the requester's response_url (sealed for the store, or kept in memory).
    response_urls: ResponseUrls
    workspaces: Workspaces
    # The reporter's (retrying) Slack client for a workspace, None when it is not installed.
    slack_client: Callable[[str], Awaitable[Any]]
    # Forget a workspace: tokens, key, allow-list, settings (uninstall / token revocation).
    forget_workspace: Callable[[str | None, str | None], Awaitable[None]]
    # Forget one user's tokens (tokens_revoked for user tokens only).
    forget_user_tokens: Callable[[str | None, str | None, list[str]], Awaitable[None]]
    notifier: Notifier
    metrics: Metrics
    # Work listeners go on with after their ack.
    background: Background
    # respond() posts on this pooled session.
    webhook_session: aiohttp.ClientSession
    # The audit log: history, refusals, App Home's latest entries and token.
    audit: AuditTrail


def received_at(context: Any) -> float:
    """When the request arrived (Socket Mode: when the listener started)."""
    value = context.get(RECEIVED_AT) if context is not None else None
    return float(value) if isinstance(value, (int, float)) else time.monotonic()


def deps_of(context: Any) -> Deps:
    """Return the Deps that create_app put into a request's context."""
    deps = context[DEPS_KEY]
    assert isinstance(deps, Deps)
    return deps
