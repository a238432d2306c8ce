"""Slack bot that cancels ModelsLab training jobs."""

__version__ = "0.1.0"
