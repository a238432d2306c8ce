"""The store: the only module that speaks SQL (SQLAlchemy Core on an async engine).

Cancellations double as a durable work queue: a request inserts a row (the claim), workers
take due rows under a lease, and a row whose lease expired (its worker died) is taken again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bot.errors import StoreUnavailable

logger = logging.getLogger(__name__)

# Requested, in flight, or done: at most one such row per (workspace, training, dry_run).
ACTIVE_STATES = ("requested", "calling", "cancelled")
ACTIVE_WHERE = "state IN ('requested', 'calling', 'cancelled')"
FINAL_STATES = ("cancelled", "rejected", "failed")
# Training stages after which there is nothing left to cancel.
FINISHED_STAGES = ("model_ready", "failed")
# Claims written together in one transaction, at most.
CLAIM_BATCH = 100
# Any constant works; it only has to be the same in every instance.
_MIGRATION_LOCK_ID = 0x63616E63

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

cancellations = sa.Table(
    "cancellations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("training_id", sa.String(64), nullable=False),
    sa.Column("requested_by", sa.String(64), nullable=False),
    sa.Column("origin", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(24)),
    sa.Column("reason", sa.Text),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("requested_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("finished_at", sa.Double),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Double, nullable=False),
    sa.Column("lease_owner", sa.String(80)),
    sa.Column("lease_expires_at", sa.Double),
    sa.Column("channel_id", sa.String(32)),
    sa.Column("report_state", sa.String(16), nullable=False, default="none"),
    sa.Column("may_have_reached", sa.Boolean, nullable=False, default=False),
    # The report outbox: what has been posted where, and the reporter's own lease.
    sa.Column("response_url", sa.Text),  # encrypted
    sa.Column("report_channel", sa.String(32)),
    sa.Column("report_thread_ts", sa.String(32)),
    sa.Column("reply_ts", sa.String(32)),
    sa.Column("audit_ts", sa.String(32)),
    sa.Column("rendered", sa.String(64)),
    sa.Column("report_posting", sa.String(16)),
    sa.Column("report_posting_at", sa.Double),  # when that step started posting
    sa.Column("report_permalink", sa.Text),  # of the report's own thread parent
    sa.Column("report_attempts", sa.Integer, nullable=False, default=0),
    sa.Column("report_next_at", sa.Double, nullable=False, default=0),
    sa.Column("report_lease_owner", sa.String(80)),
    sa.Column("report_lease_expires_at", sa.Double),
    sa.Column("report_error", sa.Text),
    sa.Index(
        "uq_cancellations_active",
        "workspace_id",
        "training_id",
        "dry_run",
        unique=True,
        sqlite_where=sa.text(ACTIVE_WHERE),
        postgresql_where=sa.text(ACTIVE_WHERE),
    ),
    sa.Index("ix_cancellations_due", "state", "next_attempt_at"),
    sa.Index("ix_cancellations_recent", "workspace_id", "requested_at"),
    sa.Index("ix_cancellations_reports", "report_state", "report_next_at"),
    sa.Index("ix_cancellations_latest", "workspace_id", "training_id", "requested_at"),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("workspace_id", sa.String(32), primary_key=True),
    sa.Column("training_id", sa.String(64), primary_key=True),
    sa.Column("channel_id", sa.String(32), nullable=False),
    sa.Column("message_ts", sa.String(32)),  # NULL while being posted
    sa.Column("owner_id", sa.String(32)),
    sa.Column("title", sa.Text),
    sa.Column("stage", sa.String(48)),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("stage_rank", sa.Integer, nullable=False, default=0),
    sa.Column("eta", sa.String(32)),
    sa.Column("started_at", sa.Double),
    sa.Column("finished_at", sa.Double),
    sa.Column("final_reported", sa.Boolean, nullable=False, default=False),
    sa.Column("watching", sa.Boolean, nullable=False, default=False),
    sa.Column("poll_next_at", sa.Double),
    sa.Column("poll_failures", sa.Integer, nullable=False, default=0),
    sa.Column("rendered", sa.String(96)),
    sa.Column("permalink", sa.Text),  # chat.getPermalink, recorded once after posting
    sa.Index("ix_notifications_polls", "watching", "poll_next_at"),
)

training_events = sa.Table(
    "training_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("training_id", sa.String(64), nullable=False),
    sa.Column("stage", sa.String(48)),
    sa.Column("logs", sa.Text),
    sa.Column("channel_id", sa.String(32)),
    sa.Column("title", sa.Text),
    sa.Column("owner_id", sa.String(32)),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("received_at", sa.Double, nullable=False),
    sa.Column("done", sa.Boolean, nullable=False, default=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Double, nullable=False),
    sa.Column("lease_owner", sa.String(80)),
    sa.Column("lease_expires_at", sa.Double),
    sa.Column("outcome", sa.Text),  # why nothing was posted, when that is final
    sa.Index("ix_training_events_due", "done", "next_attempt_at"),
)

bot_meta = sa.Table(
    "bot_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)


workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("workspace_id", sa.String(32), primary_key=True),
    sa.Column("enterprise_id", sa.String(32)),
    sa.Column("name", sa.String(200)),
    sa.Column("installed", sa.Boolean, nullable=False, default=False),
    sa.Column("key_ciphertext", sa.Text),
    sa.Column("key_hint", sa.String(8)),
    sa.Column("key_set_at", sa.Double),
    sa.Column("key_set_by", sa.String(64)),
    sa.Column("audit_channel", sa.String(32)),
    sa.Column("notify_channel", sa.String(32)),
    sa.Column("webhook_token_hash", sa.String(64), unique=True),
    sa.Column("webhook_token_ciphertext", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

allow_entries = sa.Table(
    "allow_entries",
    metadata,
    sa.Column("workspace_id", sa.String(32), primary_key=True),
    sa.Column("entry_id", sa.String(32), primary_key=True),
    sa.Column("added_by", sa.String(64), nullable=False),
    sa.Column("added_at", sa.Double, nullable=False),
)

admin_events = sa.Table(
    "admin_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("at", sa.Double, nullable=False),
)

# Owned by slack_sdk's installation and OAuth state stores (created by our migrations).
SLACK_OAUTH_TABLES = ("slack_installations", "slack_bots", "slack_oauth_states")


@dataclass(frozen=True)
class Workspace:
    """A Slack workspace the bot serves, and its settings (secrets stay encrypted)."""

    workspace_id: str
    enterprise_id: str | None
    name: str | None
    installed: bool
    key_ciphertext: str | None
    key_hint: str | None
    key_set_at: float | None
    key_set_by: str | None
    audit_channel: str | None
    notify_channel: str | None
    webhook_token_hash: str | None
    webhook_token_ciphertext: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Cancellation:
    """One cancellation request and where it stands."""

    id: int
    workspace_id: str
    training_id: str
    requested_by: str
    origin: str
    state: str
    outcome: str | None
    reason: str | None
    dry_run: bool
    requested_at: float
    updated_at: float
    finished_at: float | None
    attempts: int
    next_attempt_at: float
    lease_owner: str | None
    lease_expires_at: float | None
    channel_id: str | None
    report_state: str
    response_url: str | None = None
    report_channel: str | None = None
    report_thread_ts: str | None = None
    reply_ts: str | None = None
    audit_ts: str | None = None
    rendered: str | None = None
    report_posting: str | None = None
    report_posting_at: float | None = None
    report_permalink: str | None = None
    report_attempts: int = 0
    report_next_at: float = 0.0
    report_error: str | None = None
    report_lease_owner: str | None = None
    report_lease_expires_at: float | None = None
    may_have_reached: bool = False

    @property
    def is_final(self) -> bool:
        """True once the cancellation has an outcome that will not change."""
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class Claim:
    """The result of a claim: the new row, or the active one that was there first."""

    cancellation: Cancellation
    created: bool
    # The training's posted notification, read in the same transaction (the ack links to it).
    notification: Notification | None = None


@dataclass(frozen=True)
class Notification:
    """A training notification the bot posted."""

    workspace_id: str
    training_id: str
    channel_id: str
    message_ts: str  # "" while the message is being posted
    owner_id: str | None
    title: str | None
    stage: str | None
    created_at: float
    stage_rank: int = 0
    eta: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    final_reported: bool = False
    watching: bool = False
    poll_next_at: float | None = None
    poll_failures: int = 0
    rendered: str | None = None
    permalink: str | None = None

    @property
    def finished(self) -> bool:
        """True once the training is ready or failed: nothing left to cancel."""
        return self.stage in FINISHED_STAGES


def _cancellation(row: Mapping[str, Any] | sa.Row[Any]) -> Cancellation:
    m = row._mapping if isinstance(row, sa.Row) else row
    return Cancellation(**{k: m[k] for k in Cancellation.__dataclass_fields__})


def _notification(row: sa.Row[Any]) -> Notification:
    m = row._mapping
    values = {k: m[k] for k in Notification.__dataclass_fields__}
    values["message_ts"] = values["message_ts"] or ""
    return Notification(**values)


@dataclass(frozen=True)
class TrainingEvent:
    """A stage reported by a webhook, /notify or a status poll, queued for the notifier."""

    id: int
    workspace_id: str
    training_id: str
    stage: str | None
    logs: str | None
    channel_id: str | None
    title: str | None
    owner_id: str | None
    source: str
    received_at: float
    attempts: int


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
    """SQLite: a few read-only connections beside the one writer; PostgreSQL: the same engine."""
    if not url.startswith("sqlite"):
        return writer
    reader = create_async_engine(
        url,
        pool_size=4,
        max_overflow=0,
        pool_timeout=30,
        poolclass=sa.AsyncAdaptedQueuePool,
        # Reads run in autocommit (no BEGIN): nothing is left to roll back when a connection
        # goes back to the pool, and each skipped round trip is a thread hop on SQLite.
        pool_reset_on_return=None,
        isolation_level="AUTOCOMMIT",
    )
    _configure_sqlite(reader, writer=False)
    return reader


class Store:
    """Persistence for cancellations, notifications and bot metadata."""

    def __init__(self, engine: AsyncEngine, reader: AsyncEngine | None = None) -> None:
        self.engine = engine
        # Reads go to `reader` (SQLite: its own connections, so they never queue behind a write).
        self.reader = reader or engine
        self.dialect = engine.dialect.name
        self.priority = Priority(single_writer=self.dialect == "sqlite")
        self._claims: list[_PendingClaim] = []
        self._claim_flusher: asyncio.Task[None] | None = None
        self._claim_insert = (
            self._insert(cancellations)
            .on_conflict_do_nothing(
                index_elements=["workspace_id", "training_id", "dry_run"],
                index_where=sa.text(ACTIVE_WHERE),
            )
            .returning(*cancellations.c)
        )

    @classmethod
    def from_url(cls, url: str) -> Store:
        """Build a store on a new engine."""
        engine = create_engine(url)
        return cls(engine, create_reader(url, engine))

    async def close(self) -> None:
        """Dispose of the engines' connections."""
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()

    # -- lifecycle ---------------------------------------------------------------------------

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
        from bot.migrations import upgrade

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
        from bot.migrations import current_revision

        async with self.engine.connect() as conn:
            return await conn.run_sync(current_revision)

    # -- cancellations -------------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    async def claim(
        self,
        *,
        workspace_id: str,
        training_id: str,
        requested_by: str,
        origin: str,
        dry_run: bool = False,
        channel_id: str | None = None,
        response_url: str | None = None,
        now: float | None = None,
        lease_owner: str | None = None,
        lease_seconds: float = 0.0,
        on_abandoned: Callable[[Claim | None], None] | None = None,
    ) -> Claim:
        """Insert a new cancellation unless an active one exists; return either.

        A new row can be leased to `lease_owner` from the start, so the worker that will call
        ModelsLab needs no second transaction to take it. When the caller is cancelled, the claim
        is withdrawn if its batch has not started, and `on_abandoned` is told what became of it
        (the claim once written, None if nothing was). Claims that arrive together share one
        transaction (one multi-row INSERT): under load a claim waits for the batch in progress,
        not for every claim before it.
        """
        now = time.time() if now is None else now
        values = {
            "lease_owner": lease_owner,
            "lease_expires_at": now + lease_seconds if lease_owner else None,
            "workspace_id": workspace_id,
            "training_id": training_id,
            "requested_by": requested_by,
            "origin": origin,
            "state": "requested",
            "dry_run": dry_run,
            "requested_at": now,
            "updated_at": now,
            "attempts": 0,
            "next_attempt_at": now,
            "channel_id": channel_id,
            "response_url": response_url,
            # Reported from the start: the notification shows "Cancelling…" while it runs.
            "report_state": "pending",
            "report_attempts": 0,
            "report_next_at": now,
        }
        pending = _PendingClaim(values, asyncio.get_running_loop().create_future())
        self._claims.append(pending)
        with self.priority.urgent():
            if self._claim_flusher is None or self._claim_flusher.done():
                self._claim_flusher = asyncio.create_task(self._flush_claims(), name="claims")
            try:
                return await asyncio.shield(pending.result)
            except asyncio.CancelledError:
                if pending in self._claims:
                    # Not yet in a batch: withdrawn, nothing is claimed behind the caller's back.
                    self._claims.remove(pending)
                    if on_abandoned is not None:
                        on_abandoned(None)
                elif on_abandoned is not None:
                    pending.result.add_done_callback(
                        functools.partial(_report_abandoned, on_abandoned)
                    )
                raise

    async def _flush_claims(self) -> None:
        while self._claims:
            batch, self._claims = self._claims[:CLAIM_BATCH], self._claims[CLAIM_BATCH:]
            try:
                await self._claim_batch(batch)
            except Exception as exc:  # noqa: BLE001 - handed to every caller still waiting
                for p in batch:
                    if not p.result.done():
                        p.result.set_exception(exc)

    async def _claim_batch(self, batch: list[_PendingClaim]) -> None:
        """Claim every row of `batch`, answering each caller as soon as its row is committed.

        The first of duplicate keys creates; its twins find that row. Rows are inserted in key
        order, so two instances' batches cannot deadlock on each other's keys (PostgreSQL).
        """
        c, n = cancellations.c, notifications.c
        key_columns = ("workspace_id", "training_id", "dry_run")
        waiting: dict[tuple[Any, ...], list[_PendingClaim]] = {}
        for pending in batch:
            waiting.setdefault(tuple(pending.values[k] for k in key_columns), []).append(pending)
        # The active row can turn final between our INSERT and SELECT; then the INSERT wins next time.
        for _ in range(5):
            if not waiting:
                return
            todo = [waiting[key][0].values for key in sorted(waiting)]
            found: dict[tuple[Any, ...], Claim] = {}
            async with self._begin(urgent=True) as conn:
                for row in await conn.execute(self._claim_insert, todo):
                    found[tuple(row._mapping[k] for k in key_columns)] = Claim(
                        _cancellation(row), created=True
                    )
                missing = [key for key in waiting if key not in found]
                if missing:
                    existing = await conn.execute(
                        sa.select(cancellations).where(
                            sa.tuple_(c.workspace_id, c.training_id, c.dry_run).in_(missing),
                            c.state.in_(ACTIVE_STATES),
                        )
                    )
                    for row in existing:
                        found[tuple(row._mapping[k] for k in key_columns)] = Claim(
                            _cancellation(row), created=False
                        )
                notes = {
                    (row.workspace_id, row.training_id): _notification(row)
                    for row in await conn.execute(
                        sa.select(notifications).where(
                            sa.tuple_(n.workspace_id, n.training_id).in_(
                                list({key[:2] for key in found})
                            ),
                            n.message_ts.is_not(None),
                        )
                    )
                }
            # Committed: these callers get their answer whatever happens to the rest.
            for key, claim in found.items():
                for position, pending in enumerate(waiting.pop(key)):
                    if not pending.result.done():
                        pending.result.set_result(
                            Claim(
                                claim.cancellation,
                                # A duplicate in the same batch found the row its twin created.
                                created=claim.created and position == 0,
                                notification=notes.get(key[:2]),
                            )
                        )
        if waiting:
            raise StoreUnavailable("the cancellation could not be claimed (too much contention)")

    async def take_due(
        self, owner: str, *, lease_seconds: float, limit: int = 10, now: float | None = None
    ) -> list[Cancellation]:
        """Lease up to `limit` cancellations that are due and not leased by a live worker."""
        now = time.time() if now is None else now
        c = cancellations.c
        rows = await self._lease_due(
            cancellations,
            where=[
                c.state.in_(("requested", "calling")),
                c.next_attempt_at <= now,
                sa.or_(c.lease_expires_at.is_(None), c.lease_expires_at < now),
            ],
            order_by=[c.next_attempt_at, c.id],
            limit=limit,
            values={"lease_owner": owner, "lease_expires_at": now + lease_seconds},
        )
        return sorted((_cancellation(r) for r in rows), key=lambda r: (r.next_attempt_at, r.id))

    async def _lease_due(
        self,
        table: sa.Table,
        *,
        where: list[Any],
        order_by: list[Any],
        limit: int,
        values: dict[str, Any],
    ) -> list[sa.Row[Any]]:
        """Select due rows (skipping rows another transaction holds) and lease them, atomically."""
        due = sa.select(table.c.id).where(*where).order_by(*order_by).limit(limit)
        if self.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        async with self._begin() as conn:
            ids = list((await conn.execute(due)).scalars())
            if not ids:
                return []
            result = await conn.execute(
                sa.update(table).where(table.c.id.in_(ids)).values(**values).returning(*table.c)
            )
            return list(result)

    async def take(
        self, cancellation_id: int, owner: str, *, lease_seconds: float, now: float | None = None
    ) -> Cancellation | None:
        """Lease one cancellation if it is due and free; None if it is not."""
        now = time.time() if now is None else now
        c = cancellations.c
        async with self._begin() as conn:
            row = (
                await conn.execute(
                    sa.update(cancellations)
                    .where(
                        c.id == cancellation_id,
                        c.state.in_(("requested", "calling")),
                        c.next_attempt_at <= now,
                        sa.or_(c.lease_expires_at.is_(None), c.lease_expires_at < now),
                    )
                    .values(lease_owner=owner, lease_expires_at=now + lease_seconds)
                    .returning(*cancellations.c)
                )
            ).first()
        return _cancellation(row) if row is not None else None

    async def mark_calling(
        self, cancellation_id: int, owner: str, *, lease_seconds: float
    ) -> Cancellation | None:
        """Record that a ModelsLab call is about to be sent; None if the lease was lost."""
        now = time.time()
        c = cancellations.c
        async with self._begin() as conn:
            row = (
                await conn.execute(
                    sa.update(cancellations)
                    .where(
                        c.id == cancellation_id,
                        c.lease_owner == owner,
                        c.state.in_(("requested", "calling")),
                    )
                    .values(
                        state="calling",
                        attempts=c.attempts + 1,
                        lease_expires_at=now + lease_seconds,
                        updated_at=now,
                    )
                    .returning(*cancellations.c)
                )
            ).first()
        return _cancellation(row) if row is not None else None

    async def finish(
        self,
        cancellation_id: int,
        owner: str,
        *,
        state: str,
        outcome: str,
        reason: str,
        report_owner: str | None = None,
        report_lease_until: float | None = None,
    ) -> Cancellation | None:
        """Record a final outcome; None if another worker holds the row now.

        With `report_owner`, the report is leased to it until `report_lease_until` in the same
        transaction unless a reporter holds it; the returned row says which happened.
        """
        if state not in FINAL_STATES:
            raise ValueError(f"not a final state: {state}")
        now = time.time()
        lease: dict[str, Any] = {}
        if report_owner is not None and report_lease_until is not None:
            c = cancellations.c
            free = sa.or_(c.report_lease_expires_at.is_(None), c.report_lease_expires_at < now)
            lease = {
                "report_lease_owner": sa.case((free, report_owner), else_=c.report_lease_owner),
                "report_lease_expires_at": sa.case(
                    (free, report_lease_until), else_=c.report_lease_expires_at
                ),
            }
        return await self._update_leased(
            cancellation_id,
            owner,
            state=state,
            outcome=outcome,
            reason=reason,
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
            report_state="pending",
            report_next_at=now,
            **lease,
        )

    async def reschedule(
        self,
        cancellation_id: int,
        owner: str,
        *,
        next_attempt_at: float,
        outcome: str,
        reason: str,
        may_have_reached: bool = False,
    ) -> Cancellation | None:
        """Put a cancellation back in the queue until `next_attempt_at` (e.g. after a 429)."""
        return await self._update_leased(
            cancellation_id,
            owner,
            state="requested",
            outcome=outcome,
            reason=reason,
            next_attempt_at=next_attempt_at,
            may_have_reached=may_have_reached,
            updated_at=time.time(),
            lease_owner=None,
            lease_expires_at=None,
            report_state="pending",
            report_next_at=time.time(),
        )

    async def release(self, cancellation_id: int, owner: str) -> None:
        """Give a leased row back without an outcome (shutdown), so any instance can take it."""
        c = cancellations.c
        async with self._begin() as conn:
            await conn.execute(
                sa.update(cancellations)
                .where(c.id == cancellation_id, c.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    async def _update_leased(
        self, cancellation_id: int, owner: str, **values: Any
    ) -> Cancellation | None:
        c = cancellations.c
        async with self._begin() as conn:
            row = (
                await conn.execute(
                    sa.update(cancellations)
                    .where(
                        c.id == cancellation_id,
                        c.lease_owner == owner,
                        c.state.in_(("requested", "calling")),
                    )
                    .values(**values)
                    .returning(*cancellations.c)
                )
            ).first()
        return _cancellation(row) if row is not None else None

    async def get_cancellation(self, cancellation_id: int) -> Cancellation | None:
        """Return one cancellation by id."""
        async with self.reader.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(cancellations).where(cancellations.c.id == cancellation_id)
                )
            ).first()
        return _cancellation(row) if row is not None else None

    async def recent_cancellations(
        self, workspace_id: str, *, limit: int = 10
    ) -> list[Cancellation]:
        """Return the workspace's latest cancellations, newest first."""
        c = cancellations.c
        async with self.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(cancellations)
                .where(c.workspace_id == workspace_id)
                .order_by(c.requested_at.desc(), c.id.desc())
                .limit(limit)
            )
            return [_cancellation(r) for r in rows]

    async def next_due_at(self) -> float | None:
        """Return when the next queued cancellation becomes due (or its lease expires)."""
        c = cancellations.c
        # Scalar max(a, b) is spelled greatest(a, b) on PostgreSQL.
        pairwise_max = sa.func.greatest if self.dialect == "postgresql" else sa.func.max
        when = pairwise_max(c.next_attempt_at, sa.func.coalesce(c.lease_expires_at, 0))
        return await self._earliest(when, c.state.in_(("requested", "calling")))

    async def _earliest(self, when: Any, where: Any) -> float | None:
        """The smallest `when` among rows matching `where` (when a queue next has work)."""
        async with self.reader.connect() as conn:
            value = (await conn.execute(sa.select(sa.func.min(when)).where(where))).scalar()
        return float(value) if value is not None else None

    async def latest_cancellation(self, workspace_id: str, training_id: str) -> Cancellation | None:
        """Return the newest cancellation of a training (real ones before dry runs)."""
        c = cancellations.c
        async with self.reader.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(cancellations)
                    .where(c.workspace_id == workspace_id, c.training_id == training_id)
                    .order_by(c.dry_run, c.requested_at.desc(), c.id.desc())
                    .limit(1)
                )
            ).first()
        return _cancellation(row) if row is not None else None

    # -- the report outbox ----------------------------------------------------------------------

    async def take_reports(
        self, owner: str, *, lease_seconds: float, limit: int = 10, now: float | None = None
    ) -> list[Cancellation]:
        """Lease cancellations whose reports are due."""
        now = time.time() if now is None else now
        c = cancellations.c
        rows = await self._lease_due(
            cancellations,
            where=[
                c.report_state == "pending",
                c.report_next_at <= now,
                sa.or_(c.report_lease_expires_at.is_(None), c.report_lease_expires_at < now),
            ],
            order_by=[c.report_next_at, c.id],
            limit=limit,
            values={"report_lease_owner": owner, "report_lease_expires_at": now + lease_seconds},
        )
        return sorted((_cancellation(r) for r in rows), key=lambda r: r.id)

    async def take_report(
        self, cancellation_id: int, owner: str, *, lease_seconds: float
    ) -> Cancellation | None:
        """Lease one cancellation's pending report, if nobody else holds it."""
        now = time.time()
        c = cancellations.c
        async with self._begin() as conn:
            row = (
                await conn.execute(
                    sa.update(cancellations)
                    .where(
                        c.id == cancellation_id,
                        c.report_state == "pending",
                        sa.or_(
                            c.report_lease_expires_at.is_(None), c.report_lease_expires_at < now
                        ),
                    )
                    .values(report_lease_owner=owner, report_lease_expires_at=now + lease_seconds)
                    .returning(*cancellations.c)
                )
            ).first()
        return _cancellation(row) if row is not None else None

    async def update_report(self, cancellation_id: int, owner: str, **values: Any) -> bool:
        """Record report progress (posted ts, rendered state); False if the lease was lost."""
        c = cancellations.c
        async with self._begin() as conn:
            result = await conn.execute(
                sa.update(cancellations)
                .where(c.id == cancellation_id, c.report_lease_owner == owner)
                .values(**values)
            )
        return bool(result.rowcount)

    async def end_report(
        self,
        cancellation_id: int,
        owner: str,
        *,
        seen: Cancellation,
        report_state: str,
        next_at: float | None = None,
        error: str | None = None,
        failed: bool = False,
        keep_posting: bool = False,
    ) -> bool:
        """Release the report lease; a row that changed meanwhile stays pending for another pass.

        `keep_posting`: the step being posted stays marked, so the next pass looks for its post.
        """
        c = cancellations.c
        values: dict[str, Any] = {
            "report_lease_owner": None,
            "report_lease_expires_at": None,
            "report_error": error,
            # Only failed passes count against the retry budget.
            "report_attempts": c.report_attempts + 1 if failed else 0,
        }
        if not keep_posting:
            values.update(report_posting=None, report_posting_at=None)
        if next_at is not None:
            values["report_next_at"] = next_at
        async with self._begin() as conn:
            result = await conn.execute(
                sa.update(cancellations)
                .where(
                    c.id == cancellation_id,
                    c.report_lease_owner == owner,
                    # updated_at moves on every transition, even requested → calling → requested.
                    c.updated_at == seen.updated_at,
                )
                .values(report_state=report_state, **values)
            )
            if not result.rowcount:
                await conn.execute(
                    sa.update(cancellations)
                    .where(c.id == cancellation_id, c.report_lease_owner == owner)
                    .values({**values, "report_state": "pending", "report_next_at": time.time()})
                )
        return bool(result.rowcount)

    async def next_report_at(self) -> float | None:
        """Return when the next pending report is due."""
        c = cancellations.c
        return await self._earliest(c.report_next_at, c.report_state == "pending")

    async def queue_depths(self, *, now: float | None = None) -> tuple[int, int]:
        """(cancellations waiting for a retry or an expired lease, reports not yet delivered)."""
        now = time.time() if now is None else now
        c = cancellations.c
        async with self.reader.connect() as conn:
            recoveries = (
                await conn.execute(
                    sa.select(sa.func.count()).where(
                        c.state.in_(("requested", "calling")),
                        sa.or_(c.outcome.is_not(None), c.attempts > 0, c.lease_expires_at < now),
                    )
                )
            ).scalar_one()
            backlog = (
                await conn.execute(sa.select(sa.func.count()).where(c.report_state == "pending"))
            ).scalar_one()
        return int(recoveries), int(backlog)

    # -- notifications --------------------------------------------------------------------------

    async def save_notification(
        self,
        *,
        workspace_id: str,
        training_id: str,
        channel_id: str,
        message_ts: str,
        owner_id: str | None = None,
        title: str | None = None,
        stage: str | None = None,
    ) -> None:
        """Record (or move) the notification message for a training."""
        now = time.time()
        values = {
            "channel_id": channel_id,
            "message_ts": message_ts,
            "owner_id": owner_id,
            "title": title,
            "stage": stage,
            "updated_at": now,
        }
        stmt = (
            self._insert(notifications)
            .values(workspace_id=workspace_id, training_id=training_id, created_at=now, **values)
            .on_conflict_do_update(index_elements=["workspace_id", "training_id"], set_=values)
        )
        async with self._begin() as conn:
            await conn.execute(stmt)

    async def get_notification(self, workspace_id: str, training_id: str) -> Notification | None:
        """Return the notification for a training, if the bot posted one."""
        n = notifications.c
        async with self.reader.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(notifications).where(
                        n.workspace_id == workspace_id,
                        n.training_id == training_id,
                        n.message_ts.is_not(None),
                    )
                )
            ).first()
        return _notification(row) if row is not None else None

    async def notifications_for(
        self, workspace_id: str, training_ids: Sequence[str]
    ) -> dict[str, Notification]:
        """The posted notifications of these trainings, by training id (one query)."""
        if not training_ids:
            return {}
        n = notifications.c
        async with self.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(notifications).where(
                    n.workspace_id == workspace_id,
                    n.training_id.in_(sorted(set(training_ids))),
                    n.message_ts.is_not(None),
                )
            )
            return {row.training_id: _notification(row) for row in rows}

    async def claim_notification(
        self,
        *,
        workspace_id: str,
        training_id: str,
        channel_id: str,
        owner_id: str | None = None,
        title: str | None = None,
        watching: bool = False,
        stale_after: float = 60.0,
    ) -> bool:
        """Reserve the one notification of a training before posting it; False if it exists.

        A reservation left by a process that died before posting is taken over after `stale_after`.
        """
        now = time.time()
        n = notifications.c
        stmt = (
            self._insert(notifications)
            .values(
                workspace_id=workspace_id,
                training_id=training_id,
                channel_id=channel_id,
                message_ts=None,
                owner_id=owner_id,
                title=title,
                created_at=now,
                updated_at=now,
                stage_rank=0,
                watching=watching,
                poll_next_at=now if watching else None,
            )
            .on_conflict_do_nothing(index_elements=["workspace_id", "training_id"])
        )
        async with self._begin() as conn:
            if (await conn.execute(stmt)).rowcount:
                return True
            taken = await conn.execute(
                sa.update(notifications)
                .where(
                    n.workspace_id == workspace_id,
                    n.training_id == training_id,
                    n.message_ts.is_(None),
                    n.updated_at < now - stale_after,
                )
                .values(channel_id=channel_id, updated_at=now)
            )
            return bool(taken.rowcount)

    async def notification_posted(
        self, workspace_id: str, training_id: str, *, channel_id: str, message_ts: str
    ) -> None:
        """Record where the reserved notification was posted."""
        n = notifications.c
        async with self._begin() as conn:
            await conn.execute(
                sa.update(notifications)
                .where(n.workspace_id == workspace_id, n.training_id == training_id)
                .values(channel_id=channel_id, message_ts=message_ts, updated_at=time.time())
            )

    async def set_notification_permalink(
        self, workspace_id: str, training_id: str, permalink: str
    ) -> None:
        """Record the posted notification's permalink (once, after posting)."""
        n = notifications.c
        async with self._begin() as conn:
            await conn.execute(
                sa.update(notifications)
                .where(n.workspace_id == workspace_id, n.training_id == training_id)
                .values(permalink=permalink)
            )

    async def drop_notification_claim(self, workspace_id: str, training_id: str) -> None:
        """Forget a reservation whose post failed, so a later event can try again."""
        n = notifications.c
        async with self._begin() as conn:
            await conn.execute(
                sa.delete(notifications).where(
                    n.workspace_id == workspace_id,
                    n.training_id == training_id,
                    n.message_ts.is_(None),
                )
            )

    async def advance_stage(
        self,
        workspace_id: str,
        training_id: str,
        *,
        stage: str,
        rank: int,
        eta: str | None,
        final: bool,
        started: bool,
    ) -> bool:
        """Move a notification to a later stage (never back); True if it changed."""
        n = notifications.c
        now = time.time()
        values: dict[str, Any] = {"stage": stage, "stage_rank": rank, "updated_at": now}
        if eta is not None:
            values["eta"] = eta
        if final:
            values["finished_at"] = now
            values["watching"] = False
            values["poll_next_at"] = None
        if started:
            values["started_at"] = sa.func.coalesce(n.started_at, now)
        # A repeat of the current stage may only bring a newer ETA.
        refresh_eta = (
            sa.and_(n.stage_rank == rank, n.stage == stage) if eta is not None else sa.false()
        )
        async with self._begin() as conn:
            result = await conn.execute(
                sa.update(notifications)
                .where(
                    n.workspace_id == workspace_id,
                    n.training_id == training_id,
                    sa.or_(n.stage.is_(None), n.stage_rank < rank, refresh_eta),
                    # A finished training stays finished.
                    sa.or_(n.stage.is_(None), n.stage.not_in(FINISHED_STAGES)),
                )
                .values(**values)
            )
        return bool(result.rowcount)

    async def mark_final_reported(
        self, workspace_id: str, training_id: str, *, reported: bool = True
    ) -> bool:
        """Record that the "finished" reply is being posted (True only the first time), or undo it."""
        n = notifications.c
        async with self._begin() as conn:
            result = await conn.execute(
                sa.update(notifications)
                .where(
                    n.workspace_id == workspace_id,
                    n.training_id == training_id,
                    n.final_reported.is_(not reported),
                )
                .values(final_reported=reported)
            )
        return bool(result.rowcount)

    async def set_rendered(self, workspace_id: str, training_id: str, key: str) -> None:
        """Remember what the notification message last showed."""
        n = notifications.c
        async with self._begin() as conn:
            await conn.execute(
                sa.update(notifications)
                .where(n.workspace_id == workspace_id, n.training_id == training_id)
                .values(rendered=key)
            )

    async def due_polls(self, *, limit: int = 20, now: float | None = None) -> list[Notification]:
        """Watched trainings whose status poll is due."""
        now = time.time() if now is None else now
        n = notifications.c
        async with self.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(notifications)
                .where(n.watching.is_(True), n.poll_next_at <= now, n.message_ts.is_not(None))
                .order_by(n.poll_next_at)
                .limit(limit)
            )
            return [_notification(r) for r in rows]

    async def schedule_poll(
        self,
        workspace_id: str,
        training_id: str,
        *,
        next_at: float | None,
        failures: int = 0,
        previous: float | None = None,
    ) -> bool:
        """Set (or with None, stop) a watched training's next poll; guarded so one instance wins."""
        n = notifications.c
        values: dict[str, Any] = {
            "poll_next_at": next_at,
            "poll_failures": failures,
            "watching": next_at is not None,
        }
        conditions = [n.workspace_id == workspace_id, n.training_id == training_id]
        if previous is not None:
            conditions.append(n.poll_next_at == previous)
        async with self._begin() as conn:
            result = await conn.execute(
                sa.update(notifications).where(*conditions).values(**values)
            )
        return bool(result.rowcount)

    async def next_poll_at(self) -> float | None:
        """When the next watched training is due for a poll."""
        n = notifications.c
        return await self._earliest(n.poll_next_at, n.watching.is_(True))

    # -- the training-event queue ---------------------------------------------------------------

    async def add_training_event(
        self,
        *,
        workspace_id: str,
        training_id: str,
        stage: str | None,
        logs: str | None,
        source: str,
        channel_id: str | None = None,
        title: str | None = None,
        owner_id: str | None = None,
    ) -> int:
        """Queue a reported stage (webhook, /notify, poll) for the notifier."""
        now = time.time()
        async with self._begin() as conn:
            result = await conn.execute(
                sa.insert(training_events)
                .values(
                    workspace_id=workspace_id,
                    training_id=training_id,
                    stage=stage,
                    logs=(logs or "")[:2000] or None,
                    channel_id=channel_id,
                    title=title,
                    owner_id=owner_id,
                    source=source,
                    received_at=now,
                    done=False,
                    attempts=0,
                    next_attempt_at=now,
                )
                .returning(training_events.c.id)
            )
            return int(result.scalar_one())

    async def take_training_events(
        self, owner: str, *, lease_seconds: float, limit: int = 10
    ) -> list[TrainingEvent]:
        """Lease due training events, oldest first."""
        now = time.time()
        e = training_events.c
        rows = await self._lease_due(
            training_events,
            where=[
                e.done.is_(False),
                e.next_attempt_at <= now,
                sa.or_(e.lease_expires_at.is_(None), e.lease_expires_at < now),
            ],
            order_by=[e.received_at, e.id],
            limit=limit,
            values={
                "lease_owner": owner,
                "lease_expires_at": now + lease_seconds,
                "attempts": e.attempts + 1,
            },
        )
        events = [
            TrainingEvent(**{k: r._mapping[k] for k in TrainingEvent.__dataclass_fields__})
            for r in rows
        ]
        return sorted(events, key=lambda ev: (ev.received_at, ev.id))

    async def end_training_event(self, event_id: int, *, retry_at: float | None = None) -> None:
        """Mark an event handled, or put it back until `retry_at`."""
        e = training_events.c
        values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
        if retry_at is None:
            values["done"] = True
        else:
            values["next_attempt_at"] = retry_at
        async with self._begin() as conn:
            await conn.execute(sa.update(training_events).where(e.id == event_id).values(**values))

    async def set_training_event_outcome(self, event_id: int, outcome: str) -> None:
        """Record why an event posted nothing (shown to whoever asked for it)."""
        e = training_events.c
        async with self._begin() as conn:
            await conn.execute(
                sa.update(training_events).where(e.id == event_id).values(outcome=outcome[:500])
            )

    async def training_event_result(self, event_id: int) -> tuple[bool, str | None]:
        """(done, outcome) of a queued event."""
        e = training_events.c
        async with self.reader.connect() as conn:
            row = (await conn.execute(sa.select(e.done, e.outcome).where(e.id == event_id))).first()
        return (bool(row.done), row.outcome) if row is not None else (True, None)

    async def next_training_event_at(self) -> float | None:
        """When the next queued training event is due."""
        e = training_events.c
        return await self._earliest(e.next_attempt_at, e.done.is_(False))

    async def cancellable_notifications(
        self, workspace_id: str, *, limit: int = 10
    ) -> list[Notification]:
        """Return notifications whose training has no active cancellation, newest first."""
        n, c = notifications.c, cancellations.c
        active = sa.exists().where(
            c.workspace_id == n.workspace_id,
            c.training_id == n.training_id,
            c.state.in_(ACTIVE_STATES),
            c.dry_run.is_(False),
        )
        finished = n.stage.in_(FINISHED_STAGES)
        async with self.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(notifications)
                .where(
                    n.workspace_id == workspace_id, ~active, sa.or_(n.stage.is_(None), ~finished)
                )
                .order_by(n.created_at.desc())
                .limit(limit)
            )
            return [_notification(r) for r in rows]

    # -- metadata -------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        """Return a bot metadata value."""
        async with self.reader.connect() as conn:
            value = (
                await conn.execute(sa.select(bot_meta.c.value).where(bot_meta.c.key == key))
            ).scalar()
        return str(value) if value is not None else None

    async def set_meta(self, key: str, value: str) -> None:
        """Set a bot metadata value."""
        stmt = (
            self._insert(bot_meta)
            .values(key=key, value=value)
            .on_conflict_do_update(index_elements=["key"], set_={"value": value})
        )
        async with self._begin() as conn:
            await conn.execute(stmt)

    # -- workspaces -----------------------------------------------------------------------------

    async def ensure_workspace(
        self,
        workspace_id: str,
        *,
        enterprise_id: str | None = None,
        name: str | None = None,
        installed: bool | None = None,
    ) -> None:
        """Create the workspace row if missing; update what is given."""
        now = time.time()
        values: dict[str, Any] = {"updated_at": now}
        if enterprise_id is not None:
            values["enterprise_id"] = enterprise_id
        if name is not None:
            values["name"] = name
        if installed is not None:
            values["installed"] = installed
        stmt = (
            self._insert(workspaces)
            .values(
                workspace_id=workspace_id,
                created_at=now,
                installed=bool(installed),
                **{k: v for k, v in values.items() if k != "installed"},
            )
            .on_conflict_do_update(index_elements=["workspace_id"], set_=values)
        )
        async with self._begin() as conn:
            await conn.execute(stmt)

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        """Return one workspace's row."""
        async with self.reader.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(workspaces).where(workspaces.c.workspace_id == workspace_id)
                )
            ).first()
        return Workspace(**row._mapping) if row is not None else None

    async def list_workspaces(self) -> list[tuple[Workspace, int]]:
        """Return every workspace with the size of its allow-list."""
        a = allow_entries.c
        count = (
            sa.select(sa.func.count())
            .where(a.workspace_id == workspaces.c.workspace_id)
            .scalar_subquery()
        )
        async with self.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(workspaces, count.label("allowed")).order_by(workspaces.c.workspace_id)
            )
            return [
                (
                    Workspace(**{k: r._mapping[k] for k in Workspace.__dataclass_fields__}),
                    int(r._mapping["allowed"]),
                )
                for r in rows
            ]

    async def update_workspace(self, workspace_id: str, **values: Any) -> None:
        """Set workspace columns (the row is created if missing)."""
        await self.ensure_workspace(workspace_id)
        async with self._begin() as conn:
            await conn.execute(
                sa.update(workspaces)
                .where(workspaces.c.workspace_id == workspace_id)
                .values(updated_at=time.time(), **values)
            )

    async def workspace_by_webhook_hash(self, token_hash: str) -> Workspace | None:
        """Return the workspace whose webhook token hashes to this value."""
        async with self.reader.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(workspaces).where(workspaces.c.webhook_token_hash == token_hash)
                )
            ).first()
        return Workspace(**row._mapping) if row is not None else None

    async def allow_list(self, workspace_id: str) -> list[str]:
        """Return a workspace's stored allow-list entries."""
        a = allow_entries.c
        async with self.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(a.entry_id)
                .where(a.workspace_id == workspace_id)
                .order_by(a.added_at, a.entry_id)
            )
            return [str(r) for r in rows.scalars()]

    async def allow(self, workspace_id: str, entries: list[str], *, by: str) -> list[str]:
        """Add entries to a workspace's allow-list; return those that were new."""
        await self.ensure_workspace(workspace_id)
        now = time.time()
        added = []
        async with self._begin() as conn:
            for entry in entries:
                stmt = (
                    self._insert(allow_entries)
                    .values(workspace_id=workspace_id, entry_id=entry, added_by=by, added_at=now)
                    .on_conflict_do_nothing(index_elements=["workspace_id", "entry_id"])
                    # rowcount is not reliable for upserts on every driver; RETURNING is.
                    .returning(allow_entries.c.entry_id)
                )
                if (await conn.execute(stmt)).first() is not None:
                    added.append(entry)
        return added

    async def deny(self, workspace_id: str, entries: list[str]) -> list[str]:
        """Remove entries from a workspace's allow-list; return those that were there."""
        a = allow_entries.c
        removed = []
        async with self._begin() as conn:
            for entry in entries:
                result = await conn.execute(
                    sa.delete(allow_entries).where(
                        a.workspace_id == workspace_id, a.entry_id == entry
                    )
                )
                if result.rowcount:
                    removed.append(entry)
        return removed

    async def record_admin_event(
        self, workspace_id: str, *, actor: str, action: str, detail: str = ""
    ) -> None:
        """Record an admin change (never a secret)."""
        async with self._begin() as conn:
            await conn.execute(
                sa.insert(admin_events).values(
                    workspace_id=workspace_id,
                    actor=actor,
                    action=action,
                    detail=detail,
                    at=time.time(),
                )
            )

    async def admin_events(self, workspace_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """Return a workspace's latest admin changes, newest first."""
        e = admin_events.c
        async with self.reader.connect() as conn:
            rows = await conn.execute(
                sa.select(admin_events)
                .where(e.workspace_id == workspace_id)
                .order_by(e.at.desc(), e.id.desc())
                .limit(limit)
            )
            return [dict(r._mapping) for r in rows]

    async def forget_workspace(self, workspace_id: str) -> None:
        """Uninstall: drop key, allow-list, settings, webhook token and undelivered reports; keep history."""
        c = cancellations.c
        async with self._begin() as conn:
            await conn.execute(
                sa.delete(allow_entries).where(allow_entries.c.workspace_id == workspace_id)
            )
            await conn.execute(
                sa.update(workspaces)
                .where(workspaces.c.workspace_id == workspace_id)
                .values(
                    installed=False,
                    key_ciphertext=None,
                    key_hint=None,
                    key_set_at=None,
                    key_set_by=None,
                    audit_channel=None,
                    notify_channel=None,
                    webhook_token_hash=None,
                    webhook_token_ciphertext=None,
                    updated_at=time.time(),
                )
            )
            await conn.execute(
                sa.update(cancellations)
                .where(c.workspace_id == workspace_id, c.report_state.in_(("pending", "waiting")))
                .values(report_state="dropped", response_url=None)
            )
            await conn.execute(
                sa.update(cancellations)
                .where(c.workspace_id == workspace_id)
                .values(response_url=None)
            )

    async def rotate_ciphertexts(self, rotate: Any) -> int:
        """Re-encrypt every stored ciphertext with `rotate` (MultiFernet.rotate); return the count."""
        targets: list[tuple[sa.Table, str, tuple[str, ...]]] = [
            (workspaces, "workspace_id", ("key_ciphertext", "webhook_token_ciphertext")),
            (cancellations, "id", ("response_url",)),
        ]
        oauth = sa.MetaData()
        oauth_tables: tuple[tuple[str, tuple[str, ...]], ...] = (
            (
                "slack_installations",
                (
                    "bot_token",
                    "bot_refresh_token",
                    "user_token",
                    "user_refresh_token",
                    "incoming_webhook_url",
                ),
            ),
            ("slack_bots", ("bot_token", "bot_refresh_token")),
        )
        for name, cols in oauth_tables:
            table = sa.Table(
                name,
                oauth,
                sa.Column("id", sa.Integer, primary_key=True),
                *(sa.Column(col, sa.Text) for col in cols),
            )
            targets.append((table, "id", cols))
        count = 0
        async with self._begin() as conn:
            for table, key, cols in targets:
                rows = await conn.execute(sa.select(table.c[key], *(table.c[col] for col in cols)))
                for row in rows.all():
                    updates = {col: rotate(row._mapping[col]) for col in cols if row._mapping[col]}
                    if updates:
                        await conn.execute(
                            sa.update(table)
                            .where(table.c[key] == row._mapping[key])
                            .values(**updates)
                        )
                        count += len(updates)
        return count

    def _begin(self, *, urgent: bool = False) -> Any:
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


def _report_abandoned(
    callback: Callable[[Claim | None], None], done: asyncio.Future[Claim]
) -> None:
    written = not done.cancelled() and done.exception() is None
    callback(done.result() if written else None)


@dataclass(eq=False)
class _PendingClaim:
    values: dict[str, Any]
    result: asyncio.Future[Claim]


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
