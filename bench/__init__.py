"""Benchmark of the bot's ack path and its end-to-end overhead: ``python -m bench`` (see README.md)."""
