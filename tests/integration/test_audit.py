"""The audit log (design §7, issue 15): one record per change, in the change's transaction,
chained per workspace; export round-trips; verify names what was changed, inserted or removed."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.cli import main
from bot.config import Purpose, async_database_url, load_settings
from bot.crypto import SecretBox
from bot.model import AuditAction, AuditEntry, AuditRecord, Origin, ReportState, State
from bot.service.audit import AuditTrail, parse_period, parse_since
from bot.service.workspaces import Workspaces
from bot.store import Store
from bot.store.audit import append_in, iso
from bot.store.schema import (
    SLACK_OAUTH_TABLES,
    admin_events,
    audit_heads,
    audit_log,
    cancellations,
    metadata,
)
from tests.conftest import empty

TEAM = "T0AUDIT01"
OTHER = "T0AUDIT02"
ALICE = "U0ALICE01"
BOB = "U0BOB0001"
FERNET = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="


async def records(store: Store, workspace_id: str = TEAM) -> list[AuditRecord]:
    return [r async for r in store.audit.records(workspace_id=workspace_id)]


async def actions(store: Store, workspace_id: str = TEAM) -> list[str]:
    return [r.action for r in await records(store, workspace_id)]


def workspaces_service(store: Store, tmp_path: Path) -> Workspaces:
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    settings = load_settings(Purpose.ADMIN, env)
    return Workspaces(store=store, box=SecretBox((FERNET,)), settings=settings)


async def claim(store: Store, training_id: str = "train-1", user: str = ALICE) -> Any:
    return await store.cancellations.enqueue(
        workspace_id=TEAM,
        training_id=training_id,
        requested_by=user,
        origin=Origin.BUTTON.value,
        lease_owner="w1",
        lease_seconds=30,
    )


# -- every action kind: exactly one record ----------------------------------------------------


async def test_a_cancellations_life_is_one_record_per_step(store: Store) -> None:
    first = await claim(store)
    again = await claim(store, user=BOB)
    assert first.created and not again.created
    row = first.cancellation
    assert await actions(store) == ["request", "duplicate_request"]

    calling = await store.cancellations.mark_calling(row.id, "w1", lease_seconds=30)
    assert calling is not None
    await store.cancellations.retry(
        row.id, "w1", at=calling.updated_at + 30, outcome="rate_limited", reason="slow down"
    )
    taken = await store.cancellations.take_one(row.id, "w1", lease_seconds=30, now=1e12)
    assert taken is not None
    await store.cancellations.mark_calling(row.id, "w1", lease_seconds=30)
    final = await store.cancellations.finish(
        row.id, "w1", state=State.CANCELLED, outcome="accepted", reason="Training cancelled"
    )
    assert final is not None
    [report] = await store.reports.take("r1", lease_seconds=30, now=1e12)
    assert await store.reports.finish(report.id, "r1", seen=report, state=ReportState.DELIVERED)

    log = await records(store)
    assert [r.action for r in log] == [
        "request",
        "duplicate_request",
        "call",
        "rescheduled",
        "call",
        "outcome",
        "report_delivered",
    ]
    assert [r.seq for r in log] == list(range(1, 8))
    assert {r.training_id for r in log} == {"train-1"}
    assert {r.cancellation_id for r in log} == {row.id}
    assert [r.actor for r in log][:2] == [ALICE, BOB]
    assert log[5].detail == "cancelled: accepted; ModelsLab said: Training cancelled"
    assert log[3].detail is not None and log[3].detail.startswith("requested: rate_limited")
    assert log[2].detail == "attempt 1" and log[4].detail == "attempt 2"
    assert all(r.origin == "button" and not r.imported for r in log)
    assert (await AuditTrail(store=store).verify(TEAM)).broken is None


async def test_a_report_given_up_is_recorded_and_a_waiting_one_is_not(store: Store) -> None:
    row = (await claim(store)).cancellation
    [report] = await store.reports.take("r1", lease_seconds=30, now=1e12)
    assert await store.reports.finish(report.id, "r1", seen=report, state=ReportState.WAITING)
    assert await actions(store) == ["request"]
    await store.cancellations.mark_calling(row.id, "w1", lease_seconds=30)
    await store.cancellations.finish(
        row.id, "w1", state=State.FAILED, outcome="unavailable", reason="502"
    )
    [report] = await store.reports.take("r1", lease_seconds=30, now=1e12)
    await store.reports.finish(
        report.id, "r1", seen=report, state=ReportState.UNDELIVERABLE, error="channel_not_found"
    )
    log = await records(store)
    assert [r.action for r in log] == ["request", "call", "outcome", "report_given_up"]
    assert log[-1].detail == "channel_not_found"


async def test_every_admin_change_is_one_record_and_never_the_key(
    store: Store, tmp_path: Path
) -> None:
    workspaces = workspaces_service(store, tmp_path)
    key = "sk-live-very-secret-key-7Q2p"
    await workspaces.set_key(TEAM, key, by=ALICE)
    await workspaces.remove_key(TEAM, by=ALICE)
    await workspaces.allow(TEAM, [BOB, "S0GROUP01"], by=ALICE)
    await workspaces.allow(TEAM, [BOB], by=ALICE)  # nothing new: nothing recorded
    await workspaces.deny(TEAM, [BOB], by="cli:ops")
    await workspaces.deny(TEAM, [BOB], by="cli:ops")  # nothing removed: nothing recorded
    await workspaces.set_channel(TEAM, audit=True, channel="C0AUDIT01", by=ALICE)
    await workspaces.set_channel(TEAM, audit=False, channel="C0NOTIFY1", by=ALICE)
    webhook = await workspaces.rotate_webhook_token(TEAM, by=ALICE)
    audit_token = await workspaces.rotate_audit_token(TEAM, by=ALICE)
    await store.workspaces.record_admin_event(
        TEAM, actor="cli:import", action="import_env", detail="key and allow-list"
    )
    await store.workspaces.ensure(
        TEAM, installed=True, audit=AuditEntry(TEAM, ALICE, AuditAction.INSTALLED)
    )
    await store.workspaces.forget(TEAM)

    log = await records(store)
    assert [(r.action, r.actor, r.detail) for r in log] == [
        ("key_set", ALICE, "key ending …7Q2p"),
        ("key_removed", ALICE, None),
        ("allow_list_added", ALICE, f"{BOB}, S0GROUP01"),
        ("allow_list_removed", "cli:ops", BOB),
        ("audit_channel_set", ALICE, "C0AUDIT01"),
        ("notify_channel_set", ALICE, "C0NOTIFY1"),
        ("webhook_token_rotated", ALICE, None),
        ("audit_token_rotated", ALICE, None),
        ("env_imported", "cli:import", "key and allow-list"),
        ("installed", ALICE, None),
        ("uninstalled", "slack", "tokens, key, allow-list and settings deleted"),
    ]
    dump = json.dumps([r.to_json() for r in log])
    for secret in (key, webhook, audit_token):
        assert secret not in dump
    # The admin events App Home lists are written with them, in the same words as before.
    events = [e["action"] for e in reversed(await store.workspaces.admin_events(TEAM, limit=50))]
    assert events[:4] == ["set_key", "remove_key", "allow", "deny"]
    # The uninstall deleted settings, not the audit log.
    assert (await AuditTrail(store=store).verify()).broken is None


async def test_a_refusal_is_recorded_with_its_rule(store: Store) -> None:
    trail = AuditTrail(store=store)
    await trail.record_refusal(
        workspace_id=TEAM,
        user_id=BOB,
        training_id="train-9",
        origin="command",
        rule="not_listed",
        reason="you are not on the allow-list",
    )
    [record] = await records(store)
    assert (record.action, record.actor, record.training_id, record.origin) == (
        "refusal",
        BOB,
        "train-9",
        "command",
    )
    assert record.detail == "not_listed: you are not on the allow-list"


# -- a record exists exactly when its change does ---------------------------------------------


async def break_audit_log(store: Store) -> None:
    """Make every append fail, as a crash between the change and its record would."""
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE audit_log RENAME TO audit_log_gone")


async def restore_audit_log(store: Store) -> None:
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE audit_log_gone RENAME TO audit_log")


async def test_a_failing_append_rolls_the_change_back(store: Store, tmp_path: Path) -> None:
    row = (await claim(store, "train-kept")).cancellation
    workspaces = workspaces_service(store, tmp_path)
    await break_audit_log(store)
    try:
        attempts: list[Callable[[], Awaitable[Any]]] = [
            lambda: claim(store, "train-new"),
            lambda: store.cancellations.mark_calling(row.id, "w1", lease_seconds=30),
            lambda: workspaces.set_key(TEAM, "sk-never-stored-1234", by=ALICE),
            lambda: workspaces.allow(TEAM, [BOB], by=ALICE),
            lambda: store.workspaces.forget(TEAM),
        ]
        for attempt in attempts:
            with pytest.raises(Exception):  # noqa: B017,PT011 - the driver's own error
                await attempt()
    finally:
        await restore_audit_log(store)
    assert [c.training_id for c in await store.cancellations.recent(TEAM)] == ["train-kept"]
    assert (await store.cancellations.get(row.id)).state is State.REQUESTED  # type: ignore[union-attr]
    ws = await store.workspaces.get(TEAM)
    assert ws is None or ws.key_ciphertext is None
    assert await store.workspaces.allow_list(TEAM) == []
    assert await actions(store) == ["request"]
    assert (await AuditTrail(store=store).verify()).broken is None


# -- verify ------------------------------------------------------------------------------------


async def seed(store: Store, n: int = 6, workspace_id: str = TEAM) -> list[AuditRecord]:
    entries = [
        AuditEntry(workspace_id, ALICE, AuditAction.REQUEST, training_id=f"t{i}") for i in range(n)
    ]
    return await store.audit.append(*entries)


async def execute(store: Store, statement: Any) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(statement)


async def test_verify_passes_an_intact_log(store: Store) -> None:
    await seed(store)
    await seed(store, 3, OTHER)
    result = await AuditTrail(store=store).verify()
    assert (result.broken, result.records, result.workspaces) == (None, 9, 2)


async def test_verify_names_an_edited_field(store: Store) -> None:
    await seed(store)
    a = audit_log.c
    await execute(
        store,
        sa.update(audit_log).where(a.workspace_id == TEAM, a.seq == 3).values(actor=BOB),
    )
    broken = (await AuditTrail(store=store).verify()).broken
    assert broken is not None and (broken.seq, broken.kind) == (3, "changed"), broken
    assert "record 3 was changed" in broken.message and TEAM in broken.message


async def test_verify_names_a_record_rewritten_with_a_fresh_hash(store: Store) -> None:
    [*_, third, _, _, _] = await seed(store)
    from bot.model import audit_hash

    forged = {**third.content(), "actor": BOB}
    a = audit_log.c
    await execute(
        store,
        sa.update(audit_log)
        .where(a.workspace_id == TEAM, a.seq == 3)
        .values(actor=BOB, hash=audit_hash(third.prev_hash, forged)),
    )
    broken = (await AuditTrail(store=store).verify()).broken
    assert broken is not None and broken.seq == 4, broken
    assert "does not follow record 3" in broken.message


async def test_verify_names_a_deleted_record(store: Store) -> None:
    await seed(store)
    a = audit_log.c
    await execute(store, sa.delete(audit_log).where(a.workspace_id == TEAM, a.seq == 4))
    broken = (await AuditTrail(store=store).verify()).broken
    assert broken is not None and (broken.seq, broken.kind) == (4, "removed"), broken


async def test_verify_names_records_deleted_from_the_end(store: Store) -> None:
    await seed(store)
    a = audit_log.c
    await execute(store, sa.delete(audit_log).where(a.workspace_id == TEAM, a.seq >= 5))
    broken = (await AuditTrail(store=store).verify()).broken
    assert broken is not None and (broken.seq, broken.kind) == (5, "removed"), broken
    assert "records 5 to 6 were removed" in broken.message


async def test_verify_names_an_inserted_record(store: Store) -> None:
    # The best forgery without the database's help: a valid record chained after 3, the later
    # records renumbered to make room.
    log = await seed(store)
    a = audit_log.c
    for record in reversed(log[3:]):
        await execute(
            store,
            sa.update(audit_log)
            .where(a.workspace_id == TEAM, a.seq == record.seq)
            .values(seq=record.seq + 1),
        )
    from bot.store.audit import seal

    forged = seal(
        AuditEntry(TEAM, BOB, AuditAction.KEY_REMOVED), seq=4, at=log[2].at, prev_hash=log[2].hash
    )
    await execute(
        store,
        sa.insert(audit_log).values(
            **{k: getattr(forged, k) for k in AuditRecord.__dataclass_fields__}
        ),
    )
    broken = (await AuditTrail(store=store).verify()).broken
    assert broken is not None and (broken.seq, broken.kind) == (4, "inserted"), broken


async def test_verify_names_a_record_appended_behind_the_logs_back(store: Store) -> None:
    log = await seed(store)
    from bot.store.audit import seal

    forged = seal(
        AuditEntry(TEAM, BOB, AuditAction.ALLOW_LIST_ADDED),
        seq=7,
        at=log[-1].at,
        prev_hash=log[-1].hash,
    )
    await execute(
        store,
        sa.insert(audit_log).values(
            **{k: getattr(forged, k) for k in AuditRecord.__dataclass_fields__}
        ),
    )
    broken = (await AuditTrail(store=store).verify(TEAM)).broken
    assert broken is not None and (broken.seq, broken.kind) == (7, "inserted"), broken


# -- concurrency ---------------------------------------------------------------------------------


async def test_two_engines_appending_at_once_keep_one_chain(database_url: str) -> None:
    # Two engines are two processes as far as the database knows: separate pools, sessions.
    url = async_database_url(database_url)
    first, second = Store.from_url(url), Store.from_url(url)
    await empty(first)
    try:

        async def burst(s: Store, who: str) -> None:
            await asyncio.gather(
                *(
                    s.audit.append(AuditEntry(TEAM, who, AuditAction.REFUSAL, detail=str(i)))
                    for i in range(40)
                )
            )

        async def claims(s: Store, who: str) -> None:
            await asyncio.gather(
                *(
                    s.cancellations.enqueue(
                        workspace_id=TEAM,
                        training_id=f"{who}-{i}",
                        requested_by=ALICE,
                        origin="button",
                    )
                    for i in range(40)
                )
            )

        await asyncio.gather(
            burst(first, "a"), burst(second, "b"), claims(first, "c"), claims(second, "d")
        )
        log = await records(first)
        assert [r.seq for r in log] == list(range(1, 161))
        assert len({r.prev_hash for r in log}) == 160  # no two records share a parent: no fork
        assert (await AuditTrail(store=first).verify()).broken is None
        assert await first.audit.head(TEAM) == (160, log[-1].hash)
    finally:
        await first.close()
        await second.close()


# -- export through the terminal ---------------------------------------------------------------


@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Store]:
    """A SQLite database the CLI reads (DATABASE_URL, no .env), and a store on it."""
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("SLACK_", "MODELSLAB_", "DATABASE_", "AUDIT_", "BOT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", url)
    # In-process commands would take over the root logger (pytest's capture with it).
    monkeypatch.setattr("bot.cli.common.setup_logging", lambda **_: None)
    return url, Store.from_url(async_database_url(url))


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def _seed_two(store: Store) -> list[AuditRecord]:
    await store.migrate()
    written = await store.audit.append(
        AuditEntry(TEAM, ALICE, AuditAction.REQUEST, origin="button", training_id="t-1"),
        AuditEntry(TEAM, "cli:ops", AuditAction.KEY_SET, detail='key ending …abcd, "quoted"'),
        AuditEntry(OTHER, BOB, AuditAction.REFUSAL, detail="not_listed: ünïcode <b>"),
    )
    await store.close()
    return written


def test_export_round_trips_as_json_lines_and_csv(
    cli_db: tuple[str, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    _, store = cli_db
    written = run(_seed_two(store))
    assert main(["audit", "export"]) == 0
    lines = capsys.readouterr().out.splitlines()
    exported = [json.loads(line) for line in lines]
    assert exported == [r.to_json() for r in written]
    rebuilt = [
        AuditRecord(**{("workspace_id" if k == "workspace" else k): v for k, v in line.items()})
        for line in exported
    ]
    assert all(r.expected_hash() == r.hash for r in rebuilt)

    assert main(["audit", "export", "--team", OTHER, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["actor"], r["detail"], r["hash"]) for r in rows] == [
        (BOB, "not_listed: ünïcode <b>", written[2].hash)
    ]
    assert main(["audit", "export", "--since", "2999-01-01"]) == 0
    assert capsys.readouterr().out == ""


def test_verify_exits_0_intact_1_broken_2_usage(
    cli_db: tuple[str, Store], capsys: pytest.CaptureFixture[str]
) -> None:
    url, store = cli_db
    run(_seed_two(store))
    assert main(["audit", "verify"]) == 0
    assert "intact: 3 record(s) in 2 workspace(s)" in capsys.readouterr().out

    async def tamper() -> None:
        s = Store.from_url(async_database_url(url))
        await execute(s, sa.update(audit_log).where(audit_log.c.seq == 2).values(detail="x"))
        await s.close()

    run(tamper())
    assert main(["audit", "verify", "--team", OTHER]) == 0
    capsys.readouterr()
    assert main(["audit", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"workspace {TEAM}: record 2 was changed" in err
    with pytest.raises(SystemExit) as exit_:
        main(["audit", "export", "--format", "xml"])
    assert exit_.value.code == 2
    assert main(["audit", "export", "--since", "yesterday"]) == 2
    assert "not an ISO date" in capsys.readouterr().err


# -- the migration seeds the chain from what was stored -----------------------------------------


async def test_the_migration_chains_stored_cancellations_and_admin_events(
    database_url: str,
) -> None:
    from alembic import command

    from bot.store.migrations import alembic_config

    store = Store.from_url(async_database_url(database_url))
    try:
        # An empty database (PostgreSQL's is shared by the run: the next store fixture
        # migrates it again).
        names = [t.name for t in reversed(metadata.sorted_tables)]
        async with store.engine.begin() as conn:
            for name in [*names, *SLACK_OAUTH_TABLES, "alembic_version"]:
                await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        async with store.engine.connect() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "0007"))
            await conn.commit()
        async with store.engine.begin() as conn:
            common = {
                "attempts": 0,
                "report_attempts": 0,
                "report_next_at": 0,
                "outcome": None,
                "reason": None,
                "finished_at": None,
            }
            await conn.execute(
                sa.insert(cancellations),
                [
                    {
                        **common,
                        "workspace_id": TEAM,
                        "training_id": "old-1",
                        "requested_by": ALICE,
                        "origin": "command",
                        "state": "cancelled",
                        "outcome": "accepted",
                        "reason": "ok",
                        "dry_run": False,
                        "requested_at": 1000,
                        "updated_at": 1010,
                        "finished_at": 1010,
                        "next_attempt_at": 1000,
                        "report_state": "delivered",
                    },
                    {
                        **common,
                        "workspace_id": TEAM,
                        "training_id": "old-2",
                        "requested_by": BOB,
                        "origin": "button",
                        "state": "requested",
                        "dry_run": False,
                        "requested_at": 1020,
                        "updated_at": 1020,
                        "next_attempt_at": 1020,
                        "report_state": "pending",
                    },
                ],
            )
            await conn.execute(
                sa.insert(admin_events),
                [
                    {
                        "workspace_id": TEAM,
                        "actor": "cli:ops",
                        "action": "allow",
                        "detail": BOB,
                        "at": 1005,
                    },
                    {
                        "workspace_id": OTHER,
                        "actor": ALICE,
                        "action": "set_key",
                        "detail": "key ending …wxyz",
                        "at": 999,
                    },
                ],
            )
        await store.migrate()
        log = await records(store)
        assert [(r.action, r.training_id, r.at) for r in log] == [
            ("request", "old-1", iso(1000)),
            ("allow_list_added", None, iso(1005)),
            ("outcome", "old-1", iso(1010)),
            ("request", "old-2", iso(1020)),
        ]
        assert all(r.imported for r in log)
        assert log[2].detail == "cancelled: accepted; ModelsLab said: ok"
        assert await actions(store, OTHER) == ["key_set"]
        assert (await AuditTrail(store=store).verify()).broken is None
        # New records continue the imported chain.
        await store.audit.append(AuditEntry(TEAM, ALICE, AuditAction.KEY_REMOVED))
        assert [r.seq for r in await records(store)] == [1, 2, 3, 4, 5]
        assert (await AuditTrail(store=store).verify()).broken is None
    finally:
        await store.close()


# -- plain helpers -------------------------------------------------------------------------------


def test_since_and_periods_parse_as_users_write_them() -> None:
    assert parse_since("2026-12-01") == "2026-12-01T00:00:00.000000Z"
    assert parse_since("2026-12-01T08:30:00+01:00") == "2026-12-01T07:30:00.000000Z"
    assert parse_since("2026-12-01T08:30Z") == "2026-12-01T08:30:00.000000Z"
    with pytest.raises(ValueError, match="not an ISO date"):
        parse_since("last tuesday")
    assert parse_period("24h") == 86400 and parse_period("7d") == 7 * 86400
    assert parse_period("7x") is None and parse_period("d") is None


async def test_heads_lock_in_the_changes_transaction(store: Store) -> None:
    # A rolled-back transaction leaves neither the record nor a moved head.
    async def failing_change() -> None:
        async with store.begin() as conn:
            await append_in(conn, store, [AuditEntry(TEAM, ALICE, AuditAction.KEY_SET)])
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        await failing_change()
    assert await store.audit.head(TEAM) is None
    assert await records(store) == []
    async with store.reader.connect() as conn:
        assert (
            await conn.execute(sa.select(sa.func.count()).select_from(audit_heads))
        ).scalar() == 0
    # Also after this process has a head in mind: the rolled-back one is never built on.
    await store.audit.append(AuditEntry(TEAM, ALICE, AuditAction.KEY_SET))
    with pytest.raises(RuntimeError):
        await failing_change()
    await store.audit.append(AuditEntry(TEAM, ALICE, AuditAction.KEY_REMOVED))
    assert [(r.seq, r.action) for r in await records(store)] == [(1, "key_set"), (2, "key_removed")]
    assert (await AuditTrail(store=store).verify()).broken is None


def test_audit_token_is_read_once_and_check_warns_about_weak_or_ignored_ones(
    tmp_path: Path,
) -> None:
    base = {"SLACK_BOT_TOKEN": "xoxb-1", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    strong = "k" * 32
    settings = load_settings(Purpose.ADMIN, {**base, "AUDIT_TOKEN": strong})
    assert settings.audit_token == strong and strong in settings.secrets  # redacted in logs
    assert not any("AUDIT_TOKEN" in w for w in settings.warnings)
    short = load_settings(Purpose.ADMIN, {**base, "AUDIT_TOKEN": "abc"})
    assert any("AUDIT_TOKEN is shorter than 16" in w for w in short.warnings)
    oauth = load_settings(
        Purpose.ADMIN,
        {
            **base,
            "AUDIT_TOKEN": strong,
            "SLACK_CLIENT_ID": "1.2",
            "SLACK_CLIENT_SECRET": "s",
            "BOT_ENCRYPTION_KEY": FERNET,
        },
    )
    assert oauth.audit_token is None
    assert any("AUDIT_TOKEN is ignored" in w for w in oauth.warnings)


async def test_held_undone_approved_denied_and_expired_are_one_record_each(store: Store) -> None:
    from bot.model import Hold

    now = time.time()

    async def held(training_id: str, hold: Hold) -> int:
        claimed = await store.cancellations.enqueue(
            workspace_id=TEAM,
            training_id=training_id,
            requested_by=ALICE,
            origin=Origin.BUTTON.value,
            hold=hold,
            held_until=now + 60,
        )
        return claimed.cancellation.id

    undo = await held("t-undo", Hold.UNDO)
    await store.cancellations.end_hold(undo, by=BOB, outcome="undone", reason="undone")
    approve = await held("t-approve", Hold.APPROVAL)
    await store.cancellations.end_hold(approve, by=BOB, approve=True)
    deny = await held("t-deny", Hold.APPROVAL)
    await store.cancellations.end_hold(deny, by=BOB, outcome="denied", reason="denied")
    expire = await held("t-expire", Hold.APPROVAL)
    await store.cancellations.end_hold(expire, by=None, outcome="expired", reason="too late")
    # A decision that comes too late changes nothing and records nothing.
    assert await store.cancellations.end_hold(expire, by=BOB, approve=True) is None

    log = await records(store)
    assert [(r.training_id, r.action, r.actor) for r in log] == [
        ("t-undo", "request", ALICE),
        ("t-undo", "held", ALICE),
        ("t-undo", "undone", BOB),
        ("t-approve", "request", ALICE),
        ("t-approve", "held", ALICE),
        ("t-approve", "approved", BOB),
        ("t-deny", "request", ALICE),
        ("t-deny", "held", ALICE),
        ("t-deny", "denied", BOB),
        ("t-expire", "request", ALICE),
        ("t-expire", "held", ALICE),
        ("t-expire", "expired", ALICE),
    ]
    assert log[1].detail is not None and log[1].detail.startswith("undo: until ")
    assert log[4].detail is not None and log[4].detail.startswith("approval: until ")
    assert (await AuditTrail(store=store).verify()).broken is None


async def test_a_policy_change_is_recorded(store: Store, tmp_path: Path) -> None:
    workspaces = workspaces_service(store, tmp_path)
    await workspaces.set_safety(TEAM, by=ALICE, undo_seconds=30, two_person=True)
    [record] = await records(store)
    assert (record.action, record.actor) == ("policy_set", ALICE)
    assert record.detail == "undo_seconds=30, two_person=True"
    assert [e["action"] for e in await store.workspaces.admin_events(TEAM)] == ["set_safety"]
