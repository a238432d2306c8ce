"""The collaborators listeners use, carried in Bolt's request context."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.access import AccessPolicy
from bot.cancellation import CancellationService
from bot.reporter import Reporter
from bot.store import Store

DEPS_KEY = "cancel_bot_deps"


@dataclass(frozen=True)
class Deps:
    """Everything a listener may call; handed in by create_app, never imported globally."""

    store: Store
    service: CancellationService
    access: AccessPolicy
    reporter: Reporter
    audit_channel: Callable[[str], Awaitable[str | None]]
    slack_client: Callable[[str], Awaitable[Any]]


def deps_of(context: Any) -> Deps:
    """Return the Deps that create_app put into a request's context."""
    deps = context[DEPS_KEY]
    assert isinstance(deps, Deps)
    return deps
