"""Logs: one line per event, text or JSON, and never a secret — at any level, from any library."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from bot.logs import REDACTED, RedactingFormatter, Redactor
from tests.fakes.modelslab import FakeModelsLab
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_requests import block_actions_payload, form_payload_body, slash_command_body
from tests.harness import SIGNING_SECRET, TRAINING
from tests.processes import notify, post_signed, serving

WEBHOOK_TOKEN = "whk-Ul7rGk2cQ0pN4sV9x"
KEY = "good-key-9f8e7d6c5b4a"


def test_redactor_covers_token_patterns_and_configured_secrets() -> None:
    redact = Redactor([KEY, "short"])
    text = redact(
        f"token xoxb-123-456-abc app xapp-1-A1-2-bcd url https://hooks.slack.com/commands/T1/2/x key {KEY}"
    )
    assert (
        "xoxb-" not in text
        and "xapp-" not in text
        and "hooks.slack.com" not in text
        and KEY not in text
    )
    assert text.count(REDACTED) == 4


def test_json_lines_carry_the_event_fields() -> None:
    formatter = RedactingFormatter(Redactor([KEY]), json_lines=True)
    record = logging.LogRecord(
        "bot", logging.INFO, __file__, 1, "cancel %s with %s", ("x", KEY), None
    )
    record.workspace, record.training, record.outcome = "T1", "x", "accepted"
    entry = json.loads(formatter.format(record))
    assert entry["message"] == f"cancel x with {REDACTED}"
    assert (entry["workspace"], entry["training"], entry["outcome"]) == ("T1", "x", "accepted")


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_full_flow_at_debug_logs_no_secret(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path, log_format: str
) -> None:
    modelslab.valid_keys.add(KEY)
    env = {
        "MODELSLAB_API_KEY": KEY,
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": log_format,
        "MODELSLAB_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
    }
    note = await notify(slack, modelslab, sqlite_url, tmp_path, TRAINING)
    async with serving(slack, modelslab, sqlite_url, tmp_path, **env) as bot:
        url = bot.url or ""
        payload = block_actions_payload(
            value=TRAINING,
            message_ts=note.ts,
            response_url="https://hooks.slack.com/actions/T0A1B2C3D/9/secret",
        )
        assert (await post_signed(slack, url, form_payload_body(payload)))[0] == 200
        await slack.wait_for("chat.postMessage", where=lambda c: c.args.get("thread_ts") == note.ts)
        command = slash_command_body(
            text="other1", response_url="https://hooks.slack.com/commands/T0A1B2C3D/9/s2"
        )
        assert (await post_signed(slack, url, command))[0] == 200
        # The command answers with the preview card; its button is the request.
        card_click = block_actions_payload(
            value="other1",
            action_id="cancel_from_card",
            ephemeral=True,
            response_url="https://hooks.slack.com/actions/T0A1B2C3D/9/s3",
        )
        assert (await post_signed(slack, url, form_payload_body(card_click)))[0] == 200
        await slack.wait_for("chat.postMessage", count=3)
    logs = bot.err + bot.out
    assert "DEBUG" in logs or '"level": "DEBUG"' in logs  # the test really ran at DEBUG
    for secret in (slack.bot_token, SIGNING_SECRET, KEY, WEBHOOK_TOKEN, "hooks.slack.com"):
        assert secret not in logs, f"{secret!r} leaked into the logs"
    if log_format == "json":
        lines = [line for line in bot.err.splitlines() if line.strip()]
        assert lines and all(isinstance(json.loads(line), dict) for line in lines)


async def test_the_start_up_log_has_no_alembic_internals_at_info(
    slack: FakeSlack, modelslab: FakeModelsLab, sqlite_url: str, tmp_path: Path
) -> None:
    """A first start migrates a new database: the schema steps show, Alembic's plumbing not."""
    async with serving(slack, modelslab, sqlite_url, tmp_path) as bot:
        pass
    lines = bot.err.splitlines()
    assert any("Running upgrade" in line and "0007" in line for line in lines), bot.err
    assert any(re.search(r"cancel-training bot \S+ ready", line) for line in lines), bot.err
    noise = [
        line
        for line in lines
        if "alembic" in line
        and ("plugin" in line or "Context impl" in line or "Will assume" in line)
    ]
    assert noise == []
