"""bench.dispatch: Bolt's own dispatch of a click, measured in-process (no sockets)."""

from __future__ import annotations

from bench.dispatch import measure


async def test_dispatch_is_measured_on_a_click_bolt_accepts() -> None:
    figures = await measure(20)  # measure() fails if Bolt answers anything but 200
    assert figures["bolt_dispatch_cpu_ms"] > figures["signature_check_cpu_ms"] > 0
