"""Slack bot that cancels ModelsLab training jobs from the channel where their alerts land."""

from __future__ import annotations

from functools import cache
from importlib import metadata

DISTRIBUTION = "cancel-training-bot"


@cache
def version() -> str:
    """The installed package's version (pyproject.toml's, via its metadata): the one source."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
        return "0+unknown"
