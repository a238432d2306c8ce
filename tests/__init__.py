"""The test suite, by what a test needs (design §8).

unit/: pure code, no sockets, no subprocesses, at most an in-memory database.
integration/: real loopback servers (the fakes in fakes/), real databases, the in-process bot
(harness.py). system/: `python -m bot …` and other subprocesses (processes.py).
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
"""The checkout: what tests read (README, manifests, Dockerfile) and what subprocesses import."""
