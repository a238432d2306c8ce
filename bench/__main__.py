"""``python -m bench``: the benchmark in one command (see bench/README.md)."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from pathlib import Path

from bench.report import full_report, quick_report
from bench.run import (
    ALL_SCENARIOS,
    ALL_TARGETS,
    DEFAULT_SCENARIOS,
    Options,
    default_pg_url,
    run,
)


def _csv(kind: type, allowed: tuple[str, ...] | None = None):  # type: ignore[no-untyped-def]
    def parse(text: str) -> tuple:  # type: ignore[type-arg]
        values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        if allowed is not None:
            bad = [v for v in values if v not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"unknown: {', '.join(bad)} (choose from {', '.join(allowed)})"
                )
        if not values:
            raise argparse.ArgumentTypeError("empty list")
        return values

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the bot against the floor and the tutorial shape; print one table.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="seconds-long smoke run: one SQLite single-workspace bot, 20 requests at 10 in "
        "flight; checks no ack over 3 s, no lost outcome, one ModelsLab call per cancellation",
    )
    p.add_argument(
        "--targets",
        type=_csv(str, ALL_TARGETS),
        default=ALL_TARGETS,
        help=f"comma-separated, default all: {','.join(ALL_TARGETS)}",
    )
    p.add_argument(
        "--scenarios",
        type=_csv(str, ALL_SCENARIOS),
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated from {','.join(ALL_SCENARIOS)}; default "
        f"{','.join(DEFAULT_SCENARIOS)} (crash: split targets only, the worker is killed with "
        "SIGKILL mid-load and started again; trace: probed runs of our bot showing where the "
        "milliseconds of one ack go, printed as a second table)",
    )
    p.add_argument("--in-flight", type=_csv(int), default=(1, 50, 100, 200), metavar="N,N,…")
    p.add_argument(
        "--latencies",
        type=_csv(float),
        default=(0.1, 5.0),
        metavar="S,S",
        help="fake ModelsLab latencies in seconds (default 0.1,5)",
    )
    p.add_argument("--duration", type=float, default=3.0, help="seconds of load per grid cell")
    p.add_argument("--throughput-duration", type=float, default=5.0)
    p.add_argument("--throughput-in-flight", type=int, default=50)
    p.add_argument(
        "--throughput-warmup",
        type=float,
        default=1.0,
        help="seconds at the start of a throughput run that are not counted",
    )
    p.add_argument("--e2e-clicks", type=int, default=30)
    p.add_argument("--cap", type=float, default=10.0, help="client timeout per request (s)")
    p.add_argument(
        "--max-requests", type=int, default=50_000, help="upper bound on requests per load run"
    )
    p.add_argument("--quick-requests", type=int, default=20)
    p.add_argument("--quick-in-flight", type=int, default=10)
    p.add_argument(
        "--pg-url",
        default=default_pg_url(),
        help="PostgreSQL server (its database is only used to CREATE/DROP the bench's own "
        "databases); default $BENCH_DATABASE_URL, $TEST_DATABASE_URL or "
        "postgresql://postgres@127.0.0.1:5432/test",
    )
    p.add_argument("--workdir", type=Path, help="keep databases and logs here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--json", type=Path, dest="json_out", help="also write every figure as JSON")
    p.add_argument(
        "--bot-src",
        type=Path,
        help="directory holding another checkout's bot/ package to measure instead of this one",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    raw = sys.argv[1:] if argv is None else argv
    options = Options(
        quick=args.quick,
        targets=args.targets,
        scenarios=args.scenarios,
        in_flight=args.in_flight,
        latencies=args.latencies,
        duration=args.duration,
        throughput_duration=args.throughput_duration,
        throughput_in_flight=args.throughput_in_flight,
        throughput_warmup=args.throughput_warmup,
        e2e_clicks=args.e2e_clicks,
        cap=args.cap,
        max_requests=args.max_requests,
        quick_requests=args.quick_requests,
        quick_in_flight=args.quick_in_flight,
        pg_url=args.pg_url,
        workdir=args.workdir,
        keep=args.keep,
        json_out=args.json_out,
        bot_src=args.bot_src.resolve() if args.bot_src else None,
        command=" ".join(["python -m bench", *map(shlex.quote, raw)]),
    )
    results = asyncio.run(run(options))
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(results, indent=2, default=str))
    if options.quick:
        text = quick_report(results)
        print(text)
        return 0 if text.rstrip().splitlines()[-1].startswith("PASS") else 1
    print(full_report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
