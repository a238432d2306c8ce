"""Workspaces caches each workspace's key, allow-list and channels for a few seconds.

A change made through an instance applies on that instance at once; one made elsewhere (another
instance of the bot, the admin CLI) is seen once the cache's time is up. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.config import Settings
from bot.service import workspaces as workspaces_module
from bot.service.workspaces import Workspaces
from bot.store import Store
from tests.fakes.modelslab import FakeModelsLab
from tests.integration.test_workspaces import ALICE, BOB, DAVE, TEAM, settings_for, workspaces


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until an asynchronous condition holds (a condition, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def single(modelslab: FakeModelsLab, database_url: str) -> Settings:
    return settings_for(modelslab, database_url, CANCEL_ALLOWED_USERS=ALICE)


def oauth(modelslab: FakeModelsLab, database_url: str) -> Settings:
    return settings_for(
        modelslab,
        database_url,
        SLACK_CLIENT_ID="111.222",
        SLACK_CLIENT_SECRET="sec",
        BOT_ENCRYPTION_KEY=Fernet.generate_key().decode(),
    )


def count_calls(monkeypatch: pytest.MonkeyPatch, family: object, method: str) -> list[Any]:
    """Count how often a store read runs (the database round trips the cache saves)."""
    calls: list[Any] = []
    real = getattr(family, method)

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(family, method, counted)
    return calls


async def test_repeated_reads_within_the_cache_time_do_not_hit_the_store(
    store: Store, modelslab: FakeModelsLab, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = count_calls(monkeypatch, store.workspaces, "allow_list")
    ws = workspaces(store, single(modelslab, database_url), None, single_id=TEAM)
    for _ in range(5):
        assert list(await ws.entries(TEAM) or ()) == [ALICE]
    assert len(reads) == 1


async def test_a_change_through_this_instance_applies_at_once(
    store: Store, modelslab: FakeModelsLab, database_url: str
) -> None:
    ws = workspaces(store, single(modelslab, database_url), None, single_id=TEAM)
    assert await ws.allow(TEAM, [DAVE], by=BOB) == [DAVE]
    assert DAVE in (await ws.entries(TEAM) or ())  # cached now, with DAVE
    assert await ws.deny(TEAM, [DAVE], by=BOB) == [DAVE]
    # Removed means refused from the next click on, not in five seconds.
    assert DAVE not in (await ws.entries(TEAM) or ())
    await ws.allow(TEAM, [DAVE], by=BOB)
    assert DAVE in (await ws.entries(TEAM) or ())


async def test_a_key_change_through_this_instance_applies_at_once(
    store: Store, modelslab: FakeModelsLab, database_url: str
) -> None:
    await store.workspaces.ensure(TEAM, installed=True)
    ws = workspaces(store, oauth(modelslab, database_url), None)
    assert await ws.key_for(TEAM) is None
    await ws.set_key(TEAM, "ml-first-key-0001", by=ALICE)
    assert await ws.key_for(TEAM) == "ml-first-key-0001"
    await ws.set_key(TEAM, "ml-second-key-0002", by=ALICE)
    assert await ws.key_for(TEAM) == "ml-second-key-0002"
    await ws.remove_key(TEAM, by=ALICE)
    assert await ws.key_for(TEAM) is None


async def test_a_newly_installed_workspace_is_served_at_once(
    store: Store, modelslab: FakeModelsLab, database_url: str
) -> None:
    ws = workspaces(store, oauth(modelslab, database_url), None)
    # Not served yet: that answer is not cached, so the installation is not hidden for seconds.
    assert await ws.entries(TEAM) is None
    await store.workspaces.ensure(TEAM, installed=True)
    await store.workspaces.allow(TEAM, [DAVE], by="cli:ops")
    assert list(await ws.entries(TEAM) or ()) == [DAVE]


async def test_a_change_through_another_instance_is_seen_after_the_cache_time(
    store: Store, modelslab: FakeModelsLab, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workspaces_module, "SETTINGS_CACHE_SECONDS", 0.05)
    settings = single(modelslab, database_url)
    serving: Workspaces = workspaces(store, settings, None, single_id=TEAM)
    admin: Workspaces = workspaces(store, settings, None, single_id=TEAM)  # e.g. the CLI
    await admin.allow(TEAM, [DAVE], by="cli:ops")
    assert DAVE in (await serving.entries(TEAM) or ())
    await admin.deny(TEAM, [DAVE], by="cli:ops")
    # Until the cache time is up, `serving` may still answer from its copy (and let DAVE
    # cancel): that staleness is the price of not reading the store on every click, so this
    # test does not assert either way before then. After it, the change must show.

    async def dave_removed() -> bool:
        return DAVE not in (await serving.entries(TEAM) or ())

    await until(dave_removed)
    await admin.allow(TEAM, [BOB], by="cli:ops")

    async def bob_added() -> bool:
        return BOB in (await serving.entries(TEAM) or ())

    await until(bob_added)


async def test_a_channel_set_elsewhere_is_seen_after_the_cache_time(
    store: Store, modelslab: FakeModelsLab, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workspaces_module, "SETTINGS_CACHE_SECONDS", 0.05)
    await store.workspaces.ensure(TEAM, installed=True)
    serving = workspaces(store, oauth(modelslab, database_url), None)
    assert await serving.audit_channel(TEAM) is None
    await store.workspaces.update(TEAM, audit_channel="C0AUDIT01")  # another instance's picker

    async def seen() -> bool:
        return await serving.audit_channel(TEAM) == "C0AUDIT01"

    await until(seen)
