"""The fake Slack and fake ModelsLab of the test-suite, in a process of their own, plus a control API.

``python -m bench.fakes`` starts ``tests.fakes.slack.FakeSlack`` and
``tests.fakes.modelslab.FakeModelsLab`` on loopback ports and a small control server, prints one
JSON line (their URLs) and runs until SIGTERM. The orchestrator and the load process use the
control routes to set latencies, configure OAuth installs, reset the records between scenarios and
read what the fakes saw (calls per method, thread replies per training, their arrival times).

Arrival times are ``time.monotonic()`` values, taken by the fakes when a request arrives
(CLOCK_MONOTONIC is system-wide on Linux, so the load process can compare them with its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
import time
from collections import Counter
from typing import Any

from aiohttp import web

from tests.fakes.base import serve_on_loopback
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack

# Training ids the benchmark sends: "bn" + a scenario tag + "_" + a sequence number.
BENCH_ID = re.compile(r"\bbn[0-9a-z]+_[0-9]+\b")


class Records:
    """Incremental index of the fakes' records (thread replies per training id)."""

    def __init__(self, slack: FakeSlack, modelslab: FakeModelsLab) -> None:
        self.slack = slack
        self.modelslab = modelslab
        self.reset()

    def reset(self, *, messages: bool = False) -> None:
        if messages:
            # The fake scans a channel's messages on every post: keep the lists short.
            self.slack.messages.clear()
        self.slack.calls.clear()
        self.slack.response_posts.clear()
        self.modelslab.calls.clear()
        self._cursor = 0
        self._ml_cursor = 0
        self.cancel_first_at: dict[str, float] = {}
        self.reply_first_at: dict[str, float] = {}
        self.reply_count: Counter[str] = Counter()
        self.calls_by_training: dict[str, Counter[str]] = {}
        self.reset_at = time.monotonic()

    def index(self) -> None:
        ml_calls = self.modelslab.calls
        while self._ml_cursor < len(ml_calls):
            ml_call = ml_calls[self._ml_cursor]
            self._ml_cursor += 1
            if "cancle_training" in ml_call.path or "cancel_training" in ml_call.path:
                self.cancel_first_at.setdefault(ml_call.training_id or "?", ml_call.at)
        calls = self.slack.calls
        while self._cursor < len(calls):
            call = calls[self._cursor]
            self._cursor += 1
            text = str(call.args.get("text") or "")
            ids = set(BENCH_ID.findall(text))
            for tid in ids:
                self.calls_by_training.setdefault(tid, Counter())[call.method] += 1
            if call.method == "chat.postMessage" and call.args.get("thread_ts"):
                for tid in ids:
                    self.reply_first_at.setdefault(tid, call.at)
                    self.reply_count[tid] += 1

    def stats(self, detail: bool) -> dict[str, Any]:
        self.index()
        methods = Counter(call.method for call in self.slack.calls)
        cancels = self.modelslab.cancel_calls()
        cancel_by_training = Counter(call.training_id or "?" for call in cancels)
        out: dict[str, Any] = {
            "slack_methods": dict(methods),
            "slack_calls": len(self.slack.calls),
            "response_posts": sum(len(v) for v in self.slack.response_posts.values()),
            "modelslab_calls": len(self.modelslab.calls),
            "modelslab_cancel_calls": len(cancels),
            "replies": len(self.reply_first_at),
        }
        if detail:
            out["modelslab_cancel_by_training"] = dict(cancel_by_training)
            out["reply_count"] = dict(self.reply_count)
            out["reply_first_at"] = self.reply_first_at
            out["calls_by_training"] = {k: dict(v) for k, v in self.calls_by_training.items()}
        return out


async def main() -> None:
    slack = FakeSlack()
    modelslab = FakeModelsLab()
    await slack.start()
    await modelslab.start()
    records = Records(slack, modelslab)

    async def ping(_: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    async def config(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if "modelslab_delay" in body:
            modelslab.delay = float(body["modelslab_delay"])
        if "slack_delay" in body:
            slack.delay = float(body["slack_delay"])
        if "oauth_teams" in body:
            slack.oauth_teams.update(body["oauth_teams"])
        if "valid_keys" in body:
            modelslab.valid_keys |= set(body["valid_keys"])
        return web.json_response({"ok": True})

    async def reset(request: web.Request) -> web.StreamResponse:
        records.reset(messages=request.query.get("messages") == "1")
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.StreamResponse:
        return web.json_response(records.stats(request.query.get("detail") == "1"))

    async def message_ts(request: web.Request) -> web.StreamResponse:
        """The notification messages the bot posted: training id → (channel, ts)."""
        found: dict[str, list[str]] = {}
        for channel, messages in slack.messages.items():
            for message in messages:
                if message.thread_ts is None:
                    text = message.text + json.dumps(message.blocks or [])
                    for tid in BENCH_ID.findall(text):
                        found.setdefault(tid, [channel, message.ts])
        return web.json_response(found)

    async def wait_outcome(request: web.Request) -> web.StreamResponse:
        """Long-poll until a thread reply naming the training arrived; its arrival time."""
        body = await request.json()
        tid = str(body["training_id"])
        deadline = time.monotonic() + float(body.get("timeout", 30.0))
        while True:
            records.index()
            at = records.reply_first_at.get(tid)
            if at is not None or time.monotonic() > deadline:
                return web.json_response(
                    {"at": at, "modelslab_at": records.cancel_first_at.get(tid)}
                )
            await asyncio.sleep(0.002)

    async def wait_outcomes(request: web.Request) -> web.StreamResponse:
        """Long-poll until every listed training has a thread reply (or the timeout)."""
        body = await request.json()
        ids = [str(t) for t in body["training_ids"]]
        deadline = time.monotonic() + float(body.get("timeout", 30.0))
        while True:
            records.index()
            missing = [t for t in ids if t not in records.reply_first_at]
            if not missing or time.monotonic() > deadline:
                return web.json_response(
                    {"at": {t: records.reply_first_at.get(t) for t in ids}, "missing": missing}
                )
            await asyncio.sleep(0.02)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/control/ping", ping)
    app.router.add_post("/control/config", config)
    app.router.add_post("/control/reset", reset)
    app.router.add_get("/control/stats", stats)
    app.router.add_get("/control/messages", message_ts)
    app.router.add_post("/control/wait_outcome", wait_outcome)
    app.router.add_post("/control/wait_outcomes", wait_outcomes)
    runner, control_port = await serve_on_loopback(app, access_log=None)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(
        json.dumps(
            {
                "slack_api_url": slack.base_url,
                "slack_root": slack.root_url,
                "modelslab_api_url": modelslab.base_url,
                "control_url": f"http://127.0.0.1:{control_port}",
            }
        )
        + "\n"
    )
    sys.stdout.flush()
    await stop.wait()
    with contextlib.suppress(Exception):
        await runner.cleanup()
    await slack.stop()
    await modelslab.stop()


if __name__ == "__main__":
    asyncio.run(main())
