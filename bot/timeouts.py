"""``asyncio.timeout`` where Python has it (3.11+), else its backport (async-timeout).

``asyncio.wait_for`` on 3.11 runs its awaitable as a new task: a cost on every request for what
is only a deadline.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from asyncio import timeout
else:  # pragma: no cover - Python 3.10
    from async_timeout import timeout  # type: ignore[import-not-found,no-redef,unused-ignore]

__all__ = ["timeout"]
