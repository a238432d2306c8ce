"""Alembic migrations, run programmatically on a connection the store provides."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

HERE = Path(__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic config pointing at this package (no alembic.ini needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(connection: Connection) -> None:
    """Upgrade the schema to the newest revision on an open connection."""
    command.upgrade(alembic_config(connection), "head")


def current_revision(connection: Connection) -> str | None:
    """Return the revision the database is at (None when empty)."""
    rev: str | None = MigrationContext.configure(connection).get_current_revision()
    return rev


def head_revision() -> str | None:
    """Return the newest revision this code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def knows_revision(revision: str) -> bool:
    """True when `revision` is one of this code's migrations (False for a newer version's)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False
