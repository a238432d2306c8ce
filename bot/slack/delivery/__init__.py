"""Getting messages to Slack: the notification renderer, the report outbox's reporter, the notifier,
and the custody of response_urls."""
