"""The benchmark's quick variant as a smoke test (bench/README.md).

`python -m bench --quick` starts the fakes, one SQLite single-workspace `python -m bot serve` and a
separate load process: 20 signed commands and button clicks at 10 in flight, each cancelling its
own training. Only what cannot be noise is asserted: no ack over 3 s, no lost outcome, and
exactly one ModelsLab call per cancellation. Latencies and rates are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests import REPO


def test_quick_benchmark_acks_in_time_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")},
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
    }
    run = subprocess.run(  # noqa: S603 - our own interpreter and module, fixed arguments
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert out.exists(), f"no results\n--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
    quick = json.loads(out.read_text())["quick"]
    report = f"{run.stdout}\n{json.dumps(quick, indent=1)}"

    load = quick["load"]
    assert load["n"] == quick["requests"] == 20, report
    assert quick["acks_over_3s_or_failed"] == 0, report
    assert load["statuses"] == {"200": 20}, report
    assert quick["max_ack_seconds"] < 3.0, report

    assert quick["outcomes_lost"] == [], report

    per_cancellation = quick["modelslab_calls_per_cancellation"]
    assert len(per_cancellation) == 20, report
    assert set(per_cancellation) == {1}, report
    assert quick["modelslab_cancel_calls_total"] == 20, report

    assert run.returncode == 0, report
