"""`GET /metrics`: bearer METRICS_TOKEN, Prometheus text, bounded labels (design §3, bot/metrics.py).

The bot runs in-process (tests/harness.py) against the fake Slack and fake ModelsLab; the metrics
are read back the way Prometheus reads them, with prometheus_client's own text parser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.fakes import modelslab as ml
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import TEAM_ID, block_actions_payload, slash_command_fields
from tests.harness import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    TRAINING,
    Bot,
    bot_env,
    card_button,
    free_port,
    running_bot,
)
from tests.processes import bot_process

METRICS_TOKEN = "metrics-token-7Hq2xVb9"
RETRIED = "Retry5xx01"
REFUSED = "Refused001"
WATCHED = "Watched001"
CHANNEL_2, CHANNEL_3, CHANNEL_4 = "C0RETRY01", "C0VSIX001", "C0WATCH01"
V6_TRAINING = "0b6c3a52-7d1e-4f0a-9c8b-2e4f6a8d0c13"
IDS = {TEAM_ID, ALICE, BOB, CAROL, CHANNEL, CHANNEL_2, CHANNEL_3, CHANNEL_4}
IDS |= {TRAINING, RETRIED, REFUSED, WATCHED, V6_TRAINING}

Families = dict[str, list[Sample]]


async def scrape(bot: Bot, token: str | None = METRICS_TOKEN) -> tuple[int, str, str]:
    """GET /metrics with an optional bearer token; return status, content type, body."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with bot.session.get(f"{bot.url}/metrics", headers=headers) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


def parse(text: str) -> tuple[Families, dict[str, str]]:
    """Samples by family name, and each family's type, as Prometheus would read them."""
    samples: Families = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        samples[family.name] = list(family.samples)
        types[family.name] = family.type
    return samples, types


def value(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of the samples called `name` whose labels include `labels` (0 when none)."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


Wanted = tuple[str, dict[str, str], float]  # sample name, labels it must have, minimum value


async def metrics_when(bot: Bot, *wanted: Wanted) -> Families:
    """Scrape until every wanted sample reaches its minimum; fail showing the exposition."""
    deadline = time.monotonic() + 10
    while True:
        status, _, text = await scrape(bot)
        assert status == 200, (status, text)
        families, _ = parse(text)
        every = [sample for samples in families.values() for sample in samples]
        missing = [w for w in wanted if value(every, w[0], **w[1]) < w[2]]
        if not missing:
            return families
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never showed {missing}:\n{text}")
        await asyncio.sleep(0.1)


# --- access ------------------------------------------------------------------------------


async def test_metrics_are_off_without_a_token(bot: Bot) -> None:
    for token in (None, "anything", ""):
        status, _, text = await scrape(bot, token)
        assert status == 404, (token, status, text)
        assert "cancelbot_" not in text


async def test_metrics_need_the_right_bearer_token(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> None:
    async with running_bot(slack, modelslab, sqlite_url, METRICS_TOKEN=METRICS_TOKEN) as bot:
        for token in (None, "wrong-token", METRICS_TOKEN + "x", METRICS_TOKEN[:-1], ""):
            status, _, text = await scrape(bot, token)
            assert status == 401, (token, status, text)
            assert "cancelbot_" not in text and METRICS_TOKEN not in text
        # Not a bearer token: the token as Basic credentials or bare is refused too.
        for header in (f"Basic {METRICS_TOKEN}", METRICS_TOKEN, f"Token {METRICS_TOKEN}"):
            async with bot.session.get(
                f"{bot.url}/metrics", headers={"Authorization": header}
            ) as resp:
                assert resp.status == 401, (header, resp.status)

        status, content_type, text = await scrape(bot)
        assert status == 200, (status, text)
        assert content_type.startswith("text/plain"), content_type
        families, types = parse(text)
        assert {
            "cancelbot_requests": "counter",
            "cancelbot_refusals": "counter",
            "cancelbot_cancellations": "counter",
            "cancelbot_modelslab_request_seconds": "histogram",
            "cancelbot_modelslab_errors": "counter",
            "cancelbot_inflight_cancellations": "gauge",
            "cancelbot_pending_recoveries": "gauge",
            "cancelbot_outbox_backlog": "gauge",
        }.items() <= types.items(), types
        for gauge in (
            "cancelbot_inflight_cancellations",
            "cancelbot_pending_recoveries",
            "cancelbot_outbox_backlog",
        ):
            assert value(families[gauge], gauge) == 0, (gauge, families[gauge])


# --- what the counters show --------------------------------------------------------------


async def test_counters_after_cancels_a_refusal_and_a_modelslab_500(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str
) -> None:
    modelslab.script(RETRIED, ml.server_error(500), ml.ok())
    async with running_bot(slack, modelslab, sqlite_url, METRICS_TOKEN=METRICS_TOKEN) as bot:
        # Watching polls fine_tune_status/<id> (first, since polls give way to cancels).
        await bot.command(f"watch {WATCHED}", channel_id=CHANNEL_4)
        await metrics_when(bot, ("cancelbot_modelslab_request_seconds_count", {}, 1))
        ack = await bot.cancel(TRAINING)
        assert "Cancelling training" in ack["text"], ack
        refusal = await bot.command(REFUSED, user_id=CAROL, user_name="carol")
        assert "Cancelling" not in refusal["text"], refusal
        # Other channels: Slack allows about one post per second and channel.
        ack = await bot.cancel(RETRIED, user_id=BOB, user_name="bob", channel_id=CHANNEL_2)
        assert "Cancelling training" in ack["text"], ack
        ack = await bot.cancel(V6_TRAINING, channel_id=CHANNEL_3)
        assert "Cancelling training" in ack["text"], ack

        families = await metrics_when(
            bot,
            ("cancelbot_requests_total", {"kind": "command", "result": "200"}, 5),
            ("cancelbot_refusals_total", {"reason": "not_listed"}, 1),
            ("cancelbot_cancellations_total", {"outcome": "accepted"}, 2),
            ("cancelbot_cancellations_total", {"outcome": "stopped"}, 1),
            ("cancelbot_modelslab_errors_total", {"type": "http_5xx"}, 1),
            # TRAINING, RETRIED twice (the 500, then the success), the v6 stop, a status poll
            ("cancelbot_modelslab_request_seconds_count", {}, 5),
        )
        assert len(modelslab.cancel_calls(RETRIED)) == 2
        assert modelslab.cancel_calls(REFUSED) == []
        refusals = families["cancelbot_refusals"]
        assert value(refusals, "cancelbot_refusals_total") == 1, refusals
        cancellations = families["cancelbot_cancellations"]
        assert value(cancellations, "cancelbot_cancellations_total") == 3, cancellations
        errors = families["cancelbot_modelslab_errors"]
        assert value(errors, "cancelbot_modelslab_errors_total") == 1, errors  # only the 500

        # The histogram: one series per endpoint, the id cut off; buckets are cumulative.
        seconds = families["cancelbot_modelslab_request_seconds"]
        endpoints = {s.labels["endpoint"] for s in seconds}
        assert any(e.endswith("cancle_training") for e in endpoints), endpoints
        assert any(e.endswith("trainer/stop") for e in endpoints), endpoints
        assert any(e.endswith("fine_tune_status") for e in endpoints), endpoints
        for endpoint in endpoints:
            count = value(seconds, "cancelbot_modelslab_request_seconds_count", endpoint=endpoint)
            inf = value(
                seconds, "cancelbot_modelslab_request_seconds_bucket", endpoint=endpoint, le="+Inf"
            )
            assert count == inf >= 1, (endpoint, count, inf)

        # Every report delivered, nothing in flight: the gauges come back to 0 at scrape time.
        deadline = time.monotonic() + 10
        while True:
            _, _, text = await scrape(bot)
            families, _ = parse(text)
            gauges = {
                g: value(families[g], g)
                for g in (
                    "cancelbot_inflight_cancellations",
                    "cancelbot_pending_recoveries",
                    "cancelbot_outbox_backlog",
                )
            }
            if not any(gauges.values()):
                break
            assert time.monotonic() < deadline, gauges
            await asyncio.sleep(0.1)

        # No label carries a workspace, user, channel or training id, nor a secret.
        for samples in families.values():
            for sample in samples:
                for label, label_value in sample.labels.items():
                    assert label_value not in IDS, (sample.name, label, label_value)
                    leaked = [i for i in IDS if i in label_value]
                    assert not leaked, (sample.name, label, label_value)
        for secret in (METRICS_TOKEN, slack.bot_token, "good-key", bot.secret):
            assert secret not in text


async def test_socket_mode_requests_are_counted_too(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    """Design §2: the same web application serves /metrics in Socket Mode when $PORT is set, so a
    Socket Mode deployment must count its Slack requests as an HTTP one does."""
    port = free_port()
    env = bot_env(
        slack,
        modelslab,
        sqlite_url,
        SLACK_APP_TOKEN=slack.app_token,
        PORT=str(port),
        METRICS_TOKEN=METRICS_TOKEN,
    )
    async with bot_process(env, "socket", cwd=tmp_path, port=port):
        await slack.socket_connected(timeout=20)
        card = await slack.send_envelope(
            "slash_commands",
            slash_command_fields(text=TRAINING, response_url=slack.response_url("sock")),
        )
        button = card_button(card["payload"])
        assert button is not None, card
        await slack.send_envelope(
            "interactive",
            block_actions_payload(
                value=button["value"],
                action_id=button["action_id"],
                user_id=ALICE,
                ephemeral=True,
                response_url=slack.response_url("sock-card"),
            ),
        )
        [ack] = await slack.wait_for_response("sock-card", timeout=10)
        assert "Cancelling training" in ack["text"], ack
        refused = await slack.send_envelope(
            "slash_commands",
            slash_command_fields(text=REFUSED, user_id=CAROL, user_name="carol"),
        )
        assert "Cancelling" not in refused["payload"]["text"], refused
        await modelslab.wait_for_calls(1, timeout=10)

        deadline = time.monotonic() + 10
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while True:
                async with session.get(
                    f"http://127.0.0.1:{port}/metrics",
                    headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                ) as resp:
                    assert resp.status == 200, resp.status
                    families, _ = parse(await resp.text())
                if value(families["cancelbot_cancellations"], "cancelbot_cancellations_total"):
                    break
                assert time.monotonic() < deadline, families
                await asyncio.sleep(0.1)
        assert value(families["cancelbot_refusals"], "cancelbot_refusals_total") == 1
        requests = families["cancelbot_requests"]
        assert value(requests, "cancelbot_requests_total", kind="command") == 2, requests
