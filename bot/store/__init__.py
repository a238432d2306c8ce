"""The store: the only package that speaks SQL (SQLAlchemy Core on an async engine).

Cancellations double as a durable work queue: a request inserts a row (the claim), workers
take due rows under a lease, and a row whose lease expired (its worker died) is taken again.
Every queue (cancellations, the report outbox, training events) answers to the verbs of
`bot.store.lease`; the tables are in `bot.store.schema`, the engines in `bot.store.engine`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.audit import AuditLog
from bot.store.cancellations import CancellationQueue
from bot.store.engine import Database
from bot.store.notifications import NotificationTable
from bot.store.polls import PollSchedule
from bot.store.reports import ReportOutbox
from bot.store.training_events import TrainingEventQueue
from bot.store.workspaces import MetaTable, WorkspaceTable

__all__ = ["Store"]


class Store(Database):
    """The database, and its table families: `store.cancellations.take(...)` and so on."""

    cancellations: CancellationQueue
    reports: ReportOutbox
    training_events: TrainingEventQueue
    notifications: NotificationTable
    polls: PollSchedule
    workspaces: WorkspaceTable
    meta: MetaTable
    audit: AuditLog

    def __init__(self, engine: AsyncEngine, reader: AsyncEngine | None = None) -> None:
        super().__init__(engine, reader)
        self.cancellations = CancellationQueue(self)
        self.reports = ReportOutbox(self)
        self.training_events = TrainingEventQueue(self)
        self.notifications = NotificationTable(self)
        self.polls = PollSchedule(self)
        self.workspaces = WorkspaceTable(self)
        self.meta = MetaTable(self)
        self.audit = AuditLog(self)
