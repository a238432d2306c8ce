"""Every Block Kit builder, fed hostile and huge inputs, produces a payload real Slack accepts.

"Accepts" is the strict fake's validator (tests/fakes/slack_rules.py): each block and view is
parsed and serialised by slack_sdk's models (which enforce their limits on ``to_dict()``), then
checked against Slack's documented limits, plain_text-only fields, unique ids, and mrkdwn that
renders as meant (no stray ``<``/``>``/``&``, no broadcast, well-formed mentions and dates).
"""

from __future__ import annotations

import re
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.model import Cancellation, Notification, OutcomeKind
from bot.service.access import Decision
from bot.service.cancellation import NO_KEY
from bot.slack.messages import blocks, home
from bot.slack.messages import text as policy
from bot.stages import V3_STAGES, WORDS
from tests.fakes.slack_rules import message_problems, options_problems, view_problems
from tests.unit.test_text_policy import any_text, hostile

FAST = settings(max_examples=60, deadline=None)
LISTS = settings(max_examples=25, deadline=None)

_ID_CHARS = string.ascii_uppercase + string.digits
user_ids = st.text(_ID_CHARS, min_size=8, max_size=10).map(lambda s: "U" + s)
group_ids = st.text(_ID_CHARS, min_size=8, max_size=10).map(lambda s: "S" + s)
owners = st.one_of(st.none(), user_ids, hostile)
requesters = st.one_of(user_ids, any_text.map(lambda t: "cli:" + t))
training_ids = st.one_of(
    st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=64),
    st.uuids().map(str),
)
epochs = st.floats(0, 4e9)
channels = st.text(_ID_CHARS, min_size=8, max_size=10).map(lambda s: "C" + s)
outcomes = st.one_of(st.none(), st.sampled_from([k.value for k in OutcomeKind] + [NO_KEY]), hostile)

cancellations = st.builds(
    Cancellation,
    id=st.integers(1, 10**9),
    workspace_id=st.just("T0TEAM001"),
    training_id=training_ids,
    requested_by=requesters,
    origin=st.one_of(st.sampled_from(["command", "button", "retry", "cli"]), hostile),
    state=st.sampled_from(["requested", "calling", "cancelled", "rejected", "failed"]),
    outcome=outcomes,
    reason=st.one_of(st.none(), any_text),
    dry_run=st.booleans(),
    requested_at=epochs,
    updated_at=epochs,
    finished_at=st.one_of(st.none(), epochs),
    attempts=st.integers(0, 5),
    next_attempt_at=epochs,
    lease_owner=st.none(),
    lease_expires_at=st.none(),
    channel_id=st.one_of(st.none(), channels),
    report_state=st.just("pending"),
)
notifications = st.builds(
    Notification,
    workspace_id=st.just("T0TEAM001"),
    training_id=training_ids,
    channel_id=channels,
    message_ts=st.integers(10**9, 2 * 10**9).map(lambda n: f"{n}.000100"),
    owner_id=owners,
    title=st.one_of(st.none(), any_text),
    stage=st.one_of(st.none(), st.sampled_from([*V3_STAGES, *WORDS, "failed"]), hostile),
    created_at=epochs,
    eta=st.one_of(st.none(), hostile, st.integers(0, 10**50).map(lambda n: f"{n} minutes")),
    started_at=st.one_of(st.none(), epochs),
)
links = st.one_of(st.builds(blocks.thread_link, channels, st.just("1764201600.000100")), hostile)


def accepted(message: dict[str, Any], *surfaces: str) -> None:
    for surface in surfaces:
        problems = message_problems(message, surface=surface)
        assert problems == [], (surface, problems[:5])


def shown(message: dict[str, Any]) -> str:
    """Every mrkdwn string of a message, as one text."""
    parts = [message.get("text", "")]
    for block in message.get("blocks", []):
        parts.append(str(block))
    return "\n".join(parts)


# --- messages -----------------------------------------------------------------------------


@FAST
@given(note=notifications, latest=st.one_of(st.none(), cancellations))
def test_a_notification_is_accepted_whatever_its_title_owner_stage_and_outcome(
    note: Notification, latest: Cancellation | None
) -> None:
    message = blocks.build_notification(note, latest)
    accepted(message, "message", "update")


@FAST
@given(title=any_text)
def test_a_notification_title_is_shown_escaped_once_and_truncated(title: str) -> None:
    note = Notification("T0TEAM001", "F5jvdzGnYi", "C0TRAIN01", "", None, title, None, 0.0)
    message = blocks.build_notification(note, None)
    accepted(message, "message")
    section = message["blocks"][0]["text"]["text"]
    line = policy.one_line(title)
    head = "*Training `F5jvdzGnYi`*"
    body = section.removeprefix(head).removeprefix(" — ")
    seen = re.sub(r"&(amp|lt|gt);", lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m[1]], body)
    if policy.units(policy.escape(line)) <= blocks.TITLE_CHARS:
        assert seen == line
    else:
        assert seen.endswith(policy.ELLIPSIS) and line.startswith(seen[:-1].rstrip())


@FAST
@given(note=notifications)
def test_a_finished_reply_is_accepted(note: Notification) -> None:
    accepted(blocks.build_finished_reply(note), "message")


@FAST
@given(row=cancellations, owner=owners)
def test_outcome_announcement_and_retry_notice_are_accepted(
    row: Cancellation, owner: str | None
) -> None:
    outcome = blocks.build_outcome(row, owner_id=owner)
    accepted(outcome, "message")
    # The same text is the response_url fallback when the thread cannot be posted in.
    accepted({"text": outcome["text"], "response_type": "ephemeral"}, "response_url")
    accepted(blocks.build_announcement(row), "message")
    accepted(blocks.build_retry_notice(row), "message", "response_url")


@FAST
@given(row=cancellations, created=st.booleans(), note=st.one_of(st.none(), notifications))
def test_the_answer_to_a_cancel_request_is_accepted(
    row: Cancellation, created: bool, note: Notification | None
) -> None:
    ack = blocks.build_request_ack(row, created=created, notification=note)
    accepted(ack, "ack", "response_url")


@FAST
@given(reason=any_text, training=any_text, origin=hostile, user=st.one_of(user_ids, hostile))
def test_ephemeral_answers_and_audit_posts_are_accepted(
    reason: str, training: str, origin: str, user: str
) -> None:
    for answer in (
        blocks.build_usage(),
        blocks.build_invalid_id(reason),
        blocks.build_refusal(Decision(False, reason, "not_listed")),
        blocks.build_error("The bot's database is not answering. Try again in a moment."),
        blocks.build_watching("F5jvdzGnYi"),
    ):
        accepted(answer, "ack", "response_url")
    audit = blocks.build_refusal_audit(
        user_id=user, training_id=training, origin=origin, reason=reason
    )
    accepted(audit, "message")
    assert audit["text"].count(":no_entry:") == 1


@FAST
@given(link=links)
def test_a_watch_answer_with_a_link_is_accepted(link: str) -> None:
    accepted(blocks.build_watching("F5jvdzGnYi", existing_link=link), "ack", "response_url")


@LISTS
@given(rows=st.lists(cancellations, max_size=1_000), data=st.data())
def test_history_of_any_length_is_accepted_and_says_what_it_left_out(
    rows: list[Cancellation], data: st.DataObject
) -> None:
    linked = {row.id: data.draw(links) for row in rows[:20]}
    answer = blocks.build_history(rows, linked)
    accepted(answer, "ack", "response_url")
    listed = answer["text"].count("\n• ")
    if listed < len(rows):
        assert answer["text"].endswith(f"…and {len(rows) - listed} more")


@LISTS
@given(notes=st.lists(notifications, max_size=1_000))
def test_the_cancellable_list_of_any_length_is_accepted(notes: list[Notification]) -> None:
    answer = blocks.build_cancellable_list(notes)
    accepted(answer, "ack", "response_url")
    if len(notes) > blocks.LISTED_TRAININGS:
        assert f"…and {len(notes) - blocks.LISTED_TRAININGS} more" in shown(answer)


@LISTS
@given(
    user=st.one_of(user_ids, hostile),
    added=st.lists(st.one_of(user_ids, group_ids), max_size=1_000),
    channel=st.one_of(channels, hostile),
)
def test_admin_changes_posted_to_the_audit_channel_are_accepted(
    user: str, added: list[str], channel: str
) -> None:
    share = policy.MESSAGE_TEXT // 3
    what = "allowed " + policy.summarise([policy.entry(e) for e in added], share)
    accepted(blocks.build_admin_change(user, what), "message")
    accepted(
        blocks.build_admin_change(user, f"set the audit channel to {policy.channel(channel)}"),
        "message",
    )


# --- views ----------------------------------------------------------------------------------


admin_settings = st.builds(
    home.AdminSettings,
    key=st.one_of(
        st.just("not set"),
        st.builds(
            lambda u, hint: f"set by {policy.user(u)}, ends …{policy.outside(hint, 20)}",
            st.one_of(user_ids, hostile),
            hostile,
        ),
    ),
    fixed_entries=st.lists(st.one_of(user_ids, group_ids), max_size=1_000),
    entries=st.lists(st.one_of(user_ids, group_ids), max_size=1_000),
    webhook_token=st.one_of(st.none(), hostile),
    audit_channel=st.one_of(st.none(), channels, hostile),
    notify_channel=st.one_of(st.none(), channels, hostile),
    dry_run=st.booleans(),
)


@LISTS
@given(
    reason=any_text,
    allowed=st.booleans(),
    recent=st.lists(cancellations, max_size=1_000),
    admin=st.one_of(st.none(), admin_settings),
)
def test_the_home_tab_is_accepted_for_anyone_with_any_allow_list_and_history(
    reason: str, allowed: bool, recent: list[Cancellation], admin: home.AdminSettings | None
) -> None:
    view = home.build_home(decision=Decision(allowed, reason), recent=recent, admin=admin)
    problems = view_problems(view, kind="home")
    assert problems == [], problems[:5]


@LISTS
@given(
    users=st.lists(user_ids, max_size=1_000, unique=True),
    groups=st.lists(group_ids, max_size=1_000, unique=True),
    fixed=st.lists(st.one_of(user_ids, group_ids), max_size=1_000),
)
def test_the_allow_list_editor_is_accepted_and_accounts_for_every_entry(
    users: list[str], groups: list[str], fixed: list[str]
) -> None:
    view = home.build_allow_modal(users=users, groups=groups, fixed=fixed)
    problems = view_problems(view, kind="modal")
    assert problems == [], problems[:5]
    held = home.editable_from_metadata(view["private_metadata"])
    assert held is not None
    inputs = {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}
    in_pickers = set(inputs[home.USERS_BLOCK].get("initial_users", [])) | {
        o["value"] for o in inputs[home.GROUPS_BLOCK].get("initial_options", [])
    }
    # What the pickers hold is exactly what a submission may remove; the rest is named as kept.
    assert in_pickers == held
    hidden = len(set(users) | set(groups)) - len(held)
    if hidden:
        assert f"({hidden}; they stay on the list" in str(view["blocks"])


@FAST
@given(notice=hostile.map(lambda t: policy.outside(t, 5_000)))
def test_the_key_and_notice_modals_are_accepted(notice: str) -> None:
    assert view_problems(home.build_key_modal(), kind="modal") == []
    assert view_problems(home.build_notice_modal(notice), kind="modal") == []


@FAST
@given(
    groups=st.lists(
        st.fixed_dictionaries(
            {"id": st.one_of(group_ids, hostile), "handle": any_text, "name": any_text}
        ),
        max_size=300,
    ),
    typed=hostile,
)
def test_the_group_picker_options_are_accepted(groups: list[dict[str, Any]], typed: str) -> None:
    answer = home.build_group_options(groups, typed)
    assert options_problems(answer) == []


# --- the extremes, every run ------------------------------------------------------------------


def _row(i: int, **kw: Any) -> Cancellation:
    values: dict[str, Any] = {
        "id": i,
        "workspace_id": "T0TEAM001",
        "training_id": f"run{i:06d}",
        "requested_by": f"U{i:09d}",
        "origin": "button",
        "state": "rejected",
        "outcome": "refused",
        "reason": "<!channel> & " * 1_000,
        "dry_run": False,
        "requested_at": 1.7e9 + i,
        "updated_at": 1.7e9 + i,
        "finished_at": 1.7e9 + i,
        "attempts": 1,
        "next_attempt_at": 1.7e9,
        "lease_owner": None,
        "lease_expires_at": None,
        "channel_id": "C0TRAIN01",
        "report_state": "delivered",
    }
    values.update(kw)
    return Cancellation(**values)


def test_a_ten_thousand_character_title_with_a_broadcast_posts_truncated_and_pings_nobody() -> None:
    title = ("<!channel> ship it & " * 500)[:10_000]
    note = Notification(
        "T0TEAM001", "F5jvdzGnYi", "C0TRAIN01", "", "U0OWNER01", title, "training_started", 0.0
    )
    for latest in (None, _row(1, training_id="F5jvdzGnYi")):
        message = blocks.build_notification(note, latest)
        accepted(message, "message", "update")
        everything = shown(message)
        assert "<!channel>" not in everything and "&lt;!channel&gt; ship it &amp;" in everything
        assert "…" in message["blocks"][0]["text"]["text"]
        # ModelsLab's message is outside text too: escaped and bounded in the status line.
        assert latest is None or 'ModelsLab said: "&lt;!channel&gt; &amp;' in everything


def test_a_thousand_entry_allow_list_and_history_still_give_a_home_tab() -> None:
    entries = [f"U{i:09d}" for i in range(1_000)]
    groups = [f"S{i:09d}" for i in range(1_000)]
    admin = home.AdminSettings(
        key="not set",
        fixed_entries=entries[:500] + groups[:500],
        entries=entries[500:] + groups[500:],
        webhook_token="tok<en>&",
        audit_channel="C0AUDIT01",
        notify_channel="not a channel",
        dry_run=True,
    )
    recent = [_row(i) for i in range(1_000)]
    view = home.build_home(decision=Decision(True), recent=recent, admin=admin)
    assert view_problems(view, kind="home") == []
    text = str(view["blocks"])
    assert "…and 990 more" in text  # the last cancellations: ten of them, and a count
    assert re.search(r"Set by the operator \(always in force\): .*…and \d+ more", text)
    assert re.search(r"Added here: .*…and \d+ more", text)


def test_a_thousand_entry_allow_list_opens_an_editor_that_keeps_what_it_cannot_show() -> None:
    users = [f"U{i:09d}" for i in range(1_000)]
    groups = [f"S{i:09d}" for i in range(1_000)]
    view = home.build_allow_modal(users=users, groups=groups, fixed=users[:3])
    assert view_problems(view, kind="modal") == []
    held = home.editable_from_metadata(view["private_metadata"])
    assert held is not None and 0 < len(held) < 2_000
    assert f"({2_000 - len(held)}; they stay on the list" in str(view["blocks"])


def test_a_thousand_row_history_and_list_are_summarised() -> None:
    rows = [_row(i) for i in range(1_000)]
    answer = blocks.build_history(
        rows, {r.id: blocks.thread_link("C0TRAIN01", "1.2") for r in rows}
    )
    accepted(answer, "ack", "response_url")
    assert re.search(r"…and \d+ more$", answer["text"])
    notes = [
        Notification("T0TEAM001", f"run{i:06d}", "C0TRAIN01", "1.2", None, "x" * 5_000, None, 0.0)
        for i in range(1_000)
    ]
    answer = blocks.build_cancellable_list(notes)
    accepted(answer, "ack", "response_url")
    assert "…and 990 more" in shown(answer)
