"""What the bot keeps: the row types every layer uses and the words their states are stored as.

Plain values only (no SQL): the store builds them from its rows, everyone else reads them.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass


class _Words(str, enum.Enum):
    """A closed vocabulary stored as text: compares, hashes and formats as its value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return str(self.value).__format__(spec)


class State(_Words):
    """Where a cancellation stands (design §6)."""

    HELD = "held"  # waiting for its undo window or an approval; holds the claim
    REQUESTED = "requested"
    CALLING = "calling"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    FAILED = "failed"
    WITHDRAWN = "withdrawn"  # undone, denied or expired while held: ModelsLab never called


class Hold(_Words):
    """Why a held cancellation waits."""

    UNDO = "undo"  # the undo window: proceeds when it ends
    APPROVAL = "approval"  # the two-person rule: withdrawn when the approval time ends


# Waiting for a worker (taken under a lease), or with its ModelsLab call in flight.
QUEUED_STATES = (State.REQUESTED, State.CALLING)
# In the worker's queue: held rows become due when their hold ends.
WORKED_STATES = (State.HELD, *QUEUED_STATES)
# Holding the claim: at most one such row per (workspace, training, dry_run).
ACTIVE_STATES = (State.HELD, State.REQUESTED, State.CALLING, State.CANCELLED)
FINAL_STATES = (State.CANCELLED, State.REJECTED, State.FAILED, State.WITHDRAWN)


class ReportState(_Words):
    """Where a cancellation's report to Slack stands (the outbox)."""

    NONE = "none"
    PENDING = "pending"  # owed to Slack: the reporter takes it
    WAITING = "waiting"  # shown as it stands; pending again when the cancellation moves on
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    DROPPED = "dropped"  # the workspace uninstalled the app


class Origin(_Words):
    """Where a cancellation was asked for (recorded for the audit trail)."""

    COMMAND = "command"
    BUTTON = "button"
    RETRY = "retry"
    CLI = "cli"


class OutcomeKind(_Words):
    """What a cancel call came to; the cancellation service maps each to a state."""

    ACCEPTED = "accepted"
    STOPPED = "stopped"
    PROBABLY_CANCELLED = "probably_cancelled"
    DRY_RUN = "dry_run"
    REFUSED = "refused"
    NOT_FOUND = "not_found"
    BAD_KEY = "bad_key"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"


# Training stages after which there is nothing left to cancel.
FINISHED_STAGES = ("model_ready", "failed")


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
    audit_token_hash: str | None = None
    undo_seconds: int = 0  # 0: no undo window
    two_person: bool = False
    approval_seconds: int = 900


# The undo windows offered in App Home (seconds; 0 = off); the CLI takes any up to 300.
UNDO_CHOICES = (0, 10, 30, 60)


@dataclass(frozen=True)
class Safety:
    """A workspace's safe-cancel settings: the undo window and the two-person rule."""

    undo_seconds: int = 0  # 0: off
    two_person: bool = False
    approval_seconds: int = 900


@dataclass(frozen=True)
class Cancellation:
    """One cancellation request and where it stands."""

    id: int
    workspace_id: str
    training_id: str
    requested_by: str
    origin: Origin
    state: State
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
    report_state: ReportState
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
    hold: Hold | None = None  # why it is (or was) held
    held_until: float | None = None
    owner_id: str | None = None  # the training's owner when the request was made, if known
    decided_by: str | None = None  # who undid, approved or denied it

    @property
    def is_final(self) -> bool:
        """True once the cancellation has an outcome that will not change."""
        return self.state in FINAL_STATES


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


@dataclass(frozen=True)
class Claim:
    """The result of a claim: the new row, or the active one that was there first."""

    cancellation: Cancellation
    created: bool
    # The training's posted notification, read in the same transaction (the ack links to it).
    notification: Notification | None = None


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


class AuditAction(_Words):
    """What an audit record says happened (design §7); README "Audit trail" lists them."""

    # A cancellation's life
    REQUEST = "request"  # a claim: a new cancellation
    DUPLICATE_REQUEST = "duplicate_request"  # answered by the claim already active
    REFUSAL = "refusal"  # not allowed (detail: the rule)
    HELD = "held"  # waiting for an undo window or an approval
    UNDONE = "undone"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CALL = "call"  # a ModelsLab cancel call is about to be sent
    RESCHEDULED = "rescheduled"  # ModelsLab rate-limited it; retried later
    OUTCOME = "outcome"  # the final state and what ModelsLab said
    REPORT_DELIVERED = "report_delivered"
    REPORT_GIVEN_UP = "report_given_up"
    # Admin changes
    KEY_SET = "key_set"
    KEY_REMOVED = "key_removed"
    ALLOW_LIST_ADDED = "allow_list_added"
    ALLOW_LIST_REMOVED = "allow_list_removed"
    AUDIT_CHANNEL_SET = "audit_channel_set"
    NOTIFY_CHANNEL_SET = "notify_channel_set"
    WEBHOOK_TOKEN_ROTATED = "webhook_token_rotated"  # noqa: S105 - a word, not a secret
    AUDIT_TOKEN_ROTATED = "audit_token_rotated"  # noqa: S105 - a word, not a secret
    POLICY_SET = "policy_set"
    ENV_IMPORTED = "env_imported"
    INSTALLED = "installed"
    UNINSTALLED = "uninstalled"


# The hash before a workspace's first record.
AUDIT_GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    """What a change asks the audit log to record (the store adds sequence, time and hashes)."""

    workspace_id: str
    actor: str  # a Slack user id (U…/W…), cli:<name>, or slack (Slack's own events)
    action: AuditAction
    origin: str | None = None
    detail: str | None = None
    training_id: str | None = None
    cancellation_id: int | None = None
    thread: str | None = None  # a permalink to the Slack thread, where there is one


@dataclass(frozen=True)
class AuditRecord:
    """One record of a workspace's audit chain, as stored and exported."""

    seq: int
    at: str  # ISO 8601 UTC, microseconds: 2026-12-02T05:22:14.123456Z
    workspace_id: str
    actor: str
    origin: str | None
    action: str
    detail: str | None
    training_id: str | None
    cancellation_id: int | None
    thread: str | None
    imported: bool
    prev_hash: str
    hash: str

    def content(self) -> dict[str, object]:
        """The fields the hash covers: all of them but the two hashes."""
        return {
            "seq": self.seq,
            "at": self.at,
            "workspace": self.workspace_id,
            "actor": self.actor,
            "origin": self.origin,
            "action": self.action,
            "detail": self.detail,
            "training_id": self.training_id,
            "cancellation_id": self.cancellation_id,
            "thread": self.thread,
            "imported": self.imported,
        }

    def expected_hash(self) -> str:
        """sha256(prev_hash + canonical JSON of content()), hex: what `hash` must be."""
        return audit_hash(self.prev_hash, self.content())

    def to_json(self) -> dict[str, object]:
        """The record as an export line's object (content, prev_hash, hash)."""
        return {**self.content(), "prev_hash": self.prev_hash, "hash": self.hash}


def canonical_json(content: dict[str, object]) -> str:
    """JSON with sorted keys, no spaces, UTF-8 text as is: the same bytes on every machine."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def audit_hash(prev_hash: str, content: dict[str, object]) -> str:
    """sha256(prev_hash + canonical JSON of a record's content), hex."""
    return hashlib.sha256((prev_hash + canonical_json(content)).encode()).hexdigest()
