"""The suite's own layout: every test file in the folder for what it needs, unit/ kept pure."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests import REPO

LAYERS = ("unit", "integration", "system")


def test_every_test_file_sits_in_a_layer_folder() -> None:
    tests = REPO / "tests"
    stray = sorted(str(p.relative_to(tests)) for p in tests.rglob("test_*.py"))
    assert [p for p in stray if p.split("/")[0] not in LAYERS] == []


def test_a_unit_test_cannot_reach_the_network() -> None:
    with pytest.raises(AssertionError, match="network socket"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    with socket.socket(socket.AF_INET) as sock, pytest.raises(AssertionError):
        sock.bind(("127.0.0.1", 0))


async def test_a_unit_test_cannot_start_a_subprocess() -> None:
    with pytest.raises(AssertionError, match="subprocess"):
        await asyncio.create_subprocess_exec("true")
