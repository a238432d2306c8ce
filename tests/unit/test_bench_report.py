"""bench/report.py: the ratio targets against the floor of the same run, and the crash run."""

from __future__ import annotations

from typing import Any

from bench.report import floor_verdicts, verdicts


def _target(cpu_ms: float, p99: float, crash: dict[str, Any] | None = None) -> dict[str, Any]:
    t: dict[str, Any] = {
        "label": "x",
        "starts": [],
        "throughput": {"allowed": {"server_cpu_per_request_ms": cpu_ms}},
        "grid": {"100@0.1": {"p99": p99, "n": 10, "over_3s_or_failed": 0}},
    }
    if crash is not None:
        t["crash"] = crash
    return t


def _results(**targets: dict[str, Any]) -> dict[str, Any]:
    return {
        "options": {
            "latencies": [0.1],
            "in_flight": [100],
            "duration": 3,
            "throughput_in_flight": 50,
            "throughput_duration": 5,
            "throughput_warmup": 1,
            "e2e_clicks": 30,
        },
        "targets": targets,
    }


def test_ratio_targets_pass_and_missed_show_the_ratio() -> None:
    results = _results(
        floor=_target(0.5, 0.010),
        **{"sqlite-single": _target(1.5, 0.040), "pg-split": _target(3.0, 0.015)},
    )
    lines = floor_verdicts(results)
    by = {line.split("]: ")[0].split(None, 1)[1]: line for line in lines}
    cpu = "allowed-path server CPU per ack (web process, user+system)"
    p99 = "ack p99 at 100 in flight, ModelsLab 0.1 s"
    assert by[f"{cpu}, ours SQLite single [≤ 4x the floor"].startswith("PASS")
    assert "3.00x (1.50 vs floor 0.50 ms)" in by[f"{cpu}, ours SQLite single [≤ 4x the floor"]
    assert by[f"{cpu}, ours PG split [≤ 5x the floor"].startswith("MISSED")
    assert "6.00x" in by[f"{cpu}, ours PG split [≤ 5x the floor"]
    assert by[f"{p99}, ours PG split [≤ 2x the floor"].startswith("PASS")
    missed = by[f"{p99}, ours SQLite single [≤ 3x the floor"]
    assert missed.startswith("MISSED")
    assert "4.00x (40.00 vs floor 10.00 ms)" in missed


def test_ratio_targets_without_a_floor_are_not_judged() -> None:
    lines = floor_verdicts(_results(**{"pg-split": _target(3.0, 0.015)}))
    assert lines
    assert all(line.startswith("n/a") for line in lines)


def test_crash_run_fails_when_a_cancellation_was_called_twice_or_lost() -> None:
    crash = {
        "acks": 3,
        "outcomes_lost": ["t3"],
        "modelslab_calls_per_cancellation": {"1": 2, "2": 1},
        "last_outcome_after_restart_seconds": 1.0,
    }
    lines = verdicts(_results(**{"pg-split": _target(1, 0.01, crash)}))
    crash_lines = [line for line in lines if "crash run" in line]
    assert len(crash_lines) == 2
    assert all(line.startswith("FAIL") for line in crash_lines)

    clean = {**crash, "outcomes_lost": [], "modelslab_calls_per_cancellation": {"1": 3}}
    lines = verdicts(_results(**{"pg-split": _target(1, 0.01, clean)}))
    crash_lines = [line for line in lines if "crash run" in line]
    assert len(crash_lines) == 2
    assert all(line.startswith("PASS") for line in crash_lines)


def test_crash_run_allows_one_resend_of_a_call_the_kill_interrupted_and_nothing_more() -> None:
    # Design §6: only a crash in the middle of a call may cause one re-send on recovery.
    resent = {
        "acks": 3,
        "outcomes_lost": [],
        "modelslab_calls_per_cancellation": {"1": 2, "2": 1},
        "cancellations_called_beyond_design": [],
        "last_outcome_after_restart_seconds": 1.0,
    }
    lines = verdicts(_results(**{"pg-split": _target(1, 0.01, resent)}))
    [calls] = [line for line in lines if "crash run" in line and "ModelsLab calls" in line]
    assert calls.startswith("PASS"), calls

    # A second call of a cancellation the dead worker had not begun is a real double cancel.
    doubled = {**resent, "cancellations_called_beyond_design": ["t2"]}
    lines = verdicts(_results(**{"pg-split": _target(1, 0.01, doubled)}))
    [calls] = [line for line in lines if "crash run" in line and "ModelsLab calls" in line]
    assert calls.startswith("FAIL"), calls
