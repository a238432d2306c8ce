"""Everything that knows Slack: the Bolt app, listeners, messages, delivery, clients, user groups,
identity, and the one classification of Slack failures (errors.py)."""
