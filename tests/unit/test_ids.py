"""Training id validation: only safe ids may reach a URL."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import InvalidTrainingId
from bot.ids import is_v6_id, validate_training_id

HOSTILE = [
    "",
    "a/b",
    "..",
    "../etc",
    "%2e%2e",
    "a?b",
    "a#b",
    "a b",
    " a",
    "a\n",
    "a\x00",
    "\u202eabc",
    "x" * 65,
    "x" * 5000,
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_ids_are_refused(raw: str) -> None:
    with pytest.raises(InvalidTrainingId):
        validate_training_id(raw)


def test_v3_and_v6_ids_are_accepted() -> None:
    assert validate_training_id("F5jvdzGnYi") == "F5jvdzGnYi"
    uuid = "9B2C3D4E-1111-4222-8333-444455556666"
    assert validate_training_id(uuid) == uuid.lower()
    assert is_v6_id(uuid) and not is_v6_id("F5jvdzGnYi")


@given(st.text(max_size=80))
def test_whatever_is_accepted_is_url_safe(raw: str) -> None:
    try:
        valid = validate_training_id(raw)
    except InvalidTrainingId:
        return
    assert 1 <= len(valid) <= 64
    assert all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in valid)
