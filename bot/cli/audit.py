"""`python -m bot audit export|verify`: the audit log to stdout, and its hash chain checked."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import TextIO

from bot.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, _sentence, _settings, open_store
from bot.config import Purpose
from bot.errors import StoreUnavailable
from bot.model import AuditRecord
from bot.service.audit import FIELDS, AuditTrail, parse_since

# Lines written between flushes: the output streams, and a pipe sees it as it comes.
_FLUSH_EVERY = 1000


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `audit export` and `audit verify`."""
    audit = sub.add_parser("audit", help="export the audit log, or verify its hash chain")
    verbs = audit.add_subparsers(dest="audit_command", metavar="VERB", required=True)
    export = verbs.add_parser("export", help="the audit log to stdout, oldest first")
    export.add_argument("--team", help="one workspace (T…); default: every workspace")
    export.add_argument("--since", help="records at or after this ISO date or date-time (UTC)")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    verify = verbs.add_parser(
        "verify", help="recompute the hash chain; exit 0 intact, 1 naming the first broken record"
    )
    verify.add_argument("--team", help="one workspace (T…); default: every workspace")


def json_line(record: AuditRecord) -> str:
    """One export line: the record's fields, hashes included, as compact JSON."""
    return json.dumps(record.to_json(), separators=(",", ":"), ensure_ascii=False)


async def cmd_audit(args: argparse.Namespace) -> int:
    """Run `audit export` or `audit verify`."""
    since = None
    if getattr(args, "since", None):
        try:
            since = parse_since(args.since)
        except ValueError as exc:
            print(f"--since: {exc}", file=sys.stderr)
            return EXIT_USAGE
    settings = _settings(Purpose.ADMIN)
    try:
        store = await open_store(settings)
    except StoreUnavailable as exc:
        print(f"Cannot read the audit log: {_sentence(exc)}", file=sys.stderr)
        return EXIT_FAILED
    trail = AuditTrail(store=store)
    try:
        if args.audit_command == "export":
            return await _export(trail, team=args.team, since=since, fmt=args.format)
        return await _verify(trail, team=args.team)
    except StoreUnavailable as exc:
        print(f"Cannot read the audit log: {_sentence(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()


async def _export(trail: AuditTrail, *, team: str | None, since: str | None, fmt: str) -> int:
    out: TextIO = sys.stdout
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(FIELDS)
    written = 0
    try:
        async for record in trail.export(workspace_id=team, since=since):
            if writer is not None:
                values = record.to_json()
                writer.writerow(["" if values[f] is None else values[f] for f in FIELDS])
            else:
                out.write(json_line(record) + "\n")
            written += 1
            if written % _FLUSH_EVERY == 0:
                out.flush()
        out.flush()
    except BrokenPipeError:
        # `audit export | head`: the reader has what it wanted.
        return EXIT_OK
    return EXIT_OK


async def _verify(trail: AuditTrail, *, team: str | None) -> int:
    result = await trail.verify(team)
    if result.broken is not None:
        print(f"Audit log BROKEN: {result.broken.message}.", file=sys.stderr)
        return EXIT_FAILED
    scope = f"workspace {team}" if team else f"{result.workspaces} workspace(s)"
    print(f"Audit log intact: {result.records} record(s) in {scope}.")
    return EXIT_OK
