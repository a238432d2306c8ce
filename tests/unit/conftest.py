"""unit/ stays pure: a test here that asks for a server, a database or a subprocess fails."""

from __future__ import annotations

import socket
import subprocess
from typing import Any

import pytest

# conftest.py's fixtures that start a fake server, a database or the bot.
NOT_UNIT = frozenset(
    {"store", "database_url", "pg_url", "pg_database", "sqlite_url", "slack", "modelslab", "bot"}
)
INET = (socket.AF_INET, socket.AF_INET6)


@pytest.fixture(autouse=True)
def _pure(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse the fixtures, network sockets and subprocesses that make a test an integration one."""
    needs = sorted(NOT_UNIT & set(request.fixturenames))
    if needs:
        pytest.fail(f"a unit test uses {needs}: it belongs in tests/integration/")

    def guarded(name: str) -> Any:
        real = getattr(socket.socket, name)

        def check(sock: socket.socket, *args: Any) -> Any:
            if sock.family in INET:
                raise AssertionError("a unit test opened a network socket: tests/integration/")
            return real(sock, *args)

        return check

    for name in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, guarded(name))

    def no_subprocess(*_: Any, **__: Any) -> Any:
        raise AssertionError("a unit test started a subprocess: it belongs in tests/system/")

    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
