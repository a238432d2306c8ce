"""The bot's exceptions.

::

    BotError
    ├── ConfigError            settings missing or malformed (lists every problem)
    ├── InvalidTrainingId      an id that must never reach a URL
    ├── MissingKey             no ModelsLab key for the workspace
    ├── InvalidKey             ModelsLab refused a key being saved
    ├── InvalidSetting         a workspace setting out of its range (undo window, approval time)
    ├── SecretStorageDisabled  a secret would be written without BOT_ENCRYPTION_KEY
    ├── StoreUnavailable       the database cannot be reached
    ├── GroupLookupFailed      a user group's members could not be read (the user is refused)
    ├── SlackError             a Slack Web API call failed: transient (retry later) or permanent
    ├── SlackUnreachable       Slack could not be asked who a token belongs to
    └── ModelsLabError         a ModelsLab answer that is not an outcome
        └── ModelsLabUnavailable   transport failure, 5xx, non-JSON, missing route

Definitive ModelsLab answers (accepted, refused, not found, bad key, rate limited) are not
exceptions: the client returns them as a :class:`bot.modelslab.CancelOutcome`.
"""

from __future__ import annotations


class BotError(Exception):
    """Base class for every error the bot raises on purpose."""


class ConfigError(BotError):
    """One or more settings are missing or malformed (with the mode they were read for, and any
    warnings worth saying along with them)."""

    def __init__(
        self, problems: list[str], *, warnings: list[str] | None = None, context: str | None = None
    ) -> None:
        self.problems = list(problems)
        self.warnings = list(warnings or ())
        self.context = context
        super().__init__("\n".join(self.problems))


class InvalidTrainingId(BotError, ValueError):
    """A training id that is not a UUID or ``[A-Za-z0-9_-]{1,64}``."""


class MissingKey(BotError):
    """The workspace has no ModelsLab key."""


class InvalidKey(BotError):
    """ModelsLab refused a key that was about to be stored."""


class InvalidSetting(BotError, ValueError):
    """A workspace setting outside what the bot accepts."""


class SecretStorageDisabled(BotError):
    """Storing a secret was refused because BOT_ENCRYPTION_KEY is not set."""


class StoreUnavailable(BotError):
    """The database could not be reached."""


class SlackUnreachable(BotError):
    """Slack could not be reached to identify the bot (the transport failed, not Slack's answer)."""

    def __init__(self, cause: BaseException, purpose: str = "") -> None:
        self.cause_name = type(cause).__name__
        purpose = f" {purpose}" if purpose else ""
        super().__init__(f"Slack could not be reached{purpose} ({self.cause_name})")


class GroupLookupFailed(BotError):
    """A user group's members could not be read from Slack (the reason says why, in plain words)."""


class SlackError(BotError):
    """A Slack call failed: Slack's error code (or the transport's failure) and whether to retry.

    `status` is None when Slack never answered; `retry_after` is what Slack asked to wait.
    Raised only by bot.slack.errors, the one place that reads slack_sdk's exceptions.
    """

    def __init__(
        self,
        call: str,
        *,
        error: str,
        transient: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.call = call
        self.error = error
        self.transient = transient
        self.status = status
        self.retry_after = retry_after
        answered = f"Slack answered {status} {error}".strip() if status is not None else error
        super().__init__(f"{call}: {answered}")


class ModelsLabError(BotError):
    """ModelsLab gave no usable answer."""


class ModelsLabUnavailable(ModelsLabError):
    """ModelsLab could not be reached or answered with a server error."""
