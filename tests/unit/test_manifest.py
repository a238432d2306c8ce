"""The app manifests users paste are valid against Slack's official schema and match the code."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from bot.slack.messages.blocks import COMMAND
from tests import REPO

ROOT = REPO
# The project's shared copy when present (kept current), else the copy vendored with the tests
# (from slackapi/manifest-schema, MIT, see tests/data/manifest.schema.LICENSE).
SHARED_SCHEMA = ROOT.parent / "shared" / "slack" / "manifest.schema.1.0.0.json"
SCHEMA = (
    SHARED_SCHEMA
    if SHARED_SCHEMA.exists()
    else ROOT / "tests" / "data" / "manifest.schema.1.0.0.json"
)
MANIFESTS = ["manifest.yml", "manifest-socket.yml"]


@pytest.fixture(scope="module")
def schema() -> dict:
    if not SCHEMA.exists():
        pytest.fail(f"Slack's manifest schema is missing at {SCHEMA}")
    return json.loads(SCHEMA.read_text())


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid(schema: dict, name: str) -> None:
    manifest = yaml.safe_load((ROOT / name).read_text())
    jsonschema.Draft7Validator(schema).validate(manifest)


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_declares_what_the_bot_uses(name: str) -> None:
    manifest = yaml.safe_load((ROOT / name).read_text())
    [command] = manifest["features"]["slash_commands"]
    assert command["command"] == COMMAND and command["usage_hint"] and command["description"]
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "chat:write.public", "usergroups:read"} <= scopes


def test_http_and_socket_manifests_differ_only_in_transport() -> None:
    http = yaml.safe_load((ROOT / "manifest.yml").read_text())
    socket = yaml.safe_load((ROOT / "manifest-socket.yml").read_text())
    assert (
        http["settings"]["socket_mode_enabled"] is False
        and socket["settings"]["socket_mode_enabled"] is True
    )
    assert http["features"]["slash_commands"][0]["url"].endswith("/slack/events")
    assert "url" not in socket["features"]["slash_commands"][0]
    assert "request_url" not in socket["settings"]["interactivity"]
    assert "request_url" not in socket["settings"]["event_subscriptions"]
    assert http["oauth_config"] == socket["oauth_config"]


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_scopes_and_events_match_the_code(name: str) -> None:
    from bot.slack.oauth import BOT_SCOPES

    manifest = yaml.safe_load((ROOT / name).read_text())
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(BOT_SCOPES)
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {
        "app_home_opened",
        "app_uninstalled",
        "tokens_revoked",
    }
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
