"""Wake-ups across processes (PostgreSQL LISTEN/NOTIFY): new work wakes the workers of every
process at once; polling stays the safety net, so a lost notification costs a poll interval."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from bot.store.engine import Database

logger = logging.getLogger(__name__)

CHANNEL = "cancel_bot_work"
# How the LISTEN connection shows in pg_stat_activity.
APPLICATION_NAME = "cancel-bot-wakeups"
# Reconnecting after a database restart: quickly at first, then at most this often.
MAX_RECONNECT_SECONDS = 5.0
# A backend that vanished without a word (a dead host) is noticed by TCP keepalives.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


class Work(str, enum.Enum):
    """Which queue has new work (the notification's payload)."""

    CANCELLATIONS = "cancellations"
    REPORTS = "reports"
    TRAINING_EVENTS = "training_events"
    POLLS = "polls"


async def announce(conn: Any, work: Work) -> None:
    """In the writing transaction, tell every listening process (at commit) there is `work`."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_notify(CHANNEL, work.value)))


def _conninfo(url: str | sa.URL) -> str:
    """The libpq connection string for an SQLAlchemy postgresql+psycopg URL."""
    uri = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return make_conninfo(uri, connect_timeout=10, application_name=APPLICATION_NAME, **KEEPALIVES)


class WakeListener:
    """LISTENs on a dedicated connection and calls `on_work` for every notification.

    Re-established whenever the connection is lost (database restart, backend terminated); on
    every (re)connect `on_work(None)` is called, so work announced while it was away is looked at.
    """

    @classmethod
    def for_database(
        cls, db: Database, on_work: Callable[[Work | None], None]
    ) -> WakeListener | None:
        """A listener on the database's server; None on SQLite (one process: no one to wake)."""
        if db.dialect != "postgresql":
            return None
        return cls(db.engine.url, on_work)

    def __init__(self, url: str | sa.URL, on_work: Callable[[Work | None], None]) -> None:
        self.conninfo = _conninfo(url)
        self.on_work = on_work
        self.connects = 0  # successful LISTENs so far (the tests watch it)
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()

    def start(self) -> None:
        """Start listening on the running event loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="wake-listener")

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = 0.1
        while True:
            started = time.monotonic()
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                self.listening.clear()
                logger.warning(
                    "wake-ups: the LISTEN connection was lost (%s); reconnecting, polling meanwhile",
                    type(exc).__name__,
                )
            if time.monotonic() - started > 10 * MAX_RECONNECT_SECONDS:
                delay = 0.1  # it had been up for a while: a fresh failure starts fast again
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_SECONDS)

    async def _listen(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        try:
            await conn.execute(f"LISTEN {CHANNEL}")
            self.connects += 1
            self.listening.set()
            self.on_work(None)  # whatever was announced while nobody listened
            async for note in conn.notifies():
                try:
                    work: Work | None = Work(note.payload)
                except ValueError:
                    work = None
                self.on_work(work)
        finally:
            self.listening.clear()
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()
