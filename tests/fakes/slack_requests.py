"""Requests built and signed exactly as Slack sends them (``/work/shared/slack/payloads.md``).

Bodies are bytes as they go on the wire; ``sign``/``signed`` add Slack's v0 signature headers.
The ``*_fields``/``*_payload`` variants give the parsed form that Socket Mode envelopes carry.
Given ``slack=`` (a ``FakeSlack``), the builders carry a ``trigger_id`` that fake issued, which
``views.open`` accepts once within 3 s, as Slack does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, Protocol
from urllib.parse import urlencode

__all__ = [
    "FORM",
    "JSON",
    "TriggerSource",
    "block_actions_payload",
    "conversations_value",
    "event_body",
    "event_payload",
    "form_payload_body",
    "plain_text_value",
    "sign",
    "signed",
    "slash_command_body",
    "slash_command_fields",
    "url_verification_body",
    "users_value",
    "view_submission_payload",
]

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

TEAM_ID = "T0A1B2C3D"
TEAM_DOMAIN = "acme-ml"
APP_ID = "A0APP0001"
BOT_ID = "B0BOT0001"
BOT_USER_ID = "U0BOTUSER"
ENTERPRISE = {"id": "E0ORG0001", "name": "Acme Corp"}


class TriggerSource(Protocol):
    """What issues trigger ids (``FakeSlack``)."""

    def new_trigger_id(self) -> str:
        """A trigger_id usable once, for 3 s."""
        ...


def _trigger(trigger_id: str | None, slack: TriggerSource | None, default: str) -> str:
    if trigger_id is not None:
        return trigger_id
    return slack.new_trigger_id() if slack is not None else default


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` for ``body`` (now, by default)."""
    ts = int(time.time()) if timestamp is None else timestamp
    base = f"v0:{ts}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def signed(
    body: bytes, secret: str, *, content_type: str, timestamp: int | None = None
) -> dict[str, str]:
    """All the headers Slack sends with ``body``: the signature pair and ``Content-Type``."""
    return {"Content-Type": content_type, **sign(body, secret, timestamp)}


# --- slash commands ----------------------------------------------------------------------


def slash_command_fields(
    *,
    text: str,
    team_id: str = TEAM_ID,
    channel_id: str = "C0TRAIN01",
    channel_name: str = "ml-training",
    user_id: str = "U0ALICE01",
    user_name: str = "alice",
    command: str = "/cancel-training",
    response_url: str = "https://hooks.slack.com/commands/T0A1B2C3D/1/x",
    trigger_id: str | None = None,
    slack: TriggerSource | None = None,
    **extra: str,
) -> dict[str, str]:
    """A slash command's flat fields in Slack's order; ``extra`` overrides or appends
    (``enterprise_id``, ``enterprise_name``, ``team_domain``, ``is_enterprise_install``…)."""
    fields = {
        "token": "legacy-token",
        "team_id": team_id,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": _trigger(trigger_id, slack, "1111.2222.abcd"),
    }
    fields.update(extra)
    return fields


def slash_command_body(
    *,
    text: str,
    team_id: str = TEAM_ID,
    channel_id: str = "C0TRAIN01",
    channel_name: str = "ml-training",
    user_id: str = "U0ALICE01",
    user_name: str = "alice",
    command: str = "/cancel-training",
    response_url: str = "https://hooks.slack.com/commands/T0A1B2C3D/1/x",
    trigger_id: str | None = None,
    slack: TriggerSource | None = None,
    **extra: str,
) -> bytes:
    """The form-urlencoded body of a slash command (one line, ``/`` as ``%2F``)."""
    return urlencode(
        slash_command_fields(
            text=text,
            team_id=team_id,
            channel_id=channel_id,
            channel_name=channel_name,
            user_id=user_id,
            user_name=user_name,
            command=command,
            response_url=response_url,
            trigger_id=trigger_id,
            slack=slack,
            **extra,
        )
    ).encode()


# --- interactivity -----------------------------------------------------------------------


def _default_blocks(value: str, action_id: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "section",
            "block_id": "train_status",
            "text": {"type": "mrkdwn", "text": f"Training `{value}` is running"},
        },
        {
            "type": "actions",
            "block_id": "train_actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "text": {"type": "plain_text", "text": "Cancel training"},
                    "style": "danger",
                    "value": value,
                }
            ],
        },
    ]


def block_actions_payload(
    *,
    action_id: str = "cancel_training",
    value: str = "F5jvdzGnYi",
    team_id: str = TEAM_ID,
    user_id: str = "U0BOB0001",
    user_name: str = "bob",
    channel_id: str = "C0TRAIN01",
    channel_name: str = "ml-training",
    message_ts: str = "1764201600.000100",
    thread_ts: str | None = None,
    response_url: str = "https://hooks.slack.com/actions/T0A1B2C3D/2/y",
    trigger_id: str | None = None,
    slack: TriggerSource | None = None,
    ephemeral: bool = False,
    enterprise_org_wide: bool = False,
    blocks: list[Any] | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """A ``block_actions`` payload for a click on a button the bot posted.

    ``thread_ts``: the clicked message is a reply in that thread. ``ephemeral``: no ``message``
    key, ``container.is_ephemeral`` true. ``enterprise_org_wide``: ``team`` is null and the
    workspace is only in ``user.team_id``.
    """
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": message_ts,
        "channel_id": channel_id,
        "is_ephemeral": ephemeral,
    }
    if thread_ts is not None:
        container["thread_ts"] = thread_ts
    payload: dict[str, Any] = {
        "type": "block_actions",
        "api_app_id": APP_ID,
        "token": "legacy-token",
        "trigger_id": _trigger(trigger_id, slack, "1111.2222.efgh"),
        "response_url": response_url,
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "team": None if enterprise_org_wide else {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": dict(ENTERPRISE) if enterprise_org_wide else None,
        "is_enterprise_install": enterprise_org_wide,
        "channel": {"id": channel_id, "name": channel_name},
        "container": container,
    }
    if not ephemeral:
        message: dict[str, Any] = {
            "type": "message",
            "ts": message_ts,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "user": BOT_USER_ID,
            "text": text if text is not None else f"Training {value} is running",
            "team": team_id,
            "blocks": blocks if blocks is not None else _default_blocks(value, action_id),
        }
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            message["parent_user_id"] = BOT_USER_ID
        payload["message"] = message
    payload["state"] = {"values": {}}
    payload["actions"] = [
        {
            "type": "button",
            "action_id": action_id,
            "block_id": "train_actions",
            "value": value,
            "style": "danger",
            "text": {"type": "plain_text", "text": "Cancel training"},
            "action_ts": "1764201700.123456",
        }
    ]
    return payload


def form_payload_body(payload: dict[str, Any]) -> bytes:
    """``payload=<urlencoded JSON>``, the body of every interactivity request."""
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode()


def plain_text_value(value: str | None) -> dict[str, Any]:
    """One ``state.values[block][action]`` entry of a plain-text input."""
    return {"type": "plain_text_input", "value": value}


def users_value(users: list[str]) -> dict[str, Any]:
    """One ``state.values[block][action]`` entry of a multi-user picker."""
    return {"type": "multi_users_select", "selected_users": list(users)}


def conversations_value(conversations: list[str]) -> dict[str, Any]:
    """One ``state.values[block][action]`` entry of a multi-conversation picker."""
    return {"type": "multi_conversations_select", "selected_conversations": list(conversations)}


def view_submission_payload(
    *,
    callback_id: str,
    values: dict[str, dict[str, dict[str, Any]]],
    user_id: str = "U0ALICE01",
    user_name: str = "alice",
    team_id: str = TEAM_ID,
    private_metadata: str = "",
    view_id: str = "V0VIEW0001",
    trigger_id: str | None = None,
    slack: TriggerSource | None = None,
) -> dict[str, Any]:
    """A modal submission; ``values`` is ``state.values`` (``{block_id: {action_id: entry}}``,
    entries from ``plain_text_value``/``users_value``/``conversations_value``)."""
    blocks = [
        {
            "type": "input",
            "block_id": block_id,
            "label": {"type": "plain_text", "text": block_id},
            "element": {"type": entry.get("type", "plain_text_input"), "action_id": action_id},
        }
        for block_id, actions in values.items()
        for action_id, entry in actions.items()
    ]
    return {
        "type": "view_submission",
        "token": "legacy-token",
        "api_app_id": APP_ID,
        "trigger_id": _trigger(trigger_id, slack, "1111.2222.ijkl"),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": team_id},
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "external_id": "",
            "title": {"type": "plain_text", "text": "Settings"},
            "submit": {"type": "plain_text", "text": "Save"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": blocks,
            "state": {"values": values},
            "hash": "1764201600.abcdef12",
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": APP_ID,
            "app_installed_team_id": team_id,
            "bot_id": BOT_ID,
        },
        "response_urls": [],
    }


# --- Events API --------------------------------------------------------------------------


def event_payload(
    event: dict[str, Any],
    *,
    team_id: str = TEAM_ID,
    event_id: str = "Ev0001",
    event_time: int = 1764201600,
) -> dict[str, Any]:
    """An ``event_callback`` wrapper around ``event`` (what Socket Mode's ``events_api`` carries)."""
    return {
        "token": "legacy-token",
        "team_id": team_id,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-fake-{event_id}",
    }


def event_body(
    event: dict[str, Any],
    *,
    team_id: str = TEAM_ID,
    event_id: str = "Ev0001",
    event_time: int = 1764201600,
) -> bytes:
    """The JSON body of an Events API request."""
    payload = event_payload(event, team_id=team_id, event_id=event_id, event_time=event_time)
    return json.dumps(payload, separators=(",", ":")).encode()


def url_verification_body(
    challenge: str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
) -> bytes:
    """The handshake Slack sends when the Events request URL is set."""
    body = {"token": "legacy-token", "challenge": challenge, "type": "url_verification"}
    return json.dumps(body, separators=(",", ":")).encode()
