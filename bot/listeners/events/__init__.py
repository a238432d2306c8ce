"""Events API listeners."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp


def register(app: AsyncApp) -> None:
    """Register event listeners (none are needed in single-workspace mode yet)."""
