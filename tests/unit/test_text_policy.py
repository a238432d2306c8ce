"""The text policy (bot/slack/messages/text.py): outside text escaped exactly once, every field within its limit."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.slack.messages import text
from tests.fakes.slack_rules import mrkdwn_problems

FAST = settings(max_examples=150, deadline=None)

# Text a title, a name or a ModelsLab message could be: anything but lone surrogates, with the
# characters and sequences Slack treats specially mixed in.
HOSTILE_PIECES = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U0ALICE01>",
    "<https://evil.example|click>",
    "&",
    "&amp;",
    "&lt;",
    "<",
    ">",
    "> quote",
    "*bold*",
    "`code`",
    "😀",
    "👨‍👩‍👧",
    "\n",
    "\t",
    "\x00",
    "\u202e",
    " ",
]
hostile = st.lists(
    st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(st.characters(exclude_categories=["Cs"]))),
    max_size=40,
).map("".join)
huge = st.builds(lambda piece, n: piece * n, hostile.filter(bool), st.integers(1, 2_000))
any_text = st.one_of(hostile, huge)


def unescape(mrkdwn: str) -> str:
    """What a reader sees of escaped text (Slack decodes each entity once)."""
    return re.sub(
        r"&(amp|lt|gt);", lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m.group(1)], mrkdwn
    )


def test_escape_turns_the_three_characters_into_entities_and_nothing_else() -> None:
    assert text.escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert text.escape("&amp;") == "&amp;amp;"  # raw text is escaped as it is, once
    assert text.escape("*bold* `x` :smile:") == "*bold* `x` :smile:"


def test_a_broadcast_in_outside_text_is_shown_literally() -> None:
    shown = text.outside("deploy <!channel> now", 100)
    assert shown == "deploy &lt;!channel&gt; now"
    assert mrkdwn_problems(shown) == []


def test_truncation_never_cuts_an_escape_or_a_token() -> None:
    assert text.truncate("ab&amp;cd", 5) == "ab…"
    assert text.truncate("x <@U0ALICE01> y", 8) == "x…"
    assert text.truncate("😀😀😀", 5) == "😀😀…"  # an astral emoji counts two, as Slack counts
    assert text.truncate("short", 5) == "short"


def test_summarise_says_how_many_were_left_out() -> None:
    items = [f"<@U{i:08d}>" for i in range(50)]
    shown = text.summarise(items, 100)
    assert text.units(shown) <= 100
    kept = shown.count("<@")
    assert shown.endswith(f"…and {50 - kept} more") and kept > 0
    assert text.summarise(items[:3], 100) == ", ".join(items[:3])
    assert text.summarise([], 100) == ""
    assert text.summarise(items, 3_000, max_items=10).endswith("…and 40 more")


def test_mentions_only_wrap_ids() -> None:
    assert text.user("U0ALICE01") == "<@U0ALICE01>"
    assert text.user("<!channel>") == "&lt;!channel&gt;"
    assert text.entry("S0GROUP01") == "<!subteam^S0GROUP01>"
    assert text.channel("C0AUDIT01") == "<#C0AUDIT01>"
    assert text.channel("C0A|x>") == "C0A|x&gt;"
    assert text.link("https://slack.com/archives/C1/p1", "a <b>") == (
        "<https://slack.com/archives/C1/p1|a &lt;b&gt;>"
    )
    assert text.link("javascript:alert(1)", "x") == "x"
    permalink = "https://acme.slack.com/archives/C1/p2?thread_ts=1.2&cid=C1|x>"
    linked = text.link(permalink, "thread")
    assert (
        linked == "<https://acme.slack.com/archives/C1/p2?thread_ts=1.2&amp;cid=C1%7Cx%3E|thread>"
    )
    assert mrkdwn_problems(linked) == []


@FAST
@given(raw=any_text, limit=st.integers(20, 3_000))
def test_outside_text_is_escaped_once_bounded_and_read_back_as_written(
    raw: str, limit: int
) -> None:
    shown = text.outside(raw, limit)
    assert text.units(shown) <= limit
    assert mrkdwn_problems(shown) == []
    seen = unescape(shown)
    line = text.one_line(raw)
    if shown.endswith(text.ELLIPSIS) and seen != line:
        assert line.startswith(seen[: -len(text.ELLIPSIS)].rstrip())
    else:
        assert seen == line


@FAST
@given(raw=any_text, limit=st.integers(1, 200))
def test_plain_text_is_never_empty_never_over_and_never_escaped(raw: str, limit: int) -> None:
    shown = text.plain(raw, limit)
    assert shown and text.units(shown) <= max(limit, 1)
    line = text.one_line(raw)
    assert line.startswith(shown.removesuffix(text.ELLIPSIS).rstrip()) or shown == text.ELLIPSIS


@FAST
@given(
    items=st.lists(hostile.map(lambda t: text.outside(t, 200)), max_size=1_000),
    limit=st.integers(250, 4_000),
    separator=st.sampled_from([", ", "\n"]),
)
def test_a_summary_fits_and_accounts_for_every_item(
    items: list[str], limit: int, separator: str
) -> None:
    shown = text.summarise(items, limit, separator=separator)
    assert text.units(shown) <= limit
    assert mrkdwn_problems(shown) == []
    match = re.search(r"…and (\d+) more$", shown)
    left_out = int(match.group(1)) if match else 0
    if not match:
        assert shown == separator.join(items)
    else:
        kept = shown[: match.start()].removesuffix(separator)
        assert kept == separator.join(items[: len(items) - left_out])
