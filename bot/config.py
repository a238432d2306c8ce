"""Settings: the only module that reads the environment (and `.env`, which never overrides it)."""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from bot.errors import ConfigError

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_MODELSLAB_API_URL = "https://modelslab.com/api/v3"
DEFAULT_SQLITE_FILE = "cancel-training.db"
DOTENV_FILE = ".env"

# Every variable the bot reads; .env.example, README.md, app.json and `check` know each one.
ENV_VARS = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_CLIENT_ID",
    "SLACK_CLIENT_SECRET",
    "SLACK_API_URL",
    "MODELSLAB_API_KEY",
    "MODELSLAB_API_URL",
    "MODELSLAB_V6_URL",
    "CANCEL_ALLOWED_USERS",
    "CANCEL_DRY_RUN",
    "DATABASE_URL",
    "BOT_ENCRYPTION_KEY",
    "BOT_ADMINS",
    "AUDIT_CHANNEL",
    "NOTIFY_CHANNEL",
    "MODELSLAB_WEBHOOK_TOKEN",
    "METRICS_TOKEN",
    "AUDIT_TOKEN",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "PORT",
)

_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_GROUP_ID = re.compile(r"S[A-Z0-9]{2,}")
_TEAM_ID = re.compile(r"[TE][A-Z0-9]{2,}")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def is_allow_entry(value: str) -> bool:
    """True for a Slack user id (U…/W…) or user-group id (S…)."""
    return bool(_USER_ID.fullmatch(value) or _GROUP_ID.fullmatch(value))


class Mode(str, enum.Enum):
    """How the bot knows its workspaces."""

    SINGLE = "single-workspace"
    OAUTH = "oauth"


class Purpose(str, enum.Enum):
    """What the settings are loaded for; each needs different variables."""

    SERVE = "serve"
    SOCKET = "socket"
    WORKER = "worker"
    CANCEL = "cancel"
    NOTIFY = "notify"
    ADMIN = "admin"


# What each missing required variable means to the operator, and where to get it.
_MISSING = {
    "SLACK_BOT_TOKEN": "SLACK_BOT_TOKEN is missing: install the app to your workspace and copy the "
    "Bot User OAuth Token (xoxb-…).",
    "SLACK_SIGNING_SECRET": "SLACK_SIGNING_SECRET is missing: the HTTP server verifies every request "
    "from Slack with it; copy it from the app's Basic Information page (or set SLACK_APP_TOKEN "
    "to use Socket Mode instead).",
    "SLACK_APP_TOKEN": "SLACK_APP_TOKEN is missing: Socket Mode needs an app-level token (xapp-…) "
    "with connections:write.",
    "BOT_ENCRYPTION_KEY": "BOT_ENCRYPTION_KEY is required in OAuth mode (tokens are stored "
    "encrypted); make one with `python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'`.",
}


def mode_of(env: Mapping[str, str]) -> Mode:
    """OAuth when both SLACK_CLIENT_ID and SLACK_CLIENT_SECRET are set, else single workspace."""
    both = env.get("SLACK_CLIENT_ID", "").strip() and env.get("SLACK_CLIENT_SECRET", "").strip()
    return Mode.OAUTH if both else Mode.SINGLE


def run_purpose(env: Mapping[str, str]) -> Purpose:
    """What `python -m bot` runs: Socket Mode when SLACK_APP_TOKEN is set, else the HTTP server."""
    return Purpose.SOCKET if env.get("SLACK_APP_TOKEN", "").strip() else Purpose.SERVE


def required_settings(mode: Mode, purpose: Purpose) -> tuple[str, ...]:
    """The variables a purpose cannot run without in a mode: the one rule `check` and the
    commands share."""
    needs: list[str] = []
    if mode is Mode.SINGLE and purpose in (
        Purpose.SERVE,
        Purpose.SOCKET,
        Purpose.WORKER,
        Purpose.NOTIFY,
    ):
        needs.append("SLACK_BOT_TOKEN")
    if mode is Mode.OAUTH:
        needs += ["SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET", "BOT_ENCRYPTION_KEY"]
    if purpose is Purpose.SERVE:
        needs.append("SLACK_SIGNING_SECRET")
    if purpose is Purpose.SOCKET:
        needs.append("SLACK_APP_TOKEN")
    return tuple(needs)


def describe_mode(mode: Mode, purpose: Purpose, *, chosen: bool = False) -> str:
    """Say which mode and transport are in force and what they need, in one sentence (`chosen`:
    the transport is the one `python -m bot` picked)."""
    how = {
        Purpose.SERVE: "HTTP server",
        Purpose.SOCKET: "Socket Mode",
        Purpose.WORKER: "queue worker",
    }.get(purpose, f"`{purpose.value}`")
    if chosen and purpose in (Purpose.SERVE, Purpose.SOCKET):
        state = "set" if purpose is Purpose.SOCKET else "not set"
        how += f" (what `python -m bot` runs: SLACK_APP_TOKEN is {state})"
    who = (
        "OAuth (many workspaces: each install brings its token, each workspace stores its own "
        "ModelsLab key)"
        if mode is Mode.OAUTH
        else "single workspace (SLACK_BOT_TOKEN's)"
    )
    needs = ", ".join(required_settings(mode, purpose)) or "nothing more"
    key = (
        "; cancelling also needs a ModelsLab key (MODELSLAB_API_KEY or `set-key`) and someone "
        "on the allow-list"
        if mode is Mode.SINGLE
        else ""
    )
    return f"{who}, {how}: needs {needs}{key}"


def _workspaces_phrase(workspace_ids: tuple[str, ...]) -> str:
    if not workspace_ids:
        return "the workspace"
    if len(workspace_ids) == 1:
        return f"workspace {workspace_ids[0]}"
    shown = ", ".join(workspace_ids[:3])
    more = f" and {len(workspace_ids) - 3} more" if len(workspace_ids) > 3 else ""
    return f"workspaces {shown}{more}"


def key_warning(*workspace_ids: str) -> str:
    """The warning for served workspaces without a ModelsLab key (none named: the one)."""
    return (
        f"No ModelsLab key for {_workspaces_phrase(workspace_ids)}: every cancel is refused until "
        "one is set (MODELSLAB_API_KEY, `python -m bot set-key`, or App Home)."
    )


def allow_list_warning(*workspace_ids: str) -> str:
    """The warning for served workspaces whose allow-list is empty (none named: the one)."""
    return (
        f"The allow-list of {_workspaces_phrase(workspace_ids)} is empty: nobody may cancel "
        "(add people with CANCEL_ALLOWED_USERS, `python -m bot allow`, or App Home)."
    )


@dataclass(frozen=True)
class Settings:
    """Every setting the bot reads, validated once."""

    mode: Mode
    database_url: str
    slack_api_url: str = DEFAULT_SLACK_API_URL
    modelslab_api_url: str = DEFAULT_MODELSLAB_API_URL
    modelslab_v6_url: str | None = None
    allowed_entries: tuple[str, ...] = ()
    bot_admins: tuple[str, ...] = ()
    audit_channel: str | None = None
    notify_channel: str | None = None
    dry_run: bool = False
    log_level: str = "INFO"
    log_format: str = "text"
    port: int | None = None
    warnings: tuple[str, ...] = ()
    # Secrets are kept out of repr so a settings object can be logged or shown in a traceback.
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_client_id: str | None = field(default=None, repr=False)
    slack_client_secret: str | None = field(default=None, repr=False)
    modelslab_api_key: str | None = field(default=None, repr=False)
    encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    webhook_token: str | None = field(default=None, repr=False)
    metrics_token: str | None = field(default=None, repr=False)
    # Single workspace: the bearer token of GET /audit (unset: the route answers 404).
    audit_token: str | None = field(default=None, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every configured secret value, for log redaction."""
        values = (
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.slack_client_secret,
            self.modelslab_api_key,
            self.webhook_token,
            self.metrics_token,
            self.audit_token,
            *self.encryption_keys,
        )
        return tuple(v for v in values if v)

    @property
    def is_sqlite(self) -> bool:
        """True when the store is a SQLite file."""
        return self.database_url.startswith("sqlite")


def dotenv_path() -> Path | None:
    """The `.env` file settings are read from: the working directory's, never a parent's (a
    parent's would put the default database somewhere it was not created)."""
    path = Path.cwd() / DOTENV_FILE
    return path if path.is_file() else None


def read_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment with `.env` underneath it (real variables win; empty is unset)."""
    if env is not None:
        return dict(env)
    path = dotenv_path()
    from_file = {k: v for k, v in dotenv_values(path).items() if v is not None} if path else {}
    # `docker run --env-file` and platforms set `NAME=` for a blank line: that is not a value.
    real = {k: v for k, v in os.environ.items() if v.strip() or k not in from_file}
    return {**from_file, **real}


def async_database_url(raw: str | None, *, cwd: Path | None = None) -> str:
    """Map a DATABASE_URL as users write it to an async SQLAlchemy URL."""
    if not raw:
        return f"sqlite+aiosqlite:///{(cwd or Path.cwd()) / DEFAULT_SQLITE_FILE}"
    scheme, sep, rest = raw.partition("://")
    if not sep:
        raise ValueError("it must look like sqlite:///path/to/file.db or postgresql://user@host/db")
    scheme = scheme.lower()
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        if not rest.startswith("/") or rest == "/":
            raise ValueError(
                "a SQLite URL needs a file path: sqlite:///relative.db or sqlite:////abs.db"
            )
        return f"sqlite+aiosqlite://{rest}"
    if scheme in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg_async"):
        return f"postgresql+psycopg://{rest}"
    raise ValueError(f"the scheme {scheme!r} is not supported (use sqlite:/// or postgresql://)")


def _split_list(value: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())


def _check_url(name: str, value: str, problems: list[str]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append(
            f"{name} must be an http(s) URL, e.g. https://example.com/api (got {value!r})."
        )
    return value


def _is_fernet_key(value: str) -> bool:
    from cryptography.fernet import Fernet

    try:
        Fernet(value.encode())
    except (ValueError, TypeError):
        return False
    return True


def load_settings(purpose: Purpose, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the settings for one purpose; raise ConfigError naming every problem."""
    e = read_environment(env)

    def get(name: str) -> str | None:
        value = e.get(name, "").strip()
        return value or None

    problems: list[str] = []
    warnings: list[str] = []

    client_id, client_secret = get("SLACK_CLIENT_ID"), get("SLACK_CLIENT_SECRET")
    mode = mode_of(e)
    if mode is Mode.SINGLE and (client_id or client_secret):
        missing = "SLACK_CLIENT_SECRET" if client_id else "SLACK_CLIENT_ID"
        warnings.append(
            f"Only one of SLACK_CLIENT_ID/SLACK_CLIENT_SECRET is set; OAuth needs both "
            f"(set {missing}). Running in single-workspace mode."
        )

    bot_token = get("SLACK_BOT_TOKEN")
    if bot_token and not bot_token.startswith("xoxb-"):
        problems.append(
            "SLACK_BOT_TOKEN must be a bot token starting with 'xoxb-' (OAuth & Permissions page)."
        )
    app_token = get("SLACK_APP_TOKEN")
    if app_token and not app_token.startswith("xapp-"):
        problems.append(
            "SLACK_APP_TOKEN must be an app-level token starting with 'xapp-' (Basic Information > App-Level Tokens, scope connections:write)."
        )
    signing_secret = get("SLACK_SIGNING_SECRET")
    if signing_secret and not re.fullmatch(r"[0-9a-fA-F]{16,}", signing_secret):
        problems.append(
            "SLACK_SIGNING_SECRET looks wrong: copy the hex 'Signing Secret' from Basic Information."
        )

    slack_api_url = _check_url(
        "SLACK_API_URL", get("SLACK_API_URL") or DEFAULT_SLACK_API_URL, problems
    )
    if not slack_api_url.endswith("/"):
        slack_api_url += "/"
    modelslab_url = _check_url(
        "MODELSLAB_API_URL",
        (get("MODELSLAB_API_URL") or DEFAULT_MODELSLAB_API_URL).rstrip("/"),
        problems,
    )
    v6_url = get("MODELSLAB_V6_URL")
    if v6_url:
        _check_url("MODELSLAB_V6_URL", v6_url, problems)
    elif not modelslab_url.endswith("/v3"):
        problems.append("MODELSLAB_V6_URL is required when MODELSLAB_API_URL does not end in /v3.")

    try:
        database_url = async_database_url(get("DATABASE_URL"))
    except ValueError as exc:
        problems.append(f"DATABASE_URL: {exc}.")
        database_url = ""

    encryption_keys = _split_list(get("BOT_ENCRYPTION_KEY"))
    bad_keys = [i for i, k in enumerate(encryption_keys, 1) if not _is_fernet_key(k)]
    if bad_keys:
        problems.append(
            "BOT_ENCRYPTION_KEY must be Fernet keys, comma-separated, newest first (make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`); "
            f"entry {', '.join(map(str, bad_keys))} is not."
        )

    allowed = _split_list(get("CANCEL_ALLOWED_USERS"))
    bad_allowed = [a for a in allowed if not is_allow_entry(a)]
    if bad_allowed:
        problems.append(
            "CANCEL_ALLOWED_USERS takes Slack user IDs (U…/W…) and user-group IDs (S…), comma-separated; "
            f"not understood: {', '.join(bad_allowed[:5])}."
        )
    admins = _split_list(get("BOT_ADMINS"))
    bad_admins = [a for a in admins if not _USER_ID.fullmatch(a)]
    if bad_admins:
        problems.append(
            f"BOT_ADMINS takes Slack user IDs (U…/W…); not understood: {', '.join(bad_admins[:5])}."
        )
    audit_channel, notify_channel = get("AUDIT_CHANNEL"), get("NOTIFY_CHANNEL")
    for name, channel in (("AUDIT_CHANNEL", audit_channel), ("NOTIFY_CHANNEL", notify_channel)):
        if channel and not _CHANNEL_ID.fullmatch(channel):
            problems.append(
                f"{name} must be a channel ID such as C0123ABCD (channel details > About), not a name."
            )

    dry_run_raw = (get("CANCEL_DRY_RUN") or "0").lower()
    if dry_run_raw not in ("0", "1", "true", "false", "yes", "no"):
        problems.append("CANCEL_DRY_RUN must be 1 (dry run) or 0.")
    log_level = (get("LOG_LEVEL") or "INFO").upper()
    if log_level not in _LOG_LEVELS:
        problems.append(f"LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}.")
    log_format = (get("LOG_FORMAT") or "text").lower()
    if log_format not in ("text", "json"):
        problems.append("LOG_FORMAT must be text or json.")
    port: int | None = None
    raw_port = get("PORT")
    if raw_port:
        port = int(raw_port) if raw_port.isdigit() else None
        if port is None or not 0 < port < 65536:
            problems.append("PORT must be a TCP port number (1-65535).")

    api_key = get("MODELSLAB_API_KEY")
    if mode is Mode.OAUTH and (bot_token or api_key):
        ignored = " and ".join(
            name
            for name, value in (("SLACK_BOT_TOKEN", bot_token), ("MODELSLAB_API_KEY", api_key))
            if value
        )
        warnings.append(
            f"OAuth mode: {ignored} {'are' if ' and ' in ignored else 'is'} ignored (each workspace "
            "installs the app and stores its own key)."
        )
    audit_token = get("AUDIT_TOKEN")
    if mode is Mode.OAUTH and audit_token:
        warnings.append(
            "OAuth mode: AUDIT_TOKEN is ignored (GET /audit takes each workspace's own token, "
            "issued in its App Home)."
        )
    elif audit_token and len(audit_token) < 16:
        warnings.append(
            "AUDIT_TOKEN is shorter than 16 characters: anyone who guesses it reads the audit log "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')."
        )
    if mode is Mode.OAUTH and purpose is Purpose.SOCKET and port is None:
        # Socket Mode carries Slack's requests, not a browser's: the install page needs HTTP.
        warnings.append(
            "OAuth in Socket Mode without PORT: the install pages (/slack/install) are only served "
            "over HTTP, so no new workspace can install the app; set PORT (and a public URL)."
        )
    problems += [
        _MISSING.get(name, f"{name} is missing.")
        for name in required_settings(mode, purpose)
        if not get(name)
    ]

    if problems:
        if mode is Mode.SINGLE and purpose in (Purpose.SERVE, Purpose.SOCKET, Purpose.WORKER):
            # Not problems (a key may be stored, people added in the app), but a newcomer's next
            # surprise: said along with what stops the start.
            if not api_key:
                warnings.append(key_warning())
            if not allowed:
                warnings.append(allow_list_warning())
        serving = purpose in (Purpose.SERVE, Purpose.SOCKET, Purpose.WORKER)
        raise ConfigError(
            problems,
            warnings=warnings,
            context=describe_mode(mode, purpose) if serving else None,
        )
    return Settings(
        mode=mode,
        database_url=database_url,
        slack_api_url=slack_api_url,
        modelslab_api_url=modelslab_url,
        modelslab_v6_url=v6_url,
        allowed_entries=allowed,
        bot_admins=admins,
        audit_channel=audit_channel,
        notify_channel=notify_channel,
        dry_run=dry_run_raw in ("1", "true", "yes"),
        log_level=log_level,
        log_format=log_format,
        port=port,
        warnings=tuple(warnings),
        slack_bot_token=bot_token if mode is Mode.SINGLE else None,
        slack_signing_secret=signing_secret,
        slack_app_token=app_token,
        slack_client_id=client_id if mode is Mode.OAUTH else None,
        slack_client_secret=client_secret if mode is Mode.OAUTH else None,
        modelslab_api_key=api_key,
        encryption_keys=encryption_keys,
        webhook_token=get("MODELSLAB_WEBHOOK_TOKEN"),
        metrics_token=get("METRICS_TOKEN"),
        audit_token=audit_token if mode is Mode.SINGLE else None,
    )
