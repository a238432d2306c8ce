"""The claim's own cost (one enqueue, its audit record included), without HTTP or Slack.

python -m bench.claims                      # SQLite in a temporary directory
python -m bench.claims postgresql://…/db    # an existing, empty PostgreSQL database
PYTHONPATH=/other/checkout python -m bench.claims   # another checkout's bot/
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time

from bot.config import async_database_url
from bot.store import Store

WARMUP, SEQUENTIAL, ROUNDS, AT_ONCE = 50, 600, 30, 20


def _p(values: list[float], q: float) -> float:
    return sorted(values)[max(int(len(values) * q) - 1, 0)]


async def measure(url: str) -> str:
    """Claim latencies: one at a time, then AT_ONCE together; one line of p50/p99 in ms."""
    store = Store.from_url(async_database_url(url))
    await store.migrate()
    counter = iter(range(10**9))

    async def claim() -> float:
        started = time.perf_counter()
        await store.cancellations.enqueue(
            workspace_id="T0BENCH01",
            training_id=f"bench-{time.time_ns()}-{next(counter)}",
            requested_by="U0BENCH01",
            origin="button",
        )
        return (time.perf_counter() - started) * 1000

    try:
        for _ in range(WARMUP):
            await claim()
        one = [await claim() for _ in range(SEQUENTIAL)]
        together: list[float] = []
        for _ in range(ROUNDS):
            together += await asyncio.gather(*(claim() for _ in range(AT_ONCE)))
    finally:
        await store.close()
    return (
        f"one at a time: p50 {statistics.median(one):.2f} p99 {_p(one, 0.99):.2f} ms | "
        f"{AT_ONCE} at once: p50 {statistics.median(together):.2f} "
        f"p99 {_p(together, 0.99):.2f} ms"
    )


def main() -> None:
    """Measure on the URL given, else on a new SQLite file."""
    if len(sys.argv) > 1:
        url = sys.argv[1]
    else:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-claims-')}/bench.db"
    print(asyncio.run(measure(url)))


if __name__ == "__main__":
    main()
