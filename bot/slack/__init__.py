"""Everything that knows Slack: the Bolt app, listeners, messages, delivery, clients and identity."""
