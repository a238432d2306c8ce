"""`python -m bot audit export` of 100,000 records runs in bounded memory (issue 15): a real
process, its own peak RSS measured."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import async_database_url
from bot.model import AuditAction, AuditEntry
from bot.store import Store
from bot.store.audit import append_in

TEAM = "T0AUDIT01"
ALICE = "U0ALICE01"


@pytest.fixture
def cli_db(tmp_path: Path) -> tuple[str, Store]:
    """A SQLite database the exporting process reads, and a store on it."""
    url = f"sqlite:///{tmp_path / 'bot.db'}"
    return url, Store.from_url(async_database_url(url))


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_exporting_100000_records_runs_in_bounded_memory(cli_db: tuple[str, Store]) -> None:
    url, store = cli_db

    def peak_rss_kb_of_export() -> tuple[int, int]:
        # VmHWM is this process's own peak (ru_maxrss would carry pytest's over the fork).
        code = (
            "import re, sys\n"
            "from bot.cli import main\n"
            "rc = main(['audit', 'export'])\n"
            "status = open('/proc/self/status').read()\n"
            "sys.stderr.write(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
            "sys.exit(rc)\n"
        )
        lines = 0
        proc = subprocess.Popen(  # noqa: S603 - this interpreter, a constant script
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AUDIT_"))},
                "DATABASE_URL": url,
            },
            cwd=Path(url.removeprefix("sqlite:///")).parent,
        )
        assert proc.stdout is not None and proc.stderr is not None
        for _ in proc.stdout:
            lines += 1
        peak = int(proc.stderr.read().decode().strip().splitlines()[-1])
        assert proc.wait(timeout=300) == 0
        return lines, peak

    run(_refill(store, 1_000))
    small_lines, small_peak = peak_rss_kb_of_export()
    Path(url.removeprefix("sqlite:///")).unlink()
    store = Store.from_url(async_database_url(url))
    run(_refill(store, 100_000))
    lines, peak = peak_rss_kb_of_export()
    assert (small_lines, lines) == (1_000, 100_000)
    # Holding 100,000 records would take well over 100 MB; streaming keeps to one page.
    assert peak - small_peak < 30_000, (small_peak, peak)


async def _refill(store: Store, n: int) -> None:
    await store.migrate()
    async with store.begin() as conn:  # one transaction, one head update
        entries = [
            AuditEntry(TEAM, ALICE, AuditAction.REQUEST, training_id=f"train-{i:06d}")
            for i in range(n)
        ]
        await append_in(conn, store, entries)
    await store.close()
