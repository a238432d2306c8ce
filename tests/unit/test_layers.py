"""The import rules of design §2: each outside library stays in the layer that owns it.

SQLAlchemy (and Alembic) only in ``bot/store/``; httpx only in ``bot/modelslab/``;
slack_sdk/slack_bolt only in ``bot/slack/``, ``bot/web/``, ``bot/cli/`` and ``bot/runtime.py``.
Modules that predate the layout and still break a rule are listed in ``NOT_MOVED_YET``; the list
must match the code exactly, so it can only shrink as modules move into their rooms.
"""

from __future__ import annotations

import ast

import pytest

from tests import REPO

BOT = REPO / "bot"

# Which top-level packages each layer may import, by path prefix under bot/.
OWNERS: dict[str, tuple[str, ...]] = {
    "sqlalchemy": ("store/",),
    "alembic": ("store/",),
    "httpx": ("modelslab/",),
    "slack_sdk": ("slack/", "web/", "cli/", "runtime.py"),
    "slack_bolt": ("slack/", "web/", "cli/", "runtime.py"),
}

# Modules not yet moved into the room design §2 gives them (issue 13), with what they import.
NOT_MOVED_YET: dict[str, frozenset[str]] = {}


def imported_packages(source: str) -> set[str]:
    """The top-level packages a module imports (absolute imports only)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def violations(relative: str, source: str) -> frozenset[str]:
    """The owned packages a module at `relative` (under bot/) imports without owning them."""
    return frozenset(
        package
        for package in imported_packages(source) & OWNERS.keys()
        if not relative.startswith(OWNERS[package])
    )


def test_the_checker_catches_a_crossing() -> None:
    assert violations("service/access.py", "from slack_sdk.errors import SlackApiError") == {
        "slack_sdk"
    }
    assert violations("slack/app.py", "import slack_bolt, httpx") == {"httpx"}
    assert violations("store/engine.py", "import sqlalchemy as sa") == frozenset()
    assert violations("cli/check.py", "import sqlalchemy.exc") == {"sqlalchemy"}


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(BOT).as_posix() for p in BOT.rglob("*.py")), ids=str
)
def test_imports_stay_in_their_layer(path: str) -> None:
    found = violations(path, (BOT / path).read_text())
    assert found == NOT_MOVED_YET.get(path, frozenset()), (
        f"bot/{path} imports {sorted(found)}; design §2 keeps "
        + ", ".join(f"{p} in {' '.join(OWNERS[p])}" for p in sorted(found))
        if found
        else f"bot/{path} no longer breaks a rule: remove it from NOT_MOVED_YET"
    )


def test_every_module_listed_as_not_moved_yet_exists() -> None:
    # A listed path that no longer exists would never be checked: the list must stay exact.
    assert [path for path in NOT_MOVED_YET if not (BOT / path).exists()] == []
