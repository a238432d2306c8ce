"""The one table (Markdown), the machine, and PASS/FAIL per target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import median

MB = 1_000_000 / 1024  # kB (KiB, as /proc reports) per MB (10^6 bytes)
OURS = ("sqlite-single", "pg-single", "pg-split", "sqlite-oauth", "pg-oauth")
LABELS = {
    "floor": "floor",
    "tutorial": "tutorial",
    "sqlite-single": "ours SQLite single",
    "pg-single": "ours PG single",
    "pg-split": "ours PG split",
    "sqlite-oauth": "ours SQLite OAuth",
    "pg-oauth": "ours PG OAuth",
}


def _ms(seconds: float | None, capped: bool = False, cap: float = 0.0) -> str:
    if seconds is None:
        return "-"
    if capped and seconds >= cap - 1e-3:
        return f"≥{cap * 1000:.0f}"
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.2f}"
    if ms < 100:
        return f"{ms:.1f}"
    return f"{ms:.0f}"


def _ratio(value: float | None, floor: float | None) -> str:
    if value is None or floor is None or floor == 0:
        return ""
    r = value / floor
    return f" ({r:.2g}x)" if r < 10 else f" ({r:.0f}x)"


@dataclass
class Row:
    label: str
    value: Callable[[dict[str, Any]], float | None]
    fmt: Callable[[float | None, dict[str, Any]], str]
    target: str = ""
    check: Callable[[float, str], bool] | None = None
    ratio: bool = True
    context: str = ""  # added to the label in the PASS/FAIL lines


def _grid(cell: str, key: str) -> Callable[[dict[str, Any]], float | None]:
    def get(t: dict[str, Any]) -> float | None:
        r = t.get("grid", {}).get(cell)
        return None if r is None else r.get(key)

    return get


def _lat_fmt(cell: str) -> Callable[[float | None, dict[str, Any]], str]:
    def fmt(v: float | None, t: dict[str, Any]) -> str:
        r = t.get("grid", {}).get(cell) or {}
        return _ms(v, bool(r.get("capped")), float(r.get("cap", 0)))

    return fmt


def _over_fmt(cell: str) -> Callable[[float | None, dict[str, Any]], str]:
    def fmt(v: float | None, t: dict[str, Any]) -> str:
        r = t.get("grid", {}).get(cell)
        return "-" if r is None else f"{r['over_3s_or_failed']} / {r['n']}"

    return fmt


def _num(v: float | None, _: dict[str, Any]) -> str:
    return "-" if v is None else f"{v:,.0f}"


def _msv(v: float | None, _: dict[str, Any]) -> str:
    return _ms(v)


def _mb(v: float | None, t: dict[str, Any]) -> str:
    if v is None:
        return "-"
    base = (t.get("import") or {}).get("VmHWM")
    extra = f" (+{(v - base) / MB:.0f})" if base and v != base else ""
    return f"{v / MB:.0f}{extra}"


def _sec(v: float | None, _: dict[str, Any]) -> str:
    return "-" if v is None else f"{v:.2f} s"


def _e2e(key: str) -> Callable[[dict[str, Any]], float | None]:
    def get(t: dict[str, Any]) -> float | None:
        e = t.get("e2e")
        return None if e is None else e.get(key)

    return get


def _slack_calls(v: float | None, t: dict[str, Any]) -> str:
    e = t.get("e2e")
    if e is None:
        return "-"
    parts = ", ".join(f"{k} {c:g}" for k, c in e["slack_methods_per_cancellation"].items())
    fixed = "" if len(e["slack_per_id_distinct"]) <= 1 else " (varies)"
    return f"{e['slack_per_cancellation']:g}{fixed}: {parts}" if parts else "0"


LOOKUP_METHODS = ("auth.test", "users.info", "usergroups.users.list")


def _lookups(t: dict[str, Any]) -> float | None:
    cells = t.get("grid") or {}
    if not cells:
        return None
    return float(
        sum(
            (cell.get("fakes") or {}).get("slack_methods", {}).get(m, 0)
            for cell in cells.values()
            for m in LOOKUP_METHODS
        )
    )


def _mem(key: str, source: str) -> Callable[[dict[str, Any]], float | None]:
    def get(t: dict[str, Any]) -> float | None:
        if source == "load":
            v = t.get("load_hwm_kb")
            return float(v) if v else None
        m = t.get(source) or {}
        v = m.get(key)
        return float(v) if v else None

    return get


def _crash_calls_beyond_design(t: dict[str, Any]) -> float | None:
    """Cancellations of the crash run called other than design §6 allows (0 when all are right).

    Exactly one ModelsLab call each, except that a call the killed worker had begun may be sent
    once more on recovery. Without the per-training record (older results), any cancellation
    not called exactly once counts.
    """
    c = t.get("crash")
    if c is None or not c["modelslab_calls_per_cancellation"]:
        return None
    if "cancellations_called_beyond_design" in c:
        return float(len(c["cancellations_called_beyond_design"]))
    calls = c["modelslab_calls_per_cancellation"]
    return float(sum(n for k, n in calls.items() if k != "1"))


def _crash_calls_fmt(v: float | None, t: dict[str, Any]) -> str:
    c = t.get("crash")
    if c is None:
        return "-"
    calls = c["modelslab_calls_per_cancellation"]
    shown = ", ".join(f"{k}: {n}" for k, n in sorted(calls.items())) or "-"
    return shown if v is None else f"{shown}; beyond design: {v:g}"


def build_rows(results: dict[str, Any]) -> list[tuple[str, list[Row]]]:
    options = results["options"]
    latencies = options["latencies"]
    in_flight = options["in_flight"]
    top = max(in_flight)
    sections: list[tuple[str, list[Row]]] = []
    for latency in latencies:
        rows: list[Row] = []
        context = f"ModelsLab {latency:g} s"
        for n in in_flight:
            cell = f"{n}@{latency:g}"
            where = f"{n} in flight"
            p99_target = n == 100
            rows += [
                Row(f"ack p50 ms, {where}", _grid(cell, "p50"), _lat_fmt(cell)),
                Row(f"ack p95 ms, {where}", _grid(cell, "p95"), _lat_fmt(cell)),
                Row(
                    f"ack p99 ms, {where}",
                    _grid(cell, "p99"),
                    _lat_fmt(cell),
                    "≤ 100" if p99_target else "",
                    (lambda v, _n: v <= 0.100) if p99_target else None,
                    context=context,
                ),
                Row(f"ack max ms, {where}", _grid(cell, "max"), _lat_fmt(cell)),
                Row(
                    f"acks > 3 s or failed / sent, {where}",
                    _grid(cell, "over_3s_or_failed"),
                    _over_fmt(cell),
                    "0" if (n == top and latency == max(latencies)) else "",
                    (lambda v, _n: v == 0) if (n == top and latency == max(latencies)) else None,
                    ratio=False,
                    context=context,
                ),
            ]
        sections.append(
            (
                f"Ack latency, ModelsLab answering in {latency:g} s "
                f"({options['duration']:g} s of load per row group)",
                rows,
            )
        )

    def tp_target(path: str) -> tuple[str, Callable[[float, str], bool]]:
        need = 1000 if path == "refused" else 400
        return (
            f"≥ {need:,} SQLite, ≥ {need // 2} PG",
            lambda v, name: v >= (need if name.startswith("sqlite") else need / 2),
        )

    tp_rows = []
    for path, what in (
        ("allowed", "allowed path (new durable claim each)"),
        ("refused", "refused path"),
    ):
        text, check = tp_target(path)
        tp_rows.append(
            Row(
                f"sustained acks/s, {what}",
                lambda t, p=path: (t.get("throughput", {}).get(p) or {}).get("rate"),
                _num,
                text,
                check,
            )
        )
    for path in ("allowed", "refused"):
        tp_rows.append(
            Row(
                f"server CPU ms per ack, {path} path (user+system, incl. background work)",
                lambda t, p=path: (t.get("throughput", {}).get(p) or {}).get(
                    "server_cpu_per_request_ms"
                ),
                lambda v, _t: "-" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}"),
            )
        )
    sections.append(
        (
            f"Throughput of one process ({options['throughput_in_flight']} in flight, "
            f"ModelsLab {min(latencies):g} s, {options['throughput_duration']:g} s, "
            f"first {options['throughput_warmup']:g} s not counted)",
            tp_rows,
        )
    )
    sections.append(
        (
            f"End to end: click on a notification → outcome posted in its thread, one click at a "
            f"time, minus ModelsLab's {min(latencies):g} s ({options['e2e_clicks']} clicks)",
            [
                Row(
                    "overhead p50 ms", _e2e("overhead_p50"), _msv, "≤ 20", lambda v, _n: v <= 0.020
                ),
                Row("overhead p99 ms", _e2e("overhead_p99"), _msv),
                Row(
                    "  of p50: click sent → ModelsLab call arrives",
                    _e2e("click_to_modelslab_p50"),
                    _msv,
                ),
                Row(
                    "  of p50: ModelsLab answers → reply arrives",
                    _e2e("modelslab_to_reply_p50"),
                    _msv,
                ),
                Row(
                    "outcomes lost",
                    lambda t: None if t.get("e2e") is None else float(len(t["e2e"]["lost"])),
                    _num,
                    "0",
                    lambda v, _n: v == 0,
                    ratio=False,
                ),
                Row(
                    "ModelsLab calls per cancellation",
                    _e2e("modelslab_per_cancellation"),
                    lambda v, t: "-" if v is None else f"{v:g}",
                    "exactly 1",
                    lambda v, name: v == 1,
                    ratio=False,
                ),
                Row(
                    "auth.test / users.info / usergroups.users.list calls during all ack-latency load",
                    _lookups,
                    _num,
                    "0 (cached)",
                    lambda v, _n: v == 0,
                    ratio=False,
                ),
                Row(
                    "Slack API calls per cancellation",
                    _e2e("slack_per_cancellation"),
                    _slack_calls,
                    "fixed",
                    None,
                    ratio=False,
                ),
            ],
        )
    )
    sections.append(
        (
            "Crash run (split targets): the worker is killed with SIGKILL mid-load and started "
            "again",
            [
                Row(
                    "cancellations acked during the crash run",
                    lambda t: None if t.get("crash") is None else float(t["crash"]["acks"]),
                    _num,
                    ratio=False,
                ),
                Row(
                    "outcomes lost (no reply in the thread)",
                    lambda t: (
                        None if t.get("crash") is None else float(len(t["crash"]["outcomes_lost"]))
                    ),
                    _num,
                    "0",
                    lambda v, _n: v == 0,
                    ratio=False,
                    context="crash run",
                ),
                Row(
                    "ModelsLab calls per cancellation (calls: cancellations); beyond design §6",
                    _crash_calls_beyond_design,
                    _crash_calls_fmt,
                    "1 each; a call in flight at the kill may be re-sent once",
                    lambda v, _n: v == 0,
                    ratio=False,
                    context="crash run",
                ),
                Row(
                    "last outcome, seconds after the worker restarted (lease of the killed one: 45 s)",
                    lambda t: (t.get("crash") or {}).get("last_outcome_after_restart_seconds"),
                    _sec,
                    ratio=False,
                ),
            ],
        )
    )
    sections.append(
        (
            "Memory: peak RSS (VmHWM) in MB, (+ over the import baseline)",
            [
                Row('import baseline (python -c "import M")', _mem("VmHWM", "import"), _mb),
                Row(
                    "idle, 1 s after healthy",
                    _mem("VmHWM", "idle"),
                    _mb,
                    "≤ baseline + 30",
                    None,
                ),
                Row(
                    f"after {top} in flight (peak of both ModelsLab latencies)",
                    _mem("VmHWM", "load"),
                    _mb,
                    "≤ baseline + 70",
                    None,
                ),
            ],
        )
    )
    sections.append(
        (
            "Start",
            [
                Row(
                    "start → healthy (median of every restart)",
                    lambda t: median(t["starts"]) if t.get("starts") else None,
                    _sec,
                    "≤ 1.5 s",
                    lambda v, _n: v <= 1.5,
                ),
                Row(
                    "start → healthy, slowest restart",
                    lambda t: max(t["starts"]) if t.get("starts") else None,
                    _sec,
                ),
                Row(
                    "first start on an empty database (migrations)",
                    lambda t: t.get("first_start"),
                    _sec,
                    ratio=False,
                ),
            ],
        )
    )
    return sections


def _memory_check(t: dict[str, Any], row_label: str) -> bool | None:
    base = (t.get("import") or {}).get("VmHWM")
    if not base:
        return None
    if row_label.startswith("idle"):
        v = (t.get("idle") or {}).get("VmHWM")
        return None if not v else (v - base) / MB <= 30
    if row_label.startswith("after"):
        v = t.get("load_hwm_kb")
        return None if not v else (v - base) / MB <= 70
    return None


def verdict(row: Row, name: str, t: dict[str, Any]) -> bool | None:
    """PASS (True), FAIL (False) or not applicable (None) for one of our columns."""
    if name not in OURS or not row.target:
        return None
    if row.target.startswith("≤ baseline"):
        return _memory_check(t, row.label)
    if row.label.startswith("Slack API calls"):
        e = t.get("e2e")
        return None if e is None else len(e["slack_per_id_distinct"]) <= 1
    v = row.value(t)
    if v is None or row.check is None:
        return None
    return row.check(v, name)


def table(results: dict[str, Any]) -> str:
    targets = results["targets"]
    names = [n for n in ("floor", "tutorial", *OURS) if n in targets]
    floor = targets.get("floor")
    header = ["figure", "target", *(LABELS[n] for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for title, rows in build_rows(results):
        lines.append(f"| **{title}** |" + " |" * (len(header) - 1))
        for row in rows:
            cells = [row.label, row.target]
            floor_value = row.value(floor) if (floor is not None and row.ratio) else None
            for name in names:
                t = targets[name]
                value = row.value(t)
                text = row.fmt(value, t)
                if row.ratio and name != "floor" and value is not None:
                    text += _ratio(value, floor_value)
                mark = verdict(row, name, t)
                if mark is not None:
                    text += " ✓" if mark else " ✗"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(results: dict[str, Any]) -> list[str]:
    """One PASS/FAIL line per target and variant of ours."""
    targets = results["targets"]
    out = []
    for _title, rows in build_rows(results):
        for row in rows:
            if not row.target:
                continue
            marks = []
            for name in OURS:
                if name not in targets:
                    continue
                mark = verdict(row, name, targets[name])
                if mark is None:
                    continue
                marks.append(f"{LABELS[name]} {'PASS' if mark else 'FAIL'}")
            if marks:
                overall = "PASS" if all(m.endswith("PASS") for m in marks) else "FAIL"
                label = f"{row.label}, {row.context}" if row.context else row.label
                out.append(f"{overall}  {label} [{row.target}]: " + "; ".join(marks))
    return out


@dataclass
class FloorTarget:
    """A target stated as a ratio to the floor measured in the same run (issue 16)."""

    label: str
    value: Callable[[dict[str, Any]], float | None]
    limits: dict[str, float]  # variant → the largest allowed ratio to the floor


def _cpu_per_ack(t: dict[str, Any]) -> float | None:
    return (t.get("throughput", {}).get("allowed") or {}).get("server_cpu_per_request_ms")


def floor_targets(results: dict[str, Any]) -> list[FloorTarget]:
    """The ratio targets: CPU per allowed ack and ack p99 at 100 in flight."""
    out = [
        FloorTarget(
            "allowed-path server CPU per ack (web process, user+system)",
            _cpu_per_ack,
            {"sqlite-single": 4.0, "pg-split": 5.0},
        )
    ]
    if 100 in results["options"]["in_flight"]:
        for latency in results["options"]["latencies"]:
            out.append(
                FloorTarget(
                    f"ack p99 at 100 in flight, ModelsLab {latency:g} s",
                    _grid(f"100@{latency:g}", "p99"),
                    {"pg-split": 2.0, "sqlite-single": 3.0},
                )
            )
    return out


def floor_verdicts(results: dict[str, Any]) -> list[str]:
    """PASS or MISSED, with the ratio, per ratio target and variant it names."""
    targets = results["targets"]
    floor = targets.get("floor")
    lines = []
    for ft in floor_targets(results):
        base = None if floor is None else ft.value(floor)
        for name, limit in ft.limits.items():
            if name not in targets:
                continue
            value = ft.value(targets[name])
            head = f"{ft.label}, {LABELS[name]} [≤ {limit:g}x the floor]"
            if value is None or not base:
                lines.append(f"n/a     {head}: not measured (floor or variant missing)")
                continue
            ratio = value / base
            mark = "PASS  " if ratio <= limit else "MISSED"
            lines.append(
                f"{mark}  {head}: {ratio:.2f}x ({value * _unit(ft):.2f} vs floor "
                f"{base * _unit(ft):.2f} ms)"
            )
    return lines


def _unit(ft: FloorTarget) -> float:
    """CPU figures are already in ms; latencies are in seconds."""
    return 1.0 if ft.value is _cpu_per_ack else 1000.0


def machine_text(results: dict[str, Any]) -> str:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return (
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB RAM, "
        f"Linux {m['kernel']}, {m['implementation']} {m['python']}; {versions}.\n"
        f"Pinning: {m['pinning']}. The PostgreSQL server is not pinned (it is a system service "
        f"and runs on whichever core is free).\n"
        f"Command: {results['command']} (started {results['started']}, finished "
        f"{results['finished']}; load average {results.get('loadavg_start')} at the start, "
        f"{results.get('loadavg_end')} at the end).\n"
        f"Bot measured: {results.get('code', 'unknown')}."
    )


def trace_table(results: dict[str, Any]) -> str | None:
    """Where the milliseconds of one ack go, from the probed runs (scenario "trace")."""
    columns: list[tuple[str, dict[str, Any]]] = []
    for name, t in results["targets"].items():
        for cell, data in (t.get("trace") or {}).items():
            path, _, n = cell.partition("@")
            columns.append((f"{LABELS.get(name, name)}, {path}, {n} in flight", data))
    if not columns:
        return None

    def fmt(v: float | None) -> str:
        return "-" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")

    seg_names: list[str] = []
    pre_names: list[str] = []
    post_names: list[str] = []
    for _, data in columns:
        for k in data["segments"]:
            if k not in seg_names:
                seg_names.append(k)
        pre_names += [k for k in data["before_ack"] if k not in pre_names]
        post_names += [k for k in data["after_ack"] if k not in post_names]
    header = ["ms (segments: median)", *(c for c, _ in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(label: str, values: list[float | None]) -> None:
        lines.append("| " + " | ".join([label, *(fmt(v) for v in values)]) + " |")

    row("client-measured ack latency p50", [(d["client_p50"] or 0) * 1000 for _, d in columns])
    handler = [d["segments"].get("handler total") for _, d in columns]
    row(
        "outside our handler: aiohttp, event-loop queueing, network",
        [
            None if h is None else (d["client_p50"] or 0) * 1000 - h
            for h, (_, d) in zip(handler, columns, strict=True)
        ],
    )
    for k in seg_names:
        row(k, [d["segments"].get(k) for _, d in columns])
    for k in pre_names:
        row(
            f"  before the ack, mean per request: {k}", [d["before_ack"].get(k) for _, d in columns]
        )
    for k in post_names:
        row(
            f"  after the ack (not in its latency): {k}",
            [d["after_ack"].get(k) for _, d in columns],
        )
    return "\n".join(lines)


def full_report(results: dict[str, Any]) -> str:
    scenarios = set(results["options"]["scenarios"])
    parts = [machine_text(results), ""]
    if scenarios - {"trace"}:
        parts += [table(results), "", "Targets:"]
        parts += [f"  {line}" for line in verdicts(results)]
        ratio_lines = floor_verdicts(results)
        if ratio_lines:
            parts += ["", "Targets as ratios to the floor of this run:"]
            parts += [f"  {line}" for line in ratio_lines]
    traced = trace_table(results)
    if traced is not None:
        parts += [
            "",
            "Where the milliseconds of one ack go (probed runs, bench/probe.py; the probes add a "
            "little overhead, read proportions; calls nest, e.g. AccessPolicy.check includes its "
            "store reads):",
            "",
            traced,
        ]
    errors = [
        f"  {LABELS.get(name, name)}: {t['error']}"
        for name, t in results["targets"].items()
        if t.get("error")
    ]
    if errors:
        parts += ["", "Not measured (the run of these targets failed):", *errors]
    return "\n".join(parts)


def quick_report(results: dict[str, Any]) -> str:
    q = results["quick"]
    load = q["load"]
    per_cancel = q["modelslab_calls_per_cancellation"]
    ok = (
        q["acks_over_3s_or_failed"] == 0
        and not q["outcomes_lost"]
        and all(c == 1 for c in per_cancel)
        and q["modelslab_cancel_calls_total"] == len(per_cancel)
    )
    slack = ", ".join(f"{k} {v:g}" for k, v in q["slack_calls_per_cancellation"].items())
    lines = [
        machine_text(results),
        "",
        f"| quick smoke: {q['target']}, {q['requests']} requests at {q['in_flight']} in flight, ModelsLab 0.1 s | |",
        "|---|---|",
        f"| start → healthy | {q['start_seconds']:.2f} s |",
        f"| ack p50 / p99 / max ms | {_ms(load['p50'])} / {_ms(load['p99'])} / {_ms(load['max'])} |",
        f"| acks > 3 s or failed | {q['acks_over_3s_or_failed']} |",
        f"| outcomes lost (no reply in a thread) | {len(q['outcomes_lost'])} |",
        f"| ModelsLab cancel calls per cancellation | {sorted(set(per_cancel))} (total {q['modelslab_cancel_calls_total']} for {len(per_cancel)}) |",
        f"| Slack API calls per cancellation | {slack} |",
        f"| peak RSS | {(q['hwm_kb'] or 0) / MB:.0f} MB |",
        "",
        f"{'PASS' if ok else 'FAIL'}  no ack over 3 s, no lost outcome, exactly one ModelsLab call per cancellation",
    ]
    return "\n".join(lines)
