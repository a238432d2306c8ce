"""The load process: signed Slack requests at a bounded concurrency, timed on the client.

``python -m bench.load SPEC.json`` runs one scenario and prints one JSON object (the result) on
stdout. The orchestrator starts it pinned to the load core, separate from the server's.

Modes:

* ``load``: ``concurrency`` workers each send one request after the other until ``duration``
  seconds passed or ``max_requests`` were sent; every request is timed from just before it is sent
  to the end of the answer's body (its "ack latency"), capped at ``cap`` seconds. Requests alternate
  between the Cancel training button of the preview card ``/cancel-training <id>`` answers with
  (the typed id's cancel request) and a click on a Cancel button of the command's training list
  (both ephemeral messages), each with its own training id, so on the allowed path every request
  makes a new durable claim.
* ``e2e``: one click at a time on the Cancel button of a posted notification; after each ack the
  fake Slack is asked (long poll) when the outcome reply arrived in the notification's thread.
  Overhead = reply arrival - click sent - the fake ModelsLab's configured latency.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import percentile
from tests.fakes.slack_requests import (
    FORM,
    block_actions_payload,
    form_payload_body,
    sign,
)

_ID = re.compile(r"bn[0-9a-z]+_[0-9]+")


def training_id(tag: str, i: int) -> str:
    """The i-th training id of a scenario (matched by bench.fakes.BENCH_ID)."""
    return f"bn{tag}_{i}"


def build_request(
    spec: dict[str, Any], i: int, kind: str, tid: str
) -> tuple[bytes, dict[str, str]]:
    """A signed body and its headers, exactly as Slack sends them."""
    users = spec["user_ids"]
    user = users[i % len(users)]
    channel = f"C0BENCH{i % 50:02d}"
    response_url = f"{spec['response_url_base']}/r{i % 50}"
    if kind in ("command", "list_click"):
        # "command": the preview card's button, which is what cancels a typed id.
        payload = block_actions_payload(
            action_id="cancel_from_card" if kind == "command" else "cancel_training",
            value=tid,
            team_id=spec["team_id"],
            user_id=user,
            user_name=user.lower(),
            channel_id=channel,
            ephemeral=True,
            response_url=response_url,
            trigger_id=f"{i}.{i}.bench",
        )
        body = form_payload_body(payload)
    elif kind == "click":
        channel, message_ts = spec["notifications"][tid]
        payload = block_actions_payload(
            value=tid,
            team_id=spec["team_id"],
            user_id=user,
            user_name=user.lower(),
            channel_id=channel,
            message_ts=message_ts,
            response_url=response_url,
            trigger_id=f"{i}.{i}.bench",
        )
        body = form_payload_body(payload)
    else:
        raise ValueError(f"unknown request kind {kind}")
    headers = {"Content-Type": FORM, **sign(body, spec["signing_secret"])}
    return body, headers


def _ack_kind(status: int | str, text: str) -> str:
    """A short, bounded description of an answer (for checking what the server really did)."""
    if status != 200:
        return f"HTTP {status}"
    if not text:
        return "200 (empty)"
    try:
        data = json.loads(text)
        message = str(data.get("text", "")) if isinstance(data, dict) else text
    except ValueError:
        message = text
    return "200 " + _ID.sub("<id>", message)[:70]


async def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    concurrency = int(spec["concurrency"])
    duration = float(spec["duration"])
    max_requests = int(spec["max_requests"])
    cap = float(spec.get("cap", 10.0))
    warmup = float(spec.get("warmup", 0.0))
    kinds = list(spec.get("mix", ["command", "list_click"]))
    tag = spec["tag"]
    url = spec["url"]

    latencies: list[float] = []
    finished_at: list[float] = []
    ok_finished_at: list[float] = []
    statuses: Counter[str] = Counter()
    kinds_seen: Counter[str] = Counter()
    sent_ids: list[str] = []
    ok_ids: list[str] = []
    counter = 0
    over_3s = 0
    capped = 0

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=cap)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        deadline = started + duration

        async def worker() -> None:
            nonlocal counter, over_3s, capped
            while time.monotonic() < deadline and counter < max_requests:
                i = counter
                counter += 1
                kind = kinds[i % len(kinds)]
                tid = training_id(tag, i)
                body, headers = build_request(spec, i, kind, tid)
                sent_ids.append(tid)
                t0 = time.monotonic()
                status: int | str
                text = ""
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        text = (await resp.read()).decode(errors="replace")
                        status = resp.status
                except asyncio.TimeoutError:
                    status = "timeout"
                    capped += 1
                except (aiohttp.ClientError, OSError) as exc:
                    status = type(exc).__name__
                t1 = time.monotonic()
                elapsed = t1 - t0
                latencies.append(elapsed)
                finished_at.append(t1 - started)
                statuses[str(status)] += 1
                kinds_seen[_ack_kind(status, text)] += 1
                if status == 200 and elapsed <= 3.0:
                    ok_finished_at.append(t1 - started)
                    ok_ids.append(tid)
                else:
                    over_3s += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed_total = time.monotonic() - started

    # Sustained rate: acks (200 within 3 s) completed between the warm-up and the end of sending.
    window_end = min(duration, elapsed_total)
    window = max(window_end - warmup, 1e-9)
    in_window = sum(1 for t in ok_finished_at if warmup <= t <= window_end)
    result: dict[str, Any] = {
        "n": len(latencies),
        "ok": len(ok_finished_at),
        "over_3s_or_failed": over_3s,
        "capped": capped,
        "cap": cap,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "max": max(latencies) if latencies else None,
        "rate": in_window / window,
        "elapsed": elapsed_total,
        "statuses": dict(statuses),
        "answers": dict(kinds_seen.most_common(8)),
    }
    if spec.get("return_ids"):
        result["sent_ids"] = sent_ids
        result["ok_ids"] = ok_ids
    return result


async def run_e2e(spec: dict[str, Any]) -> dict[str, Any]:
    """One click at a time; the outcome's arrival in the thread from the fake's records."""
    ids: list[str] = list(spec["training_ids"])
    delay = float(spec["modelslab_delay"])
    control = spec["control_url"]
    url = spec["url"]
    overheads: list[float] = []
    before_call: list[float] = []
    after_call: list[float] = []
    acks: list[float] = []
    lost: list[str] = []
    statuses: Counter[str] = Counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for i, tid in enumerate(ids):
            body, headers = build_request(spec, i, "click", tid)
            t0 = time.monotonic()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                statuses[str(resp.status)] += 1
            acks.append(time.monotonic() - t0)
            async with session.post(
                f"{control}/control/wait_outcome",
                json={"training_id": tid, "timeout": spec.get("outcome_timeout", 15.0)},
            ) as resp:
                answer = await resp.json()
            at, called_at = answer["at"], answer["modelslab_at"]
            if at is None:
                lost.append(tid)
                if len(lost) >= 3 and lost[-3:] == ids[i - 2 : i + 1]:
                    # Three in a row: the server is not reporting at all; do not wait for the rest.
                    lost += ids[i + 1 :]
                    break
                continue
            overheads.append(at - t0 - delay)
            if called_at is not None:
                # click sent → ModelsLab call arrives; ModelsLab answers → reply arrives.
                before_call.append(called_at - t0)
                after_call.append(at - called_at - delay)
    return {
        "n": len(ids),
        "lost": lost,
        "statuses": dict(statuses),
        "ack_p50": percentile(acks, 50),
        "ack_max": max(acks) if acks else None,
        "overhead_p50": percentile(overheads, 50),
        "overhead_p99": percentile(overheads, 99),
        "overhead_max": max(overheads) if overheads else None,
        "overheads": overheads,
        "click_to_modelslab_p50": percentile(before_call, 50),
        "modelslab_to_reply_p50": percentile(after_call, 50),
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text()) if len(sys.argv) > 1 else json.load(sys.stdin)
    runner = run_e2e if spec["mode"] == "e2e" else run_load
    result = asyncio.run(runner(spec))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
