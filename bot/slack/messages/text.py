"""The text policy: the one way outside text reaches a Slack field, and every field's limit.

Slack parses ``<…>`` in mrkdwn as links and mentions (inside backticks too) and decodes ``&amp;``,
``&lt;`` and ``&gt;``; anything else is shown as written. So text from outside (titles, names,
ModelsLab's messages, what users type) is escaped exactly once on its way into mrkdwn, and every
field is bounded by cutting whole characters, escapes and Slack tokens, never half of one. Lengths
are measured on what Slack receives (the escaped text), in UTF-16 code units, which is never less
than the code points slack_sdk counts. Pure functions: nothing here knows the store or HTTP.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# --- Slack's documented limits (Block Kit reference; chat.postMessage for `text`) -------------
MESSAGE_TEXT = 4_000  # chat.postMessage's advice for `text`; Slack truncates at 40,000
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
SECTION_TEXT = 3_000
SECTION_FIELDS = 10
CONTEXT_ELEMENTS = 10
CONTEXT_TEXT = 3_000  # a text object's own limit
HEADER_TEXT = 150
ACTIONS_ELEMENTS = 25
BUTTON_TEXT = 75
BUTTON_VALUE = 2_000
# visible_to_user_ids: Slack documents no maximum; beyond this many the button shows to everyone
# (it is a courtesy, never the check) rather than risk a refused message.
VISIBLE_USERS = 50
ACTION_ID = 255
BLOCK_ID = 255
CALLBACK_ID = 255
CONFIRM_TITLE = 100
CONFIRM_TEXT = 300
CONFIRM_BUTTON = 30
OPTION_TEXT = 75
OPTION_VALUE = 150
OPTIONS = 100  # options in a menu (and in a block_suggestion answer)
PLACEHOLDER = 150
INPUT_LABEL = 2_000
INPUT_HINT = 2_000
MODAL_TITLE = 24
MODAL_BUTTON = 24  # submit and close
PRIVATE_METADATA = 3_000

ELLIPSIS = "…"

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
# What a cut may not split: an escape, a <…> token, or one character.
_ATOMS = re.compile(r"&(?:amp|lt|gt);|<[^<>]*>|.", re.DOTALL)
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,40}")
_GROUP_ID = re.compile(r"S[A-Z0-9]{2,40}")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,40}")
_URL = re.compile(r"https?://\S{1,2000}")


def units(text: str) -> int:
    """Return the length Slack measures: UTF-16 code units (an astral emoji counts two)."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def escape(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` for mrkdwn (call once, on raw outside text only)."""
    return text.translate(_ESCAPES)


def one_line(text: str) -> str:
    """Fold line breaks, tabs and control characters into single spaces."""
    if text.isprintable():
        return text.strip()
    out = [" " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text]
    return " ".join("".join(out).split())


def truncate(mrkdwn: str, limit: int) -> str:
    """Bound mrkdwn text to `limit` units, ending with an ellipsis when anything was cut."""
    if units(mrkdwn) <= limit:
        return mrkdwn
    budget = limit - units(ELLIPSIS)
    kept: list[str] = []
    used = 0
    for match in _ATOMS.finditer(mrkdwn):
        atom = match.group()
        size = units(atom)
        if used + size > budget:
            break
        kept.append(atom)
        used += size
    return "".join(kept).rstrip() + ELLIPSIS


def outside(text: str | None, limit: int) -> str:
    """Put one line of outside text into mrkdwn: escaped once and bounded to `limit`."""
    return truncate(escape(one_line(text or "")), limit)


def plain(text: str, limit: int, *, empty: str = ELLIPSIS) -> str:
    """Put text into a plain_text field (shown as written, so not escaped), bounded, never empty."""
    line = one_line(text)
    if units(line) > limit:
        budget, cut = limit - units(ELLIPSIS), []
        used = 0
        for c in line:
            used += units(c)
            if used > budget:
                break
            cut.append(c)
        line = "".join(cut).rstrip() + ELLIPSIS
    return line or empty


def more(count: int) -> str:
    """The tail of a summarised list."""
    return f"{ELLIPSIS}and {count} more"


def summarise(
    items: Sequence[str], limit: int, *, separator: str = ", ", max_items: int | None = None
) -> str:
    """Join mrkdwn items within `limit` units; what does not fit becomes "…and N more".

    Items are dropped whole; only when not even the first fits is it cut.
    """
    cap = len(items) if max_items is None else min(max_items, len(items))
    sep = units(separator)
    lengths = [units(item) for item in items[:cap]]
    total = sum(lengths) + sep * max(cap - 1, 0)
    if cap == len(items) and total <= limit:
        return separator.join(items)
    shown, used = 0, 0
    for size in lengths:
        tail = sep + units(more(len(items) - shown - 1)) if shown + 1 < len(items) else 0
        step = size + (sep if shown else 0)
        if used + step + tail > limit:
            break
        used += step
        shown += 1
    if shown == 0:
        tail_text = more(len(items) - 1) if len(items) > 1 else ""
        room = limit - (units(tail_text) + sep if tail_text else 0)
        first = truncate(items[0], room)
        return separator.join(p for p in (first, tail_text) if p)
    rest = len(items) - shown
    parts = list(items[:shown])
    if rest:
        parts.append(more(rest))
    return separator.join(parts)


# --- Slack's own tokens: only ever around ids that look like ids ------------------------------


def user(user_id: str | None) -> str:
    """A user mention, or the value shown literally when it is not a user id."""
    value = str(user_id or "")
    return f"<@{value}>" if _USER_ID.fullmatch(value) else outside(value, 64)


def usergroup(group_id: str) -> str:
    """A user-group mention, or the value shown literally when it is not a group id."""
    return f"<!subteam^{group_id}>" if _GROUP_ID.fullmatch(group_id) else outside(group_id, 64)


def channel(channel_id: str | None) -> str:
    """A channel mention, or the value shown literally when it is not a channel id."""
    value = str(channel_id or "")
    return f"<#{value}>" if _CHANNEL_ID.fullmatch(value) else outside(value, 64)


def entry(entry_id: str) -> str:
    """An allow-list entry: a user group (S…) or a user."""
    return usergroup(entry_id) if entry_id.startswith("S") else user(entry_id)


def is_channel_id(value: str | None) -> bool:
    """True for a conversation id Slack would accept as `initial_conversation`."""
    return bool(value and _CHANNEL_ID.fullmatch(value))


def link(url: str, label: str) -> str:
    """A link token with an escaped label; the label alone when the URL is not http(s).

    In the URL ``&`` is escaped and ``<``, ``>``, ``|`` are percent-encoded, so Slack reads one
    link with the whole URL (a permalink's query string has ``&``).
    """
    safe_label = outside(label, 200)
    if not _URL.fullmatch(url):
        return safe_label
    safe = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{safe}|{safe_label}>"
