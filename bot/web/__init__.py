"""Our aiohttp application: the verified /slack/events chain, webhooks, /notify and probes."""

from bot.web.app import MAX_BODY, BadRequest, create_web_app, parse_slack_body, to_aiohttp
from bot.web.probes import OnlineProbe
from bot.web.webhooks import TrainingRoutes

__all__ = [
    "MAX_BODY",
    "BadRequest",
    "OnlineProbe",
    "TrainingRoutes",
    "create_web_app",
    "parse_slack_body",
    "to_aiohttp",
]
