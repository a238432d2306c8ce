"""The fake Slack's rules: what Slack's documentation shows passes, each broken variant fails."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.slack_rules import (
    LIMITS,
    ack_problems,
    error_for,
    message_problems,
    mrkdwn_problems,
    options_problems,
    view_problems,
)

Json = dict[str, Any]


def plain(text: str) -> Json:
    return {"type": "plain_text", "text": text}


def mrkdwn(text: str) -> Json:
    return {"type": "mrkdwn", "text": text}


def button(action_id: str = "approve", text: str = "Approve", **extra: Any) -> Json:
    return {"type": "button", "action_id": action_id, "text": plain(text), **extra}


def confirm() -> Json:
    return {
        "title": plain("Are you sure?"),
        "text": mrkdwn("Wouldn't you prefer a good game of _chess_?"),
        "confirm": plain("Do it"),
        "deny": plain("Stop, I've changed my mind!"),
        "style": "danger",
    }


def option(text: str = "Option 1", value: str = "value-1") -> Json:
    return {"text": plain(text), "value": value}


# The shapes of Slack's Block Kit reference and Block Kit Builder templates (an approval request,
# a form modal, a Home tab), written out with every element the bot uses and more.
APPROVAL: Json = {
    "channel": "C0TRAIN01",
    "text": "You have a new request: Fred Enriquez, time off",
    "blocks": [
        {"type": "header", "block_id": "head", "text": plain("New request :tada:")},
        {
            "type": "section",
            "block_id": "summary",
            "text": mrkdwn("You have a new request:\n*<https://example.com/fred|Fred Enriquez>*"),
            "accessory": {
                "type": "image",
                "image_url": "https://api.slack.com/img/blocks/bkb_template_images/approvalsNewDevice.png",
                "alt_text": "computer thumbnail",
            },
        },
        {
            "type": "section",
            "fields": [
                mrkdwn("*Type:*\nPaid Time Off"),
                mrkdwn("*Created by:*\n<@U0ALICE01>"),
                mrkdwn("*When:*\n<!date^1764201600^{date_short_pretty} at {time}|Nov 27, 2025>"),
                mrkdwn("*Hours:*\n16.0 (2 days) &amp; <!subteam^S0ADMINS1|@admins> notified"),
            ],
        },
        {"type": "divider"},
        {
            "type": "actions",
            "block_id": "decide",
            "elements": [
                button("approve", "Approve", style="primary", value="click_me_123"),
                button("deny", "Deny", style="danger", value="click_me_456", confirm=confirm()),
                button("open", "Open in browser", url="https://example.com/requests/42"),
            ],
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "image",
                    "image_url": "https://example.com/icon.png",
                    "alt_text": "icon",
                },
                mrkdwn("Posted in <#C0TRAIN01> · <mailto:ops@example.com|mail ops>"),
                plain("Author: K A Applegate"),
            ],
        },
    ],
}

FORM: Json = {
    "type": "modal",
    "callback_id": "request_form",
    "private_metadata": "C0TRAIN01|1764201600.000100",
    "title": plain("My App"),
    "submit": plain("Submit"),
    "close": plain("Cancel"),
    "blocks": [
        {
            "type": "input",
            "block_id": "reason",
            "label": plain("Reason"),
            "hint": plain("Why is it needed?"),
            "element": {
                "type": "plain_text_input",
                "action_id": "reason_input",
                "multiline": True,
                "max_length": 500,
                "placeholder": plain("Type here"),
            },
        },
        {
            "type": "input",
            "block_id": "kind",
            "label": plain("Kind"),
            "element": {
                "type": "static_select",
                "action_id": "kind_select",
                "placeholder": plain("Select an item"),
                "options": [option("Paid Time Off", "pto"), option("Sick day", "sick")],
            },
        },
        {
            "type": "input",
            "block_id": "groups",
            "optional": True,
            "label": plain("Groups"),
            "element": {
                "type": "multi_external_select",
                "action_id": "groups_input",
                "min_query_length": 0,
                "placeholder": plain("Pick groups"),
            },
        },
        {
            "type": "input",
            "block_id": "when",
            "label": plain("Start"),
            "element": {"type": "datepicker", "action_id": "when_date"},
        },
        {
            "type": "section",
            "block_id": "agree",
            "text": mrkdwn("Check what applies"),
            "accessory": {
                "type": "checkboxes",
                "action_id": "agree_boxes",
                "options": [
                    {"text": mrkdwn("*Notify* my team"), "value": "notify"},
                    {
                        "text": plain("Remind me"),
                        "value": "remind",
                        "description": plain("a day before"),
                    },
                ],
            },
        },
    ],
}

HOME: Json = {
    "type": "home",
    "callback_id": "home",
    "blocks": [
        {"type": "header", "text": plain("Cancel Training")},
        {
            "type": "section",
            "text": mrkdwn("Run `/cancel-training &lt;id&gt;` or press the red button."),
            "accessory": {
                "type": "overflow",
                "action_id": "more",
                "options": [
                    option("Docs", "docs") | {"url": "https://example.com/docs"},
                    option("Help", "help"),
                ],
            },
        },
        {
            "type": "actions",
            "block_id": "settings",
            "elements": [
                {
                    "type": "conversations_select",
                    "action_id": "home_audit_channel",
                    "placeholder": plain("Audit channel"),
                },
                {"type": "multi_users_select", "action_id": "home_users", "max_selected_items": 5},
                button("home_set_key", "Set ModelsLab key"),
            ],
        },
    ],
}


def broken(payload: Json, change: Callable[[Json], Any]) -> Json:
    copied = copy.deepcopy(payload)
    change(copied)
    return copied


def pointers(problems: list[str]) -> list[str]:
    return [p.rsplit("[json-pointer:", 1)[-1].rstrip("]") for p in problems]


# --- documented payloads pass ------------------------------------------------------------


def test_documented_payloads_pass_every_rule() -> None:
    assert message_problems(APPROVAL) == []
    assert error_for("chat.postMessage", APPROVAL) is None
    assert error_for("chat.update", {**APPROVAL, "ts": "1764201600.000100"}) is None
    assert error_for("chat.postEphemeral", {**APPROVAL, "user": "U0BOB0001"}) is None
    assert view_problems(FORM, kind="modal") == []
    assert error_for("views.open", {"trigger_id": "12345.98765.abcd2358fdea", "view": FORM}) is None
    assert view_problems(HOME, kind="home") == []
    assert error_for("views.publish", {"user_id": "U0ALICE01", "view": HOME}) is None
    assert (
        error_for("views.publish", {"user_id": "U0ALICE01", "view": {"type": "home", "blocks": []}})
        is None
    )
    assert (
        message_problems({"text": "Cancelling…", "response_type": "ephemeral"}, surface="ack") == []
    )


# --- Slack refuses: limits ---------------------------------------------------------------

LONG = "x"


def _set(path: str, value: Any) -> Callable[[Json], None]:
    def change(payload: Json) -> None:
        *parents, last = path.split("/")
        node: Any = payload
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return change


MESSAGE_LIMITS = [
    ("blocks/1/text/text", "x" * (LIMITS["section_text"] + 1), "/blocks/1/text/text", 3001),
    ("blocks/2/fields/0/text", "x" * 2001, "/blocks/2/fields/0/text", 2001),
    ("blocks/2/fields", [mrkdwn("f")] * 11, "/blocks/2/fields", None),
    ("blocks/0/text/text", "x" * 151, "/blocks/0/text/text", 151),
    ("blocks/0/block_id", "b" * 256, "/blocks/0/block_id", 256),
    ("blocks/4/elements/0/text/text", "x" * 76, "/blocks/4/elements/0/text/text", 76),
    ("blocks/4/elements/0/value", "v" * 2001, "/blocks/4/elements/0/value", 2001),
    ("blocks/4/elements/2/url", "https://e.com/" + "u" * 3000, "/blocks/4/elements/2/url", 3001),
    ("blocks/4/elements/0/action_id", "a" * 256, "/blocks/4/elements/0/action_id", 256),
    ("blocks/4/elements", [button(f"b{i}") for i in range(26)], "/blocks/4/elements", None),
    ("blocks/5/elements", [mrkdwn("c")] * 11, "/blocks/5/elements", None),
    (
        "blocks/4/elements/1/confirm/title/text",
        "t" * 101,
        "/blocks/4/elements/1/confirm/title/text",
        101,
    ),
    (
        "blocks/4/elements/1/confirm/text/text",
        "t" * 301,
        "/blocks/4/elements/1/confirm/text/text",
        301,
    ),
    (
        "blocks/4/elements/1/confirm/confirm/text",
        "t" * 31,
        "/blocks/4/elements/1/confirm/confirm/text",
        31,
    ),
    (
        "blocks/4/elements/1/confirm/deny/text",
        "t" * 31,
        "/blocks/4/elements/1/confirm/deny/text",
        31,
    ),
    ("blocks/1/accessory/alt_text", "a" * 2001, "/blocks/1/accessory/alt_text", 2001),
    ("blocks/1/text/text", "", "/blocks/1/text/text", None),
]


@pytest.mark.parametrize(("path", "value", "pointer", "over"), MESSAGE_LIMITS)
def test_each_message_limit_is_refused_with_invalid_blocks(
    path: str, value: Any, pointer: str, over: int | None
) -> None:
    payload = broken(APPROVAL, _set(path, value))
    answer = error_for("chat.postMessage", payload)
    assert answer is not None and answer["error"] == "invalid_blocks"
    assert pointer in pointers(answer["errors"]), answer
    assert all(m.startswith("[ERROR] ") for m in answer["response_metadata"]["messages"])
    if over is not None:
        assert f"must be less than {over} characters" in " ".join(answer["errors"])
    # One short of the limit passes.
    if over is not None:
        fine = broken(APPROVAL, _set(path, value[: over - 1]))
        assert error_for("chat.postMessage", fine) is None


def test_a_message_takes_50_blocks_and_a_view_100() -> None:
    section = {"type": "section", "text": mrkdwn("row")}
    assert (
        error_for("chat.postMessage", {"channel": "C1", "text": "t", "blocks": [section] * 50})
        is None
    )
    too_many = error_for(
        "chat.postMessage", {"channel": "C1", "text": "t", "blocks": [section] * 51}
    )
    assert too_many is not None and too_many["error"] == "invalid_blocks"
    assert view_problems({"type": "home", "blocks": [section] * 100}, kind="home") == []
    answer = error_for(
        "views.publish", {"user_id": "U1", "view": {"type": "home", "blocks": [section] * 101}}
    )
    assert answer is not None and answer["error"] == "invalid_arguments"
    assert "[json-pointer:/view/blocks]" in answer["response_metadata"]["messages"][0]


@pytest.mark.parametrize(
    ("key", "value", "pointer"),
    [
        ("title", plain("x" * 25), "/view/title/text"),
        ("submit", plain("x" * 25), "/view/submit/text"),
        ("close", plain("x" * 25), "/view/close/text"),
        ("private_metadata", "m" * 3001, "/view/private_metadata"),
        ("callback_id", "c" * 256, "/view/callback_id"),
        ("external_id", "e" * 256, "/view/external_id"),
    ],
)
def test_each_modal_limit_is_refused_with_invalid_arguments(
    key: str, value: Any, pointer: str
) -> None:
    answer = error_for("views.open", {"trigger_id": "1.2.abc", "view": {**FORM, key: value}})
    assert answer is not None and answer["error"] == "invalid_arguments"
    assert any(
        pointer in m and m.startswith("[ERROR] ") for m in answer["response_metadata"]["messages"]
    )


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        (
            _set("blocks/1/element/placeholder/text", "p" * 151),
            "/blocks/1/element/placeholder/text",
        ),
        (
            _set("blocks/1/element/options/0/text/text", "o" * 76),
            "/blocks/1/element/options/0/text/text",
        ),
        (_set("blocks/1/element/options/0/value", "v" * 151), "/blocks/1/element/options/0/value"),
        (
            _set("blocks/1/element/options", [option(f"o{i}", f"v{i}") for i in range(101)]),
            "/blocks/1/element/options",
        ),
        (_set("blocks/0/label/text", "l" * 2001), "/blocks/0/label/text"),
        (_set("blocks/0/hint/text", "h" * 2001), "/blocks/0/hint/text"),
        (_set("blocks/0/element/max_length", 3001), "/blocks/0/element/max_length"),
        (
            _set("blocks/4/accessory/options", [option(f"o{i}", f"v{i}") for i in range(11)]),
            "/blocks/4/accessory/options",
        ),
        (
            _set("blocks/4/accessory/options/1/description/text", "d" * 76),
            "/blocks/4/accessory/options/1/description/text",
        ),
    ],
)
def test_each_element_limit_is_refused(change: Callable[[Json], None], pointer: str) -> None:
    assert pointer in pointers(view_problems(broken(FORM, change), kind="modal"))


def test_overflow_takes_at_most_five_options() -> None:
    five = broken(
        HOME, _set("blocks/1/accessory/options", [option(f"o{i}", f"v{i}") for i in range(5)])
    )
    six = broken(
        HOME, _set("blocks/1/accessory/options", [option(f"o{i}", f"v{i}") for i in range(6)])
    )
    assert view_problems(five, kind="home") == []
    assert "/blocks/1/accessory/options" in pointers(view_problems(six, kind="home"))


def test_a_view_over_250_kb_is_view_too_large() -> None:
    big = [{"type": "section", "text": mrkdwn("x" * 2900)} for _ in range(90)]
    assert view_problems({"type": "home", "blocks": big}, kind="home") == []
    answer = error_for("views.publish", {"user_id": "U1", "view": {"type": "home", "blocks": big}})
    assert answer == {"ok": False, "error": "view_too_large"}


def test_top_level_text_over_40000_characters_is_msg_too_long() -> None:
    assert error_for("chat.postMessage", {"channel": "C1", "text": "x" * 40_000}) is None
    assert error_for("chat.postMessage", {"channel": "C1", "text": "x" * 40_001}) == {
        "ok": False,
        "error": "msg_too_long",
    }
    assert error_for("chat.update", {"channel": "C1", "ts": "1.2", "text": "x" * 40_001}) == {
        "ok": False,
        "error": "msg_too_long",
    }


# --- Slack refuses: types and structure ------------------------------------------------


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        (_set("blocks/0/text", mrkdwn("*Header*")), "/blocks/0/text/type"),
        (_set("blocks/4/elements/0/text", mrkdwn("*Approve*")), "/blocks/4/elements/0/text/type"),
        (
            _set("blocks/4/elements/1/confirm/title", mrkdwn("Sure?")),
            "/blocks/4/elements/1/confirm/title/type",
        ),
        (
            _set("blocks/4/elements/1/confirm/confirm", mrkdwn("Yes")),
            "/blocks/4/elements/1/confirm/confirm/type",
        ),
        (
            _set("blocks/4/elements/1/confirm/deny", mrkdwn("No")),
            "/blocks/4/elements/1/confirm/deny/type",
        ),
    ],
)
def test_plain_text_only_fields_refuse_mrkdwn_in_messages(
    change: Callable[[Json], None], pointer: str
) -> None:
    answer = error_for("chat.postMessage", broken(APPROVAL, change))
    assert answer is not None and answer["error"] == "invalid_blocks"
    assert pointer in pointers(answer["errors"])


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        (_set("title", mrkdwn("My App")), "/title/type"),
        (_set("submit", mrkdwn("Go")), "/submit/type"),
        (_set("close", mrkdwn("No")), "/close/type"),
        (_set("blocks/0/label", mrkdwn("Reason")), "/blocks/0/label/type"),
        (
            _set("blocks/0/element/placeholder", mrkdwn("Type")),
            "/blocks/0/element/placeholder/type",
        ),
        (
            _set("blocks/1/element/options/0/text", mrkdwn("*PTO*")),
            "/blocks/1/element/options/0/text/type",
        ),
    ],
)
def test_plain_text_only_fields_refuse_mrkdwn_in_views(
    change: Callable[[Json], None], pointer: str
) -> None:
    assert pointer in pointers(view_problems(broken(FORM, change), kind="modal"))


def test_emoji_belongs_to_plain_text_and_verbatim_to_mrkdwn() -> None:
    emoji = broken(APPROVAL, _set("blocks/1/text", {**mrkdwn("hi"), "emoji": True}))
    verbatim = broken(APPROVAL, _set("blocks/0/text", {**plain("hi"), "verbatim": True}))
    assert "/blocks/1/text/emoji" in pointers(message_problems(emoji))
    assert "/blocks/0/text/verbatim" in pointers(message_problems(verbatim))


def test_unknown_properties_and_strings_for_objects_are_refused_as_slack_sdk_sees_them() -> None:
    extra = broken(APPROVAL, _set("blocks/1/colour", "red"))
    raw_text = broken(APPROVAL, _set("blocks/4/elements/0/text", "Approve"))
    answer = error_for("chat.postMessage", extra)
    assert answer is not None and "/blocks/1/colour" in pointers(answer["errors"])
    assert "/blocks/4/elements/0/text" in pointers(message_problems(raw_text))
    nulled = broken(APPROVAL, _set("blocks/4/elements/0/value", None))
    assert "/blocks/4/elements/0/value" in pointers(message_problems(nulled))


def test_unknown_block_and_misplaced_element_types_are_refused() -> None:
    unknown = broken(APPROVAL, _set("blocks/3", {"type": "carousel_of_doom"}))
    input_in_actions = broken(
        APPROVAL, _set("blocks/4/elements/0", {"type": "plain_text_input", "action_id": "t"})
    )
    assert "/blocks/3/type" in pointers(message_problems(unknown))
    assert "/blocks/4/elements/0/type" in pointers(message_problems(input_in_actions))


def test_block_ids_are_unique_in_a_message_and_a_view() -> None:
    twice = broken(APPROVAL, _set("blocks/4/block_id", "summary"))
    answer = error_for("chat.postMessage", twice)
    assert answer is not None and "/blocks/4/block_id" in pointers(answer["errors"])
    in_view = broken(FORM, _set("blocks/1/block_id", "reason"))
    assert "/blocks/1/block_id" in pointers(view_problems(in_view, kind="modal"))


def test_action_ids_are_unique_in_a_block_but_may_repeat_across_blocks() -> None:
    twice = broken(APPROVAL, _set("blocks/4/elements/1/action_id", "approve"))
    assert "/blocks/4/elements/1/action_id" in pointers(message_problems(twice))
    rows = [
        {
            "type": "section",
            "text": mrkdwn(f"`run{i}`"),
            "accessory": button("cancel_training", "Cancel"),
        }
        for i in range(3)
    ]
    assert message_problems({"text": "Trainings you can cancel", "blocks": rows}) == []


def test_structure_rules_section_style_submit_and_selects() -> None:
    empty_section = broken(APPROVAL, _set("blocks/1", {"type": "section"}))
    bad_style = broken(APPROVAL, _set("blocks/4/elements/0/style", "green"))
    no_submit = {k: v for k, v in FORM.items() if k != "submit"}
    external_with_options = broken(FORM, _set("blocks/2/element/options", [option()]))
    static_without = broken(FORM, lambda v: v["blocks"][1]["element"].pop("options"))
    home_with_title = {**HOME, "title": plain("Home")}
    assert "/blocks/1" in pointers(message_problems(empty_section))
    assert "/blocks/4/elements/0/style" in pointers(message_problems(bad_style))
    assert "/submit" in pointers(view_problems(no_submit, kind="modal"))
    assert "/blocks/2/element/options" in pointers(
        view_problems(external_with_options, kind="modal")
    )
    assert "/blocks/1/element/options" in pointers(view_problems(static_without, kind="modal"))
    assert "/title" in pointers(view_problems(home_with_title, kind="home"))
    assert "/type" in pointers(view_problems(FORM, kind="home"))


def test_message_content_errors() -> None:
    assert error_for("chat.postMessage", {"channel": "C1"}) == {"ok": False, "error": "no_text"}
    assert error_for("chat.update", {"channel": "C1", "ts": "1.2", "blocks": []}) == {
        "ok": False,
        "error": "no_text",
    }
    as_string = error_for("chat.postMessage", {"channel": "C1", "text": "t", "blocks": "[{bad"})
    assert as_string == {"ok": False, "error": "invalid_blocks_format"}
    bad_metadata = {"channel": "C1", "text": "t", "metadata": {"event_payload": {}}}
    assert error_for("chat.postMessage", bad_metadata) == {
        "ok": False,
        "error": "invalid_metadata_format",
    }
    good_metadata = {
        "channel": "C1",
        "text": "t",
        "metadata": {"event_type": "x", "event_payload": {"a": 1}},
    }
    assert error_for("chat.postMessage", good_metadata) is None


@pytest.mark.parametrize(
    ("method", "args", "error"),
    [
        ("chat.postMessage", {"text": "t"}, "channel_not_found"),
        ("chat.update", {"channel": "C1", "text": "t"}, "message_not_found"),
        ("chat.postEphemeral", {"channel": "C1", "text": "t"}, "user_not_found"),
        ("chat.getPermalink", {"channel": "C1"}, "message_not_found"),
        ("conversations.replies", {"channel": "C1"}, "thread_not_found"),
        ("conversations.history", {}, "channel_not_found"),
        ("usergroups.users.list", {}, "no_such_subteam"),
        ("users.info", {}, "user_not_found"),
        ("views.open", {"view": FORM}, "invalid_trigger_id"),
        ("views.push", {"view": FORM}, "invalid_trigger_id"),
        ("views.publish", {"view": HOME}, "invalid_arguments"),
        ("views.update", {"view": FORM}, "invalid_arguments"),
        ("views.open", {"trigger_id": "1.2.a"}, "invalid_arguments"),
        ("chat.update", {"channel": "C1", "ts": "yesterday", "text": "t"}, "invalid_arguments"),
        (
            "chat.postMessage",
            {"channel": "C1", "text": "t", "thread_ts": "not-a-ts"},
            "invalid_arguments",
        ),
        ("conversations.history", {"channel": "C1", "limit": "lots"}, "invalid_arguments"),
        ("conversations.history", {"channel": "C1", "oldest": "yesterday"}, "invalid_arguments"),
        ("usergroups.list", {"include_users": "maybe"}, "invalid_arguments"),
        ("chat.postMessage", {"channel": ["C1"], "text": "t"}, "invalid_arguments"),
    ],
)
def test_required_parameters_and_their_types_per_method(
    method: str, args: Json, error: str
) -> None:
    answer = error_for(method, args)
    assert answer is not None and answer["ok"] is False and answer["error"] == error, answer
    if error == "invalid_arguments":
        assert answer["response_metadata"]["messages"][0].startswith("[ERROR] ")


def test_well_typed_reads_pass() -> None:
    assert (
        error_for(
            "conversations.history",
            {"channel": "C1", "limit": "15", "oldest": "1764201600.000100", "inclusive": "true"},
        )
        is None
    )
    assert (
        error_for(
            "conversations.replies", {"channel": "C1", "ts": "1764201600.000100", "limit": 15}
        )
        is None
    )
    assert (
        error_for("chat.getPermalink", {"channel": "C1", "message_ts": "1764201600.000100"}) is None
    )
    assert error_for("usergroups.list", {"include_users": True, "include_count": "1"}) is None
    assert error_for("views.update", {"external_id": "home-1", "view": FORM}) is None


# --- Slack accepts but misrenders: the text policy ---------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "*/cancel-training <training_id>*",  # the usage text's own placeholder
        "Title: a < b",
        "Title: a > b",
        "ModelsLab said: rate limit & retry",
        "Team R&D",
        "&copy; 2025",
    ],
)
def test_unescaped_control_characters_are_caught(text: str) -> None:
    assert mrkdwn_problems(text)
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert mrkdwn_problems(escaped) == []


@pytest.mark.parametrize(
    "token", ["<!channel>", "<!here>", "<!everyone>", "<!here|here>", "<!channel|@channel>"]
)
def test_broadcast_mentions_are_caught(token: str) -> None:
    [problem] = mrkdwn_problems(f"Training `x` failed {token}")
    assert "broadcast" in problem


@pytest.mark.parametrize(
    "text",
    [
        "<@U0ALICE01>",
        "<@W0ALICE01>",
        "<@U0ALICE01|alice>",
        "<#C0TRAIN01>",
        "<#C0TRAIN01|ml-training>",
        "<!subteam^S0ADMINS1>",
        "<!subteam^S0ADMINS1|@admins>",
        "<https://example.com>",
        "<https://example.com/a?b=1&c=2|a link>",
        "<mailto:ops@example.com|mail ops>",
        "<!date^1764201600^{date_short_pretty} {time}|2025-11-27 00:00 UTC>",
        "<!date^1764201600^Posted {date_long} {ago}^https://example.com|Nov 27>",
        "> a quote from the bot\n> second line",
    ],
)
def test_well_formed_tokens_pass(text: str) -> None:
    assert mrkdwn_problems(text) == []


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("<@alice>", "user mention"),
        ("<#general>", "channel mention"),
        ("<!subteam^admins>", "user-group mention"),
        ("<!date^1764201600^{date_short_pretty}>", "fallback"),
        ("<!date^1764201600^{date_short_pretty}|>", "fallback text is empty"),
        ("<!date^soon^{date}|later>", "Unix time"),
        ("<!date^1764201600^{tomorrow}|x>", "unknown date token"),
        ("<!date^1764201600^at noon|x>", "no {date"),
        ("<!date^1764201600^{date}^not a url|x>", "not a URL"),
        ("<ftp://example.com>", "not a Slack token"),
        ("<https://example.com|>", "empty link label"),
        ("<!foo>", "not a Slack token"),
    ],
)
def test_malformed_tokens_are_caught(text: str, fragment: str) -> None:
    problems = mrkdwn_problems(text)
    assert any(fragment in p for p in problems), problems


def test_text_policy_problems_are_listed_but_slack_answers_ok() -> None:
    pinging = broken(APPROVAL, _set("blocks/1/text/text", "Title <!channel> & <bad>"))
    assert error_for("chat.postMessage", pinging) is None  # Slack posts it: and pings everyone
    assert pointers(message_problems(pinging)) == ["/blocks/1/text/text"] * 3
    in_fallback = {**APPROVAL, "text": "usage: /cancel-training <training_id>"}
    assert pointers(message_problems(in_fallback)) == ["/text"]
    in_view = broken(HOME, _set("blocks/1/text/text", "Run `/cancel-training <id>`"))
    assert pointers(view_problems(in_view, kind="home")) == ["/blocks/1/text/text"]


def test_plain_text_is_not_parsed_for_tokens() -> None:
    assert message_problems(broken(APPROVAL, _set("blocks/0/text/text", "a <b> & c"))) == []


def test_blocks_need_a_text_fallback_on_chat_methods_only() -> None:
    without = {k: v for k, v in APPROVAL.items() if k != "text"}
    for surface in ("message", "update", "ephemeral"):
        assert pointers(message_problems(without, surface=surface)) == ["/text"]
    assert error_for("chat.postMessage", without) is None  # Slack only recommends it
    assert message_problems(without, surface="response_url") == []
    assert message_problems({**without, "text": "  "}) != []


# --- answers the app gives Slack ---------------------------------------------------------


def test_response_url_and_ack_bodies() -> None:
    assert error_for("response_url", {"text": "Done", "replace_original": True}) is None
    assert error_for("response_url", {"delete_original": True}) is None
    assert error_for("response_url", {"response_type": "ephemeral"}) == {
        "ok": False,
        "error": "no_text",
    }
    bad_type = message_problems({"text": "x", "response_type": "private"}, surface="ack")
    assert pointers(bad_type) == ["/response_type"]
    command = {"command": "/cancel-training", "text": "help"}
    assert ack_problems(command, None) == []
    assert ack_problems(command, {"text": "usage: /cancel-training &lt;id&gt;"}) == []
    assert pointers(ack_problems(command, {"text": "usage: /cancel-training <id>"})) == ["/text"]
    assert pointers(ack_problems(command, "usage: <id>")) == ["/text"]
    assert ack_problems({"type": "block_actions"}, {"anything": "is ignored"}) == []


def test_options_answers() -> None:
    groups = {"options": [option("@admins", "S0ADMINS1"), option("@ml", "S0ML00001")]}
    assert options_problems(groups) == []
    assert ack_problems({"type": "block_suggestion"}, groups) == []
    too_many = {"options": [option(f"g{i}", f"S{i}") for i in range(101)]}
    assert pointers(options_problems(too_many)) == ["/options"]
    grouped = {"option_groups": [{"label": plain("Groups"), "options": [option()]}]}
    assert options_problems(grouped) == []
    assert pointers(
        options_problems({"option_groups": [{"label": plain("x" * 76), "options": [option()]}]})
    ) == ["/option_groups/0/label/text"]


def test_view_submission_answers() -> None:
    submission = {"type": "view_submission"}
    assert (
        ack_problems(
            submission, {"response_action": "errors", "errors": {"key_block": "Invalid key"}}
        )
        == []
    )
    assert ack_problems(submission, {"response_action": "update", "view": FORM}) == []
    assert ack_problems(submission, {"response_action": "clear"}) == []
    long_title = {"response_action": "push", "view": {**FORM, "title": plain("x" * 25)}}
    assert pointers(ack_problems(submission, long_title)) == ["/view/title/text"]
    assert pointers(ack_problems(submission, {"response_action": "close"})) == ["/response_action"]
