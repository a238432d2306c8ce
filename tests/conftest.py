"""Shared fixtures: databases (SQLite always, PostgreSQL when TEST_DATABASE_URL is set) and fakes."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from bot.config import async_database_url
from bot.store import Store
from bot.store.schema import SLACK_OAUTH_TABLES, metadata
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.harness import Bot, running_bot

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped afterwards; URL as users write it."""
    if not TEST_DATABASE_URL:
        pytest.skip("TEST_DATABASE_URL is not set (.ci/run sets it)")
    admin = make_url(TEST_DATABASE_URL.replace("postgres://", "postgresql://", 1))
    name = f"cancelbot_{secrets.token_hex(4)}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL as a user would write it: a new SQLite file, or the shared PG database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bot.db'}"
    url: str = request.getfixturevalue("pg_database")
    return url


async def empty(s: Store) -> None:
    """Migrate a store's database and delete every row (ours and slack_sdk's OAuth tables)."""
    await s.migrate()
    async with s.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(table.delete())
        for name in SLACK_OAUTH_TABLES:
            await conn.exec_driver_sql(f"DELETE FROM {name}")  # noqa: S608 - constant table names


async def wipe(database_url: str) -> None:
    """Empty a database a subprocess will use."""
    s = Store.from_url(async_database_url(database_url))
    try:
        await empty(s)
    finally:
        await s.close()


@pytest.fixture
async def pg_url(pg_database: str) -> AsyncIterator[str]:
    """The session's PostgreSQL database, migrated and empty; emptied again afterwards."""
    await wipe(pg_database)
    yield pg_database
    await wipe(pg_database)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated, empty store on each database kind."""
    s = Store.from_url(async_database_url(database_url))
    await empty(s)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def modelslab() -> AsyncIterator[FakeModelsLab]:
    """A fake ModelsLab on a loopback port."""
    async with FakeModelsLab() as fake:
        yield fake


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """A fake Slack Web API (and response_url, Socket Mode) on a loopback port."""
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new SQLite database file, as a user writes its URL."""
    return f"sqlite:///{tmp_path / 'bot.db'}"


@pytest.fixture
async def bot(slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str) -> AsyncIterator[Bot]:
    """A single-workspace bot on SQLite, served on a loopback port."""
    async with running_bot(slack, modelslab, sqlite_url) as running:
        yield running
