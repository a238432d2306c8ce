"""Ids: training id validation (nothing else may reach a URL) and the workspace key."""

from __future__ import annotations

import re
import uuid

from bot.errors import InvalidTrainingId

MAX_ID_LENGTH = 64
_V3_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_v6_id(training_id: str) -> bool:
    """Return True for a v6 trainer id (a canonical UUID)."""
    return _UUID.fullmatch(training_id) is not None


def validate_training_id(raw: str) -> str:
    """Return the id if it is a UUID or ``[A-Za-z0-9_-]{1,64}``, else raise InvalidTrainingId."""
    if not isinstance(raw, str):
        raise InvalidTrainingId("a training id must be text")
    # UUIDs are tested first: they also match the v3 pattern but go to another API.
    if _UUID.fullmatch(raw):
        return str(uuid.UUID(raw))
    if _V3_ID.fullmatch(raw):
        return raw
    if not raw:
        raise InvalidTrainingId("the training id is empty")
    if len(raw) > MAX_ID_LENGTH:
        raise InvalidTrainingId(f"a training id has at most {MAX_ID_LENGTH} characters")
    raise InvalidTrainingId("a training id uses only letters, digits, '-' and '_'")


def workspace_key(enterprise_id: str | None, team_id: str | None) -> str:
    """The id a workspace's data is keyed by: its team, or the org for org-wide installs."""
    return str(team_id or enterprise_id)
