"""What real Slack accepts (design §5): pure checks of Web API arguments, Block Kit and ack bodies.

No I/O and no state: the fake Slack (``tests/fakes/slack.py``) applies these to every call it
receives, and property tests import them to prove a builder can never produce a payload Slack
refuses. Each problem is one string ``"<what is wrong> [json-pointer:/path]"`` in Slack's own
wording where Slack has one.

Two kinds of problem:

- **Slack refuses it** — a limit, a missing field, a wrong type, a plain_text-only field given
  mrkdwn, a duplicate ``block_id``/``action_id``. ``error_for`` turns these into Slack's exact
  answer (``invalid_blocks``, ``invalid_arguments``, ``msg_too_long``, ``no_text``, …).
- **Slack accepts it but shows something else** — text from outside that was not escaped
  (``<``, ``>``, ``&``), a broadcast mention (``<!channel>``, ``<!here>``, ``<!everyone>``), a
  malformed ``<!date^…>`` token, blocks without a ``text`` fallback. Slack answers ``ok`` and
  the channel sees garbage, a ping, or nothing in the notification; ``error_for`` answers
  ``None`` for these, but they are listed by ``message_problems``/``view_problems`` and the fake
  makes the test fail.

Sources for every number: Slack's Block Kit reference (docs.slack.dev/reference/block-kit: blocks,
block elements, composition objects), its view reference (docs.slack.dev/reference/views), its
method pages (docs.slack.dev/reference/methods/…) and "Formatting text for app surfaces".
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

__all__ = [
    "LIMITS",
    "ack_problems",
    "error_for",
    "message_problems",
    "mrkdwn_problems",
    "options_problems",
    "problems_for",
    "view_problems",
]

# --- Slack's documented limits -------------------------------------------------------------

LIMITS: Mapping[str, int] = {
    # messages (chat.postMessage "Truncating content"; blocks reference "50 blocks per message")
    "message_text": 40_000,
    "message_blocks": 50,
    # views (reference/views: "Max of 100 blocks", title/submit/close 24, metadata 3000, ids 255)
    "view_blocks": 100,
    "modal_title": 24,
    "modal_submit": 24,
    "modal_close": 24,
    "private_metadata": 3_000,
    "callback_id": 255,
    "external_id": 255,
    "view_bytes": 250 * 1024,  # views.open/push/update: view_too_large "greater than 250kb"
    # blocks
    "block_id": 255,
    "text_object": 3_000,
    "section_text": 3_000,
    "section_fields": 10,
    "section_field_text": 2_000,
    "header_text": 150,
    "context_elements": 10,
    "actions_elements": 25,
    "input_label": 2_000,
    "input_hint": 2_000,
    "image_url": 3_000,
    "image_alt_text": 2_000,
    "image_title": 2_000,
    "markdown_text": 12_000,
    # elements
    "action_id": 255,
    "button_text": 75,
    "button_value": 2_000,
    "button_url": 3_000,
    # Slack documents no maximum for visible_to_user_ids; the fake holds the bot to the cap it
    # promises (bot.slack.messages.text.VISIBLE_USERS), past which it must show the button to all.
    "visible_to_user_ids": 50,
    "accessibility_label": 75,
    "placeholder": 150,
    "options": 100,
    "option_groups": 100,
    "option_text": 75,
    "option_value": 150,
    "option_description": 75,
    "option_url": 3_000,
    "option_group_label": 75,
    "overflow_options": 5,
    "checkbox_options": 10,
    "radio_options": 10,
    "plain_text_input_length": 3_000,
    # confirmation dialog
    "confirm_title": 100,
    "confirm_text": 300,
    "confirm_button": 30,
}

MESSAGE_SURFACES = frozenset({"message", "update", "ephemeral", "response_url", "ack"})
VIEW_KINDS = frozenset({"home", "modal"})

# Slack's date tokens (Formatting text for app surfaces; rich-text date element).
DATE_TOKENS = frozenset(
    {
        "day_divider_pretty",
        "date_num",
        "date_slash",
        "date_long",
        "date_long_full",
        "date_long_pretty",
        "date",
        "date_pretty",
        "date_short",
        "date_short_pretty",
        "time",
        "time_secs",
        "ago",
    }
)
BROADCASTS = frozenset({"channel", "here", "everyone"})

_SELECTS = frozenset(
    {
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
    }
)
_MULTI_SELECTS = frozenset(f"multi_{s}" for s in _SELECTS)
_OPTION_LISTS = frozenset(
    {"static_select", "multi_static_select", "external_select", "multi_external_select"}
)
_PICKERS = frozenset({"datepicker", "timepicker", "datetimepicker"})
_TEXT_INPUTS = frozenset(
    {"plain_text_input", "email_text_input", "url_text_input", "number_input", "rich_text_input"}
)
_ACTION_ELEMENTS = (
    frozenset({"button", "checkboxes", "overflow", "radio_buttons", "workflow_button"})
    | _SELECTS
    | _MULTI_SELECTS
    | _PICKERS
    | frozenset({"rich_text_input"})
)
_ACCESSORY_ELEMENTS = (
    frozenset({"button", "checkboxes", "image", "overflow", "radio_buttons", "workflow_button"})
    | _SELECTS
    | _MULTI_SELECTS
    | _PICKERS
)
_INPUT_ELEMENTS = (
    frozenset({"checkboxes", "radio_buttons", "file_input"})
    | _SELECTS
    | _MULTI_SELECTS
    | _PICKERS
    | _TEXT_INPUTS
)
# Block types slack_sdk models (and Slack accepts) but these rules do not walk field by field;
# slack_sdk's own validation still runs on them.
_OPAQUE_BLOCKS = frozenset({"rich_text", "video", "file", "call", "table"})

_TS = re.compile(r"^\d{1,12}\.\d{1,6}$")
_EPOCH = re.compile(r"^-?\d{1,12}$")
_URL = re.compile(r"^(?:https?://[^\s|<>]+|mailto:[^\s|<>]+)$")


# --- problems ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    pointer: str
    message: str
    refused: bool  # Slack answers an error; False: Slack accepts and renders it wrongly

    def __str__(self) -> str:
        return f"{self.message} [json-pointer:{self.pointer}]"


class _Checker:
    """Walks one payload and collects its problems."""

    def __init__(self) -> None:
        self.problems: list[_Problem] = []

    def refuse(self, pointer: str, message: str) -> None:
        self._add(_Problem(pointer, message, refused=True))

    def warn(self, pointer: str, message: str) -> None:
        self._add(_Problem(pointer, message, refused=False))

    def _add(self, problem: _Problem) -> None:
        if problem not in self.problems:  # the same stray token twice in one text is one problem
            self.problems.append(problem)

    def refused_under(self, pointer: str) -> bool:
        return any(
            p.refused and (p.pointer == pointer or p.pointer.startswith(pointer + "/"))
            for p in self.problems
        )

    # --- scalars ---------------------------------------------------------------------------

    def string(
        self,
        value: Any,
        pointer: str,
        limit: int,
        *,
        required: bool = False,
        non_empty: bool = True,
    ) -> str | None:
        if value is None:
            if required:
                self.refuse(pointer, "missing required field")
            return None
        if not isinstance(value, str):
            self.refuse(pointer, f"expected a string, got {type(value).__name__}")
            return None
        text: str = value
        if non_empty and not text:
            self.refuse(pointer, "must be more than 0 characters")
        elif len(text) > limit:
            self.refuse(pointer, f"must be less than {limit + 1} characters")
        return text

    def listing(
        self, value: Any, pointer: str, limit: int, *, required: bool = False, minimum: int = 0
    ) -> list[Any]:
        if value is None:
            if required:
                self.refuse(pointer, "missing required field")
            return []
        if not isinstance(value, list):
            self.refuse(pointer, f"expected an array, got {type(value).__name__}")
            return []
        if len(value) > limit:
            self.refuse(pointer, f"must contain at most {limit} items, has {len(value)}")
        elif len(value) < minimum:
            self.refuse(pointer, f"must contain at least {minimum} item(s)")
        return value

    def mapping(self, value: Any, pointer: str, *, required: bool = True) -> Mapping[str, Any]:
        if value is None:
            if required:
                self.refuse(pointer, "missing required field")
            return {}
        if not isinstance(value, Mapping):
            self.refuse(pointer, f"expected an object, got {type(value).__name__}")
            return {}
        return value

    # --- composition objects ---------------------------------------------------------------

    def text(
        self,
        value: Any,
        pointer: str,
        limit: int,
        *,
        plain_only: bool = False,
        required: bool = True,
    ) -> None:
        obj = self.mapping(value, pointer, required=required)
        if not obj:
            return
        kind = obj.get("type")
        if kind not in ("plain_text", "mrkdwn"):
            self.refuse(f"{pointer}/type", f"unsupported type: {kind!r}")
            return
        if plain_only and kind != "plain_text":
            self.refuse(f"{pointer}/type", "must be plain_text here (this field takes no mrkdwn)")
        if kind == "mrkdwn" and "emoji" in obj:
            self.refuse(f"{pointer}/emoji", "emoji is only allowed on plain_text")
        if kind == "plain_text" and "verbatim" in obj:
            self.refuse(f"{pointer}/verbatim", "verbatim is only allowed on mrkdwn")
        text = self.string(obj.get("text"), f"{pointer}/text", limit, required=True)
        if kind == "mrkdwn" and text:
            self.mrkdwn(text, f"{pointer}/text")

    def mrkdwn(self, text: str, pointer: str) -> None:
        for message in _mrkdwn_messages(text):
            self.warn(pointer, message)

    def confirm(self, value: Any, pointer: str) -> None:
        obj = self.mapping(value, pointer, required=False)
        if not obj:
            return
        self.text(obj.get("title"), f"{pointer}/title", LIMITS["confirm_title"], plain_only=True)
        self.text(obj.get("text"), f"{pointer}/text", LIMITS["confirm_text"])
        for key in ("confirm", "deny"):
            self.text(obj.get(key), f"{pointer}/{key}", LIMITS["confirm_button"], plain_only=True)
        self.style(obj.get("style"), f"{pointer}/style")

    def style(self, value: Any, pointer: str) -> None:
        if value is not None and value not in ("primary", "danger"):
            self.refuse(pointer, f"style must be primary or danger, not {value!r}")

    def option(self, value: Any, pointer: str, *, plain_only: bool, url_ok: bool = False) -> None:
        obj = self.mapping(value, pointer)
        if not obj:
            return
        self.text(obj.get("text"), f"{pointer}/text", LIMITS["option_text"], plain_only=plain_only)
        self.string(obj.get("value"), f"{pointer}/value", LIMITS["option_value"], required=True)
        if "description" in obj:
            self.text(
                obj["description"],
                f"{pointer}/description",
                LIMITS["option_description"],
                plain_only=plain_only,
            )
        if "url" in obj:
            if not url_ok:
                self.refuse(f"{pointer}/url", "url is only allowed on overflow menu options")
            self.string(obj["url"], f"{pointer}/url", LIMITS["option_url"])

    def options(self, obj: Mapping[str, Any], pointer: str, *, required: bool) -> None:
        has_options, has_groups = "options" in obj, "option_groups" in obj
        if has_options and has_groups:
            self.refuse(pointer, "options and option_groups are mutually exclusive")
        if required and not (has_options or has_groups):
            self.refuse(f"{pointer}/options", "missing required field")
        options = self.listing(obj.get("options"), f"{pointer}/options", LIMITS["options"])
        for i, option in enumerate(options):
            self.option(option, f"{pointer}/options/{i}", plain_only=True)
        groups = self.listing(
            obj.get("option_groups"), f"{pointer}/option_groups", LIMITS["option_groups"]
        )
        for g, group in enumerate(groups):
            gptr = f"{pointer}/option_groups/{g}"
            gobj = self.mapping(group, gptr)
            if not gobj:
                continue
            self.text(
                gobj.get("label"), f"{gptr}/label", LIMITS["option_group_label"], plain_only=True
            )
            members = self.listing(
                gobj.get("options"), f"{gptr}/options", LIMITS["options"], required=True
            )
            for i, option in enumerate(members):
                self.option(option, f"{gptr}/options/{i}", plain_only=True)

    # --- elements --------------------------------------------------------------------------

    def element(self, value: Any, pointer: str, allowed: frozenset[str]) -> str | None:
        obj = self.mapping(value, pointer)
        if not obj:
            return None
        kind = obj.get("type")
        if not isinstance(kind, str) or kind not in allowed:
            self.refuse(f"{pointer}/type", f"unsupported element type here: {kind!r}")
            return None
        if kind == "image":
            self.image(obj, pointer, element=True)
            return None
        action_id = self.string(obj.get("action_id"), f"{pointer}/action_id", LIMITS["action_id"])
        if "confirm" in obj:
            self.confirm(obj["confirm"], f"{pointer}/confirm")
        if "placeholder" in obj:
            if kind == "button" or kind in ("checkboxes", "radio_buttons", "overflow"):
                self.refuse(f"{pointer}/placeholder", f"{kind} takes no placeholder")
            self.text(
                obj["placeholder"], f"{pointer}/placeholder", LIMITS["placeholder"], plain_only=True
            )
        if kind == "button":
            self.text(obj.get("text"), f"{pointer}/text", LIMITS["button_text"], plain_only=True)
            self.string(obj.get("value"), f"{pointer}/value", LIMITS["button_value"])
            self.string(obj.get("url"), f"{pointer}/url", LIMITS["button_url"])
            self.style(obj.get("style"), f"{pointer}/style")
            visible = self.listing(
                obj.get("visible_to_user_ids"),
                f"{pointer}/visible_to_user_ids",
                LIMITS["visible_to_user_ids"],
                minimum=1,
            )
            for i, user_id in enumerate(visible):
                if not (isinstance(user_id, str) and re.fullmatch(r"[UW][A-Z0-9]{2,40}", user_id)):
                    self.refuse(f"{pointer}/visible_to_user_ids/{i}", "expected a user id")
            self.string(
                obj.get("accessibility_label"),
                f"{pointer}/accessibility_label",
                LIMITS["accessibility_label"],
            )
        elif kind in _OPTION_LISTS:
            if kind.endswith("static_select"):
                self.options(obj, pointer, required=True)
            elif "options" in obj or "option_groups" in obj:
                self.refuse(
                    f"{pointer}/options", "external selects take their options from the options URL"
                )
            if "initial_option" in obj:
                self.option(obj["initial_option"], f"{pointer}/initial_option", plain_only=True)
            for i, option in enumerate(
                self.listing(obj.get("initial_options"), f"{pointer}/initial_options", 100)
            ):
                self.option(option, f"{pointer}/initial_options/{i}", plain_only=True)
        elif kind == "overflow":
            options = self.listing(
                obj.get("options"),
                f"{pointer}/options",
                LIMITS["overflow_options"],
                required=True,
                minimum=1,
            )
            for i, option in enumerate(options):
                self.option(option, f"{pointer}/options/{i}", plain_only=True, url_ok=True)
        elif kind in ("checkboxes", "radio_buttons"):
            limit = LIMITS["checkbox_options" if kind == "checkboxes" else "radio_options"]
            options = self.listing(
                obj.get("options"), f"{pointer}/options", limit, required=True, minimum=1
            )
            for i, option in enumerate(options):
                self.option(option, f"{pointer}/options/{i}", plain_only=False)
        elif kind == "plain_text_input":
            for key in ("min_length", "max_length"):
                number = obj.get(key)
                if number is not None and (
                    not isinstance(number, int)
                    or isinstance(number, bool)
                    or not 0 <= number <= LIMITS["plain_text_input_length"]
                ):
                    self.refuse(
                        f"{pointer}/{key}",
                        f"must be an integer from 0 to {LIMITS['plain_text_input_length']}",
                    )
        if kind in _MULTI_SELECTS:
            most = obj.get("max_selected_items")
            if most is not None and (
                not isinstance(most, int) or isinstance(most, bool) or most < 1
            ):
                self.refuse(f"{pointer}/max_selected_items", "must be an integer of at least 1")
        return action_id

    def image(self, obj: Mapping[str, Any], pointer: str, *, element: bool) -> None:
        has_url, has_file = "image_url" in obj, "slack_file" in obj
        if has_url == has_file:
            self.refuse(pointer, "exactly one of image_url or slack_file is required")
        self.string(obj.get("image_url"), f"{pointer}/image_url", LIMITS["image_url"])
        self.string(
            obj.get("alt_text"), f"{pointer}/alt_text", LIMITS["image_alt_text"], required=True
        )
        if not element and "title" in obj:
            self.text(obj["title"], f"{pointer}/title", LIMITS["image_title"], plain_only=True)

    # --- blocks ----------------------------------------------------------------------------

    def blocks(self, value: Any, pointer: str, limit: int) -> None:
        blocks = self.listing(value, pointer, limit)
        seen: dict[str, int] = {}
        for i, block in enumerate(blocks):
            bptr = f"{pointer}/{i}"
            obj = self.mapping(block, bptr)
            if not obj:
                continue
            block_id = obj.get("block_id")
            if isinstance(block_id, str):
                if block_id in seen:
                    self.refuse(
                        f"{bptr}/block_id",
                        f"block_id {block_id!r} is not unique (also used by block {seen[block_id]})",
                    )
                seen.setdefault(block_id, i)
            self.block(obj, bptr)
            self.with_models(obj, bptr)

    def block(self, obj: Mapping[str, Any], pointer: str) -> None:
        kind = obj.get("type")
        self.string(obj.get("block_id"), f"{pointer}/block_id", LIMITS["block_id"])
        if kind == "section":
            if "text" not in obj and "fields" not in obj:
                self.refuse(pointer, "section needs text or fields")
            if "text" in obj:
                self.text(obj["text"], f"{pointer}/text", LIMITS["section_text"])
            fields = self.listing(obj.get("fields"), f"{pointer}/fields", LIMITS["section_fields"])
            for i, field in enumerate(fields):
                self.text(field, f"{pointer}/fields/{i}", LIMITS["section_field_text"])
            if "accessory" in obj:
                self.element(obj["accessory"], f"{pointer}/accessory", _ACCESSORY_ELEMENTS)
        elif kind == "header":
            self.text(obj.get("text"), f"{pointer}/text", LIMITS["header_text"], plain_only=True)
        elif kind == "divider":
            pass
        elif kind == "context":
            elements = self.listing(
                obj.get("elements"),
                f"{pointer}/elements",
                LIMITS["context_elements"],
                required=True,
                minimum=1,
            )
            for i, element in enumerate(elements):
                eptr = f"{pointer}/elements/{i}"
                eobj = self.mapping(element, eptr)
                if eobj.get("type") == "image":
                    self.image(eobj, eptr, element=True)
                elif eobj:
                    self.text(eobj, eptr, LIMITS["text_object"])
        elif kind == "actions":
            elements = self.listing(
                obj.get("elements"),
                f"{pointer}/elements",
                LIMITS["actions_elements"],
                required=True,
                minimum=1,
            )
            seen: dict[str, int] = {}
            for i, element in enumerate(elements):
                action_id = self.element(element, f"{pointer}/elements/{i}", _ACTION_ELEMENTS)
                if action_id is None:
                    continue
                if action_id in seen:
                    self.refuse(
                        f"{pointer}/elements/{i}/action_id",
                        f"action_id {action_id!r} is not unique in this block "
                        f"(also used by element {seen[action_id]})",
                    )
                seen.setdefault(action_id, i)
        elif kind == "input":
            self.text(obj.get("label"), f"{pointer}/label", LIMITS["input_label"], plain_only=True)
            if "hint" in obj:
                self.text(obj["hint"], f"{pointer}/hint", LIMITS["input_hint"], plain_only=True)
            self.element(obj.get("element"), f"{pointer}/element", _INPUT_ELEMENTS)
        elif kind == "image":
            self.image(obj, pointer, element=False)
        elif kind == "markdown":
            self.string(obj.get("text"), f"{pointer}/text", LIMITS["markdown_text"], required=True)
        elif kind in _OPAQUE_BLOCKS:
            pass
        else:
            self.refuse(f"{pointer}/type", f"unsupported block type: {kind!r}")

    def with_models(self, obj: Mapping[str, Any], pointer: str) -> None:
        """Parse and serialise with slack_sdk (which enforces limits of its own) and report any
        field it does not know or had to convert: Slack's schema refuses those too."""
        if self.refused_under(pointer):
            return  # already refused field by field; slack_sdk would only repeat it
        with _quiet():
            try:
                model = Block.parse(dict(obj))
                round_trip = model.to_dict() if model is not None else None
            except SlackObjectFormationError as exc:
                self.refuse(pointer, f"slack_sdk refuses it: {exc}")
                return
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                self.refuse(pointer, f"not a Block Kit block: {exc}")
                return
        if round_trip is None:
            self.refuse(f"{pointer}/type", f"unsupported block type: {obj.get('type')!r}")
            return
        for where, message in _differences(obj, round_trip, pointer):
            self.refuse(where, message)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """slack_sdk logs or warns about every unknown key; the differences are reported instead."""
    loggers = [logging.getLogger(n) for n in ("slack_sdk.models", "slack_sdk.models.blocks")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _differences(sent: Any, parsed: Any, pointer: str) -> Iterator[tuple[str, str]]:
    """Where the sent JSON and slack_sdk's serialisation of it disagree."""
    if isinstance(sent, Mapping):
        if not isinstance(parsed, Mapping):
            yield pointer, "expected a string, got an object"
            return
        for key, value in sent.items():
            where = f"{pointer}/{key}"
            if value is None:
                yield where, "must not be null"
            elif key not in parsed:
                # slack_sdk drops empty strings and arrays, known or not: only the rules above
                # can judge those.
                if not (isinstance(value, (str, list, dict)) and len(value) == 0):
                    yield where, f"unsupported property {key!r}"
            else:
                yield from _differences(value, parsed[key], where)
    elif isinstance(sent, list):
        if not isinstance(parsed, list) or len(parsed) != len(sent):
            yield pointer, "not a valid array here"
            return
        for i, (a, b) in enumerate(zip(sent, parsed, strict=True)):
            yield from _differences(a, b, f"{pointer}/{i}")
    elif isinstance(parsed, Mapping):
        yield pointer, f"expected an object, got {type(sent).__name__}"


# --- mrkdwn --------------------------------------------------------------------------------

_TOKEN = re.compile(r"<([^<>]*)>")
_BAD_AMP = re.compile(r"&(?!amp;|lt;|gt;)")
_DATE = re.compile(r"^!date\^([^^|]*)\^([^^|]*)(?:\^([^|]*))?\|(.*)$", re.DOTALL)
_DATE_PART = re.compile(r"\{([^{}]*)\}")


def _token_messages(body: str) -> list[str]:
    """What is wrong with one ``<…>`` control sequence (empty: it is a well-formed token)."""
    shown = f"<{body}>" if len(body) <= 60 else f"<{body[:57]}…>"
    label: str | None = None
    target, bar, rest = body.partition("|")
    if bar:
        label = rest
    if body.startswith("@"):
        if re.fullmatch(r"@[UW][A-Z0-9]{2,}", target):
            return []
        return [f"{shown} is not a user mention (<@U…>)"]
    if body.startswith("#"):
        if re.fullmatch(r"#[CGD][A-Z0-9]{2,}", target):
            return []
        return [f"{shown} is not a channel mention (<#C…>)"]
    if body.startswith("!"):
        word = target[1:].split("^", 1)[0]
        if word in BROADCASTS:
            return [f"{shown} is a broadcast mention: it pings everyone (the bot must never ping)"]
        if word == "subteam":
            if re.fullmatch(r"!subteam\^S[A-Z0-9]{2,}", target):
                return []
            return [f"{shown} is not a user-group mention (<!subteam^S…>)"]
        if word == "date":
            return _date_messages(body, shown)
        return [f"{shown} is not a Slack token"]
    if _URL.match(target):
        if label is not None and not label:
            return [f"{shown} has an empty link label"]
        return []
    return [
        f"unescaped '<' … '>': {shown} is not a Slack token "
        "(text from outside must be escaped as &lt; &gt;)"
    ]


def _date_messages(body: str, shown: str) -> list[str]:
    match = _DATE.match(body)
    if match is None:
        return [f"{shown} is not <!date^EPOCH^FORMAT|fallback> (a fallback is required)"]
    epoch, fmt, link, fallback = match.groups()
    out: list[str] = []
    if not _EPOCH.match(epoch):
        out.append(f"{shown}: {epoch!r} is not a Unix time in seconds")
    names = _DATE_PART.findall(fmt)
    if not names:
        out.append(f"{shown}: the format has no {{date…}}/{{time}} token")
    unknown = sorted({n for n in names if n not in DATE_TOKENS})
    if unknown:
        out.append(f"{shown}: unknown date token(s) {', '.join('{' + n + '}' for n in unknown)}")
    if "{" in _DATE_PART.sub("", fmt) or "}" in _DATE_PART.sub("", fmt):
        out.append(f"{shown}: unbalanced braces in the format")
    if link is not None and not _URL.match(link):
        out.append(f"{shown}: the optional link {link!r} is not a URL")
    if not fallback.strip():
        out.append(f"{shown}: the fallback text is empty")
    return out


def _mrkdwn_messages(text: str) -> list[str]:
    out: list[str] = []
    for match in _TOKEN.finditer(text):
        out.extend(_token_messages(match.group(1)))
    # What is left once the tokens are gone must hold no control character. A '>' opening a
    # line is mrkdwn's block quote, which the bot may write on purpose.
    rest = _TOKEN.sub(lambda m: " " * len(m.group(0)), text)
    for i, char in enumerate(rest):
        if char == "<":
            out.append(f"unescaped '<' at {i} (text from outside must be escaped as &lt;)")
        elif char == ">" and not _opens_quote(rest, i):
            out.append(f"unescaped '>' at {i} (text from outside must be escaped as &gt;)")
    masked = _TOKEN.sub(_mask_url, text)
    for match in _BAD_AMP.finditer(masked):
        nearby = text[max(0, match.start() - 10) : match.start() + 10]
        out.append(
            f"unescaped '&' at {match.start()} near {nearby!r} "
            "(only &amp; &lt; &gt; are entities; escape it as &amp;)"
        )
    return out


def _opens_quote(text: str, i: int) -> bool:
    return (i == 0 or text[i - 1] == "\n") and text[i + 1 : i + 2] in ("", " ", "\n")


def _mask_url(match: re.Match[str]) -> str:
    """A link's URL may carry raw '&' (query strings); its label may not."""
    body = match.group(1)
    target, bar, label = body.partition("|")
    if _URL.match(target):
        return "<" + "x" * len(target) + bar + label + ">"
    return match.group(0)


def mrkdwn_problems(text: str) -> list[str]:
    """What Slack would misread in one mrkdwn string: stray ``<``/``>``/``&``, broadcast
    mentions, malformed mentions, links and ``<!date^…>`` tokens (empty: it renders as meant)."""
    return _mrkdwn_messages(text)


# --- messages ------------------------------------------------------------------------------


def _message(args: Mapping[str, Any], surface: str) -> _Checker:
    if surface not in MESSAGE_SURFACES:
        raise ValueError(f"surface must be one of {sorted(MESSAGE_SURFACES)}, not {surface!r}")
    check = _Checker()
    text = args.get("text")
    blocks = args.get("blocks")
    if text is not None:
        if not isinstance(text, str):
            check.refuse("/text", f"expected a string, got {type(text).__name__}")
        else:
            if len(text) > LIMITS["message_text"]:
                check.refuse(
                    "/text", f"msg_too_long: more than {LIMITS['message_text']} characters"
                )
            check.mrkdwn(text, "/text")
    if blocks is not None:
        if isinstance(blocks, str):
            check.refuse("/blocks", "invalid_blocks_format: blocks is not a JSON array")
        else:
            check.blocks(blocks, "/blocks", LIMITS["message_blocks"])
    if (
        surface in ("message", "update", "ephemeral")
        and blocks
        and not (isinstance(text, str) and text.strip())
    ):
        check.warn(
            "/text",
            "blocks without a top-level text fallback (notifications and screen readers show "
            "only text)",
        )
    if surface in ("response_url", "ack"):
        kind = args.get("response_type")
        if kind is not None and kind not in ("ephemeral", "in_channel"):
            check.refuse("/response_type", f"must be ephemeral or in_channel, not {kind!r}")
        for flag in ("replace_original", "delete_original"):
            if flag in args and not isinstance(args[flag], bool):
                check.refuse(f"/{flag}", "expected a boolean")
    return check


def message_problems(args: Mapping[str, Any], *, surface: str = "message") -> list[str]:
    """Everything Slack refuses or misrenders in a message: ``args`` of chat.postMessage
    (``surface="message"``), chat.update (``"update"``), chat.postEphemeral (``"ephemeral"``), a
    response_url post (``"response_url"``) or a slash-command ack body (``"ack"``)."""
    return [str(p) for p in _message(args, surface).problems]


# --- views ---------------------------------------------------------------------------------


def _view(view: Any, kind: str, pointer: str = "") -> _Checker:
    if kind not in VIEW_KINDS:
        raise ValueError(f"kind must be one of {sorted(VIEW_KINDS)}, not {kind!r}")
    check = _Checker()
    obj = check.mapping(view, pointer or "/")
    if not obj:
        return check
    if obj.get("type") != kind:
        check.refuse(f"{pointer}/type", f"must be {kind!r}, not {obj.get('type')!r}")
    blocks = obj.get("blocks")
    if blocks is None:
        check.refuse(f"{pointer}/blocks", "missing required field")
    else:
        check.blocks(blocks, f"{pointer}/blocks", LIMITS["view_blocks"])
    check.string(
        obj.get("private_metadata"),
        f"{pointer}/private_metadata",
        LIMITS["private_metadata"],
        non_empty=False,
    )
    check.string(
        obj.get("callback_id"), f"{pointer}/callback_id", LIMITS["callback_id"], non_empty=False
    )
    check.string(obj.get("external_id"), f"{pointer}/external_id", LIMITS["external_id"])
    if kind == "modal":
        check.text(obj.get("title"), f"{pointer}/title", LIMITS["modal_title"], plain_only=True)
        for key in ("submit", "close"):
            if key in obj:
                check.text(obj[key], f"{pointer}/{key}", LIMITS[f"modal_{key}"], plain_only=True)
        has_input = isinstance(blocks, list) and any(
            isinstance(b, Mapping) and b.get("type") == "input" for b in blocks
        )
        if has_input and "submit" not in obj:
            check.refuse(f"{pointer}/submit", "a modal with input blocks needs submit")
        for flag in ("clear_on_close", "notify_on_close"):
            if flag in obj and not isinstance(obj[flag], bool):
                check.refuse(f"{pointer}/{flag}", "expected a boolean")
    else:
        for key in ("title", "submit", "close"):
            if key in obj:
                check.refuse(f"{pointer}/{key}", f"a home view has no {key}")
    if not any(p.refused for p in check.problems):
        top = {k: v for k, v in obj.items() if k != "blocks"}
        with _quiet():
            try:
                # One placeholder block: the view's own blocks were checked one by one above.
                round_trip = View(**top, blocks=[{"type": "divider"}]).to_dict()
            except SlackObjectFormationError as exc:
                check.refuse(pointer or "/", f"slack_sdk refuses it: {exc}")
                round_trip = None
            except (TypeError, ValueError, AttributeError, KeyError) as exc:
                check.refuse(pointer or "/", f"not a view: {exc}")
                round_trip = None
        if round_trip is not None:
            for where, message in _differences(top, round_trip, pointer):
                check.refuse(where, message)
    return check


def view_problems(view: Mapping[str, Any], *, kind: str) -> list[str]:
    """Everything Slack refuses or misrenders in a ``home`` or ``modal`` view."""
    return [str(p) for p in _view(view, kind).problems]


# --- other answers Slack renders -----------------------------------------------------------


def options_problems(body: Mapping[str, Any]) -> list[str]:
    """What is wrong with an options-load (``block_suggestion``) answer."""
    check = _Checker()
    obj = check.mapping(body, "/")
    if obj:
        check.options(obj, "", required=True)
    return [str(p) for p in check.problems]


def ack_problems(request: Mapping[str, Any], body: Any) -> list[str]:
    """What Slack refuses or misrenders in the app's answer ``body`` (parsed JSON, a string, or
    ``None`` for an empty 200) to the request ``request`` (the parsed payload Slack sent: a slash
    command's fields, an interactivity payload or an event)."""
    if body in (None, "", {}):
        return []
    if "command" in request:
        answer = {"text": body} if isinstance(body, str) else body
        if not isinstance(answer, Mapping):
            return ["a slash command's answer must be a JSON object or text [json-pointer:/]"]
        problems = message_problems(answer, surface="ack")
        empty = not any(answer.get(k) for k in ("text", "blocks", "attachments"))
        if empty and not (answer.get("response_type") or answer.get("delete_original")):
            problems.append("no_text: an answer with neither text nor blocks [json-pointer:/]")
        return problems
    kind = request.get("type")
    if kind == "block_suggestion":
        if not isinstance(body, Mapping):
            return ["an options answer must be a JSON object [json-pointer:/]"]
        return options_problems(body)
    if kind == "view_submission":
        return _submission_answer(body)
    return []  # block_actions, view_closed and events: Slack ignores an answer's body


def _submission_answer(body: Any) -> list[str]:
    check = _Checker()
    obj = check.mapping(body, "/")
    action = obj.get("response_action")
    if action == "errors":
        errors = check.mapping(obj.get("errors"), "/errors")
        for block_id, message in errors.items():
            check.string(message, f"/errors/{block_id}", LIMITS["text_object"])
    elif action in ("update", "push"):
        problems = _view(obj.get("view"), "modal", "/view").problems
        check.problems.extend(problems)
    elif action != "clear":
        check.refuse("/response_action", f"unknown response_action {action!r}")
    return [str(p) for p in check.problems]


# --- Web API arguments ---------------------------------------------------------------------


def _is_bool(value: Any) -> bool:
    return value in (True, False, 1, 0, "true", "false", "1", "0", "True", "False")


def _is_int(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and re.fullmatch(r"\d+", value) is not None


def _is_ts(value: Any) -> bool:
    return isinstance(value, str) and _TS.match(value) is not None


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


_Type = Callable[[Any], bool]
_TYPES: Mapping[str, tuple[_Type, str]] = {
    "string": (_is_str, "a non-empty string"),
    "bool": (_is_bool, "a boolean"),
    "int": (_is_int, "an integer"),
    "ts": (_is_ts, "a message timestamp such as 1764201600.000100"),
    "oldest": (lambda v: _is_ts(v) or _is_int(v), "a timestamp"),
}


@dataclass(frozen=True)
class _Method:
    required: Mapping[str, str]
    optional: Mapping[str, str]
    missing: Mapping[str, str]  # argument -> the error Slack answers when it is missing


_MESSAGE_OPTIONAL = {
    "thread_ts": "ts",
    "mrkdwn": "bool",
    "unfurl_links": "bool",
    "unfurl_media": "bool",
    "reply_broadcast": "bool",
    "link_names": "bool",
    "parse": "string",
}
_HISTORY_OPTIONAL = {
    "cursor": "string",
    "inclusive": "bool",
    "latest": "oldest",
    "oldest": "oldest",
    "limit": "int",
    "include_all_metadata": "bool",
}
METHODS: Mapping[str, _Method] = {
    "chat.postMessage": _Method(
        {"channel": "string"}, _MESSAGE_OPTIONAL, {"channel": "channel_not_found"}
    ),
    "chat.update": _Method(
        {"channel": "string", "ts": "ts"},
        {"reply_broadcast": "bool", "link_names": "bool", "parse": "string"},
        {"channel": "channel_not_found", "ts": "message_not_found"},
    ),
    "chat.postEphemeral": _Method(
        {"channel": "string", "user": "string"},
        {k: v for k, v in _MESSAGE_OPTIONAL.items() if k != "reply_broadcast"},
        {"channel": "channel_not_found", "user": "user_not_found"},
    ),
    "chat.getPermalink": _Method(
        {"channel": "string", "message_ts": "ts"},
        {},
        {"channel": "channel_not_found", "message_ts": "message_not_found"},
    ),
    "conversations.history": _Method(
        {"channel": "string"}, _HISTORY_OPTIONAL, {"channel": "channel_not_found"}
    ),
    "conversations.replies": _Method(
        {"channel": "string", "ts": "ts"},
        _HISTORY_OPTIONAL,
        {"channel": "channel_not_found", "ts": "thread_not_found"},
    ),
    "views.publish": _Method({"user_id": "string"}, {"hash": "string"}, {}),
    "views.open": _Method({}, {"trigger_id": "string", "interactivity_pointer": "string"}, {}),
    "views.push": _Method({}, {"trigger_id": "string", "interactivity_pointer": "string"}, {}),
    "views.update": _Method(
        {}, {"view_id": "string", "external_id": "string", "hash": "string"}, {}
    ),
    "usergroups.list": _Method(
        {},
        {
            "include_count": "bool",
            "include_disabled": "bool",
            "include_users": "bool",
            "team_id": "string",
        },
        {},
    ),
    "usergroups.users.list": _Method(
        {"usergroup": "string"},
        {"include_disabled": "bool", "team_id": "string"},
        {"usergroup": "no_such_subteam"},
    ),
    "users.info": _Method(
        {"user": "string"}, {"include_locale": "bool"}, {"user": "user_not_found"}
    ),
}
_MESSAGE_METHODS = {
    "chat.postMessage": "message",
    "chat.update": "update",
    "chat.postEphemeral": "ephemeral",
}
_VIEW_METHODS = {
    "views.publish": "home",
    "views.open": "modal",
    "views.push": "modal",
    "views.update": "modal",
}


def _invalid_arguments(messages: Sequence[str]) -> dict[str, Any]:
    return {
        "ok": False,
        "error": "invalid_arguments",
        "response_metadata": {"messages": [f"[ERROR] {m}" for m in messages]},
    }


def _invalid_blocks(problems: Sequence[_Problem]) -> dict[str, Any]:
    errors = [str(p) for p in problems]
    return {
        "ok": False,
        "error": "invalid_blocks",
        "errors": errors,
        "response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]},
    }


def error_for(method: str, args: Mapping[str, Any]) -> dict[str, Any] | None:
    """Slack's answer to ``method`` called with ``args`` when Slack refuses them (``None``: Slack
    accepts them — which does not mean they render as meant, see ``message_problems``).

    Covers what the arguments alone decide: required parameters and their types, Block Kit,
    views, limits. Tokens, channels, messages and triggers that exist or not are the caller's.
    """
    spec = METHODS.get(method)
    if spec is not None:
        messages: list[str] = []
        for name, kind in spec.required.items():
            value = args.get(name)
            if value in (None, ""):
                if name in spec.missing:
                    return {"ok": False, "error": spec.missing[name]}
                messages.append(f"missing required field: {name}")
            elif not _TYPES[kind][0](value):
                messages.append(f"{name} must be {_TYPES[kind][1]}, not {value!r}")
        for name, kind in spec.optional.items():
            value = args.get(name)
            if value not in (None, "") and not _TYPES[kind][0](value):
                messages.append(f"{name} must be {_TYPES[kind][1]}, not {value!r}")
        if messages:
            return _invalid_arguments(messages)
    if method in _MESSAGE_METHODS:
        return _message_error(args, _MESSAGE_METHODS[method])
    if method in _VIEW_METHODS:
        return _view_error(method, args)
    if method == "response_url":
        return _message_error(args, "response_url")
    return None


def _message_error(args: Mapping[str, Any], surface: str) -> dict[str, Any] | None:
    empty = not any(args.get(k) for k in ("text", "blocks", "attachments"))
    if empty and not (surface == "response_url" and args.get("delete_original")):
        return {"ok": False, "error": "no_text"}
    metadata = args.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, Mapping)
        and _is_str(metadata.get("event_type"))
        and isinstance(metadata.get("event_payload"), Mapping)
    ):
        return {"ok": False, "error": "invalid_metadata_format"}
    refused = [p for p in _message(args, surface).problems if p.refused]
    if not refused:
        return None
    if any(p.pointer == "/text" and p.message.startswith("msg_too_long") for p in refused):
        return {"ok": False, "error": "msg_too_long"}
    if any(p.message.startswith("invalid_blocks_format") for p in refused):
        return {"ok": False, "error": "invalid_blocks_format"}
    in_blocks = [p for p in refused if p.pointer.startswith("/blocks")]
    if in_blocks:
        return _invalid_blocks(in_blocks)
    return _invalid_arguments([str(p) for p in refused])


def _view_error(method: str, args: Mapping[str, Any]) -> dict[str, Any] | None:
    if method in ("views.open", "views.push") and not (
        args.get("trigger_id") or args.get("interactivity_pointer")
    ):
        return {"ok": False, "error": "invalid_trigger_id"}
    if method == "views.update" and not (args.get("view_id") or args.get("external_id")):
        return _invalid_arguments(["one of view_id or external_id is required"])
    view = args.get("view")
    if view is None:
        return _invalid_arguments(["missing required field: view"])
    if isinstance(view, str):
        return _invalid_arguments(["view must be a JSON object [json-pointer:/view]"])
    if len(json.dumps(view, ensure_ascii=False).encode()) > LIMITS["view_bytes"]:
        return {"ok": False, "error": "view_too_large"}
    refused = [p for p in _view(view, _VIEW_METHODS[method], "/view").problems if p.refused]
    if refused:
        return _invalid_arguments([str(p) for p in refused])
    return None


def problems_for(method: str, args: Mapping[str, Any]) -> list[str]:
    """Every problem (refused or misrendered) in the payload of one call of ``method``."""
    if method in _MESSAGE_METHODS:
        return message_problems(args, surface=_MESSAGE_METHODS[method])
    if method == "response_url":
        return message_problems(args, surface="response_url")
    if method in _VIEW_METHODS:
        view = args.get("view")
        if isinstance(view, Mapping):
            return [str(p) for p in _view(view, _VIEW_METHODS[method], "/view").problems]
    return []
