"""The engines, their SQLite settings, the ack path's write priority, and the schema's lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.errors import StoreUnavailable

_D = TypeVar("_D", bound="Database")
# Any constant works; it only has to be the same in every instance.
_MIGRATION_LOCK_ID = 0x63616E63


def _configure_sqlite(engine: AsyncEngine, *, writer: bool = True) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from pysqlite so claims can BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    if not writer:
        # Readers (WAL) run each SELECT on its own snapshot, beside the writer, never waiting.
        return

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the lock up front, so no transaction fails half-way on SQLITE_BUSY.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str) -> AsyncEngine:
    """Create the async engine for a URL from bot.config.async_database_url."""
    if url.startswith("sqlite"):
        # One connection: SQLite has one writer anyway, and queueing in the pool is cheaper
        # than queueing on the file lock.
        engine = create_async_engine(
            url, pool_size=1, max_overflow=0, pool_timeout=30, poolclass=sa.AsyncAdaptedQueuePool
        )
        _configure_sqlite(engine)
        return engine
    # No pre-ping: it would add a round trip to every transaction (the ack path included);
    # connections are recycled instead, and a dead one fails one request, which says so.
    return create_async_engine(
        url, pool_size=10, max_overflow=10, pool_recycle=300, pool_timeout=10
    )


def create_reader(url: str, writer: AsyncEngine) -> AsyncEngine:
    """Connections for single reads, in autocommit, beside the writer's (both databases)."""
    # Reads run in autocommit (no BEGIN): nothing is left to roll back when a connection goes
    # back to the pool, so each read is one round trip (SQLite: one thread hop) instead of three.
    # Every read is one statement, or several that need no common snapshot.
    autocommit: dict[str, Any] = {"pool_reset_on_return": None, "isolation_level": "AUTOCOMMIT"}
    if not url.startswith("sqlite"):
        # A small pool: at most 10 more connections per process (the writer's 20 stay).
        return create_async_engine(
            url, pool_size=5, max_overflow=5, pool_recycle=300, pool_timeout=10, **autocommit
        )
    reader = create_async_engine(
        url,
        pool_size=4,
        max_overflow=0,
        pool_timeout=30,
        poolclass=sa.AsyncAdaptedQueuePool,
        **autocommit,
    )
    _configure_sqlite(reader, writer=False)
    return reader


class Database:
    """The engines every table family writes and reads through, and the schema's lifecycle."""

    def __init__(self, engine: AsyncEngine, reader: AsyncEngine | None = None) -> None:
        self.engine = engine
        # Reads go to `reader`: its own connections, so they never queue behind a write.
        self.reader = reader or engine
        self.dialect = engine.dialect.name
        self.priority = Priority(single_writer=self.dialect == "sqlite")

    @classmethod
    def from_url(cls: type[_D], url: str) -> _D:
        """Build on a new engine (and, on SQLite, its readers)."""
        engine = create_engine(url)
        return cls(engine, create_reader(url, engine))

    async def close(self) -> None:
        """Dispose of the engines' connections."""
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()

    async def connect(self, *, wait: float = 30.0) -> None:
        """Wait until the database answers (PostgreSQL may still be starting), then return."""
        deadline = time.monotonic() + wait
        delay = 0.25
        while True:
            try:
                await self.ping()
            except StoreUnavailable:
                if self.dialect == "sqlite" or time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 4.0)
            else:
                return

    async def ping(self) -> None:
        """Run a trivial query; raise StoreUnavailable if the database does not answer."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (OSError, DBAPIError) as exc:
            raise StoreUnavailable(_describe_db_error(exc)) from exc

    async def migrate(self) -> None:
        """Apply Alembic migrations, holding a PostgreSQL advisory lock while doing so."""
        from bot.store.migrations import upgrade

        try:
            async with self.engine.connect() as conn:
                if self.dialect == "postgresql":
                    await conn.execute(sa.select(sa.func.pg_advisory_lock(_MIGRATION_LOCK_ID)))
                try:
                    await conn.run_sync(upgrade)
                    await conn.commit()
                finally:
                    if self.dialect == "postgresql":
                        await conn.execute(
                            sa.select(sa.func.pg_advisory_unlock(_MIGRATION_LOCK_ID))
                        )
                        await conn.commit()
        except (OSError, DBAPIError) as exc:
            raise StoreUnavailable(_describe_db_error(exc)) from exc

    async def schema_revision(self) -> str | None:
        """Return the applied Alembic revision, or None for an empty database."""
        from bot.store.migrations import current_revision

        async with self.engine.connect() as conn:
            return await conn.run_sync(current_revision)

    def insert(self, table: sa.Table) -> Any:
        """An INSERT in this dialect (for its ON CONFLICT clauses)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    def begin(self, *, urgent: bool = False) -> Any:
        """A write transaction; all but the ack path's wait for their turn (Priority)."""
        return _Transaction(self.engine, self.priority, urgent=urgent)


class Priority:
    """Lets the ack path's writes go first: background writes wait while claims are queued.

    SQLite has one writer, and every transaction holds it for several turns of a busy event loop;
    a claim queued behind the worker's and reporter's writes would miss Slack's 3 s. So the
    writer is handed out here, claims first, and background work waits while claims are queued
    (at most `max_wait` per transaction: slowed, never starved). PostgreSQL needs none of this.
    """

    def __init__(self, *, max_wait: float = 0.5, single_writer: bool = False) -> None:
        self.max_wait = max_wait
        self._urgent = 0
        self._clear = asyncio.Event()
        self._clear.set()
        self._single_writer = single_writer
        self._held = False
        self._queues: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        """Mark ack-path work in progress for the duration of the block."""
        self._urgent += 1
        self._clear.clear()
        try:
            yield
        finally:
            self._urgent -= 1
            if not self._urgent:
                self._clear.set()

    async def wait_turn(self) -> None:
        """Return once no ack-path work is queued, or after `max_wait`."""
        if self._clear.is_set():
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._clear.wait(), self.max_wait)

    async def enter(self, *, urgent: bool) -> None:
        """Wait for this transaction's turn: with a single writer (SQLite) claims go first."""
        if not self._single_writer:
            # PostgreSQL: a pool of connections, nothing for a claim to queue behind.
            return
        if not urgent:
            await self.wait_turn()
        if not self._held and not any(self._queues):
            self._held = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._queues[0 if urgent else 1]
        queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave()  # handed the writer just as we were cancelled: pass it on
            elif turn in queue:
                queue.remove(turn)
            raise

    def leave(self) -> None:
        """End a transaction: hand the writer to the next one, claims first."""
        if not self._single_writer:
            return
        for queue in self._queues:
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._held = False


class _Transaction:
    """engine.begin() that turns connection failures into StoreUnavailable."""

    def __init__(self, engine: AsyncEngine, priority: Priority, *, urgent: bool) -> None:
        self._cm = engine.begin()
        self._priority = priority
        self._urgent = urgent

    async def __aenter__(self) -> AsyncConnection:
        await self._priority.enter(urgent=self._urgent)
        try:
            return await self._cm.__aenter__()
        except BaseException as exc:
            self._priority.leave()
            if isinstance(exc, (OSError, OperationalError)):
                raise StoreUnavailable(_describe_db_error(exc)) from exc
            raise

    async def __aexit__(self, *exc: Any) -> bool | None:
        try:
            return await self._cm.__aexit__(*exc)
        except (OSError, OperationalError) as exc:
            raise StoreUnavailable(_describe_db_error(exc)) from exc
        finally:
            self._priority.leave()


def _describe_db_error(exc: BaseException) -> str:
    # The driver's message can include the URL; keep only its first line and drop credentials.
    text = (
        str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else type(exc).__name__
    )
    return f"the database is not reachable: {text[:200]}"
