"""Command line: `python -m bot [serve|socket|check|notify|cancel|…] …`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import json
import logging
import re
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from slack_sdk.errors import SlackApiError, SlackClientError

from bot import version
from bot.cancellation import CancellationService, headline, modelslab_said
from bot.config import (
    DOTENV_FILE,
    Mode,
    Purpose,
    Settings,
    describe_mode,
    dotenv_path,
    load_settings,
    mode_of,
    read_environment,
    run_purpose,
)
from bot.errors import BotError, ConfigError, InvalidTrainingId, MissingKey, StoreUnavailable
from bot.logs import setup_logging
from bot.model import Cancellation, Origin, OutcomeKind, State
from bot.modelslab import ModelsLabClient
from bot.store import Store
from bot.workspaces import TEAM_ID_META

logger = logging.getLogger("bot")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SCHEDULED = 0, 1, 2, 3
# The client's whole budget plus a margin: the terminal waits for one complete attempt series.
CLI_WAIT_SECONDS = 40.0
# Design §3: the start-up waits this long for a PostgreSQL that is not up yet, saying so every
# DB_PROGRESS_SECONDS.
DB_WAIT_SECONDS = 30.0
DB_PROGRESS_SECONDS = 5.0
COMMANDS = (
    "serve",
    "socket",
    "check",
    "notify",
    "cancel",
    "set-key",
    "allow",
    "deny",
    "workspaces",
    "rotate-keys",
)
_WORD = re.compile(r"[a-z][a-z-]{0,23}")


class _Parser(argparse.ArgumentParser):
    """argparse that never repeats stray arguments: a key pasted on the command line stays unseen."""

    def error(self, message: str) -> NoReturn:
        """Print usage and a message without echoing unrecognised arguments; exit 2."""
        commands = ", ".join(COMMANDS)
        if message.startswith("unrecognized arguments"):
            message = (
                "unexpected arguments (not shown, in case one is a secret: set-key reads the key "
                f"from stdin); see `{self.prog} --help`"
            )
            if self.prog == "python -m bot":
                message += f"; the commands are {commands}"
        choice = re.match(r"argument COMMAND: invalid choice: '(.*)' \(", message, re.DOTALL)
        if choice:
            typed = choice.group(1)
            # Echo a mistyped word; never something that may be a pasted key.
            shown = f"'{typed}'" if _WORD.fullmatch(typed) else "(not shown)"
            message = f"unknown command {shown}; the commands are {commands}"
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser for every command."""
    parser = _Parser(
        prog="python -m bot",
        description="Cancel ModelsLab trainings from Slack. Without a command: Socket Mode when "
        "SLACK_APP_TOKEN is set, otherwise the HTTP server.",
    )
    parser.add_argument("--version", action="version", version=f"cancel-training-bot {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    serve = sub.add_parser(
        "serve", help="run the HTTP server (port: --port, else $PORT, else 3000)"
    )
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server container listens on all interfaces
    serve.add_argument("--port", type=int)
    sub.add_parser("socket", help="run in Socket Mode (needs SLACK_APP_TOKEN)")
    check = sub.add_parser(
        "check",
        help="validate the configuration for what `python -m bot` would run; exit 0 only if it will work",
    )
    check.add_argument(
        "--offline", action="store_true", help="skip the calls to Slack and ModelsLab"
    )
    transport = check.add_mutually_exclusive_group()
    transport.add_argument(
        "--serve",
        dest="purpose",
        action="store_const",
        const=Purpose.SERVE,
        help="check for `serve` (default: what `python -m bot` runs)",
    )
    transport.add_argument(
        "--socket",
        dest="purpose",
        action="store_const",
        const=Purpose.SOCKET,
        help="check for `socket`",
    )
    notify = sub.add_parser("notify", help="post a training notification with a Cancel button")
    notify.add_argument("training_id")
    notify.add_argument(
        "--channel", help="channel ID (C…); with --url, default: the server's notification channel"
    )
    notify.add_argument(
        "--url",
        help="a running bot's base URL: post through its POST /notify (bearer MODELSLAB_WEBHOOK_TOKEN)",
    )
    notify.add_argument("--title")
    notify.add_argument("--owner")
    notify.add_argument("--team")
    cancel = sub.add_parser(
        "cancel", help="cancel a training from the terminal (audited as origin cli)"
    )
    cancel.add_argument("training_id")
    cancel.add_argument("--team", help="workspace id (T…); default: the bot's workspace")
    cancel.add_argument("--dry-run", action="store_true", help="do everything but call ModelsLab")
    set_key = sub.add_parser(
        "set-key", help="store a workspace's ModelsLab key, read from stdin (never argv)"
    )
    set_key.add_argument(
        "--team", help="workspace id (T…); default: the bot's workspace (single mode)"
    )
    set_key.add_argument(
        "--no-check", action="store_true", help="store without asking ModelsLab first"
    )
    for name, verb in (("allow", "add to"), ("deny", "remove from")):
        p = sub.add_parser(
            name, help=f"{verb} a workspace's cancel allow-list (user U…/W… or group S… ids)"
        )
        p.add_argument("entries", nargs="+", metavar="ID")
        p.add_argument(
            "--team", help="workspace id (T…); default: the bot's workspace (single mode)"
        )
    sub.add_parser(
        "workspaces", help="list workspaces: installed, key set, allow-list size (never a key)"
    )
    sub.add_parser(
        "rotate-keys", help="re-encrypt every stored secret with the newest BOT_ENCRYPTION_KEY"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command and return its exit code."""
    args = build_parser().parse_args(argv)
    command = args.command
    chosen = command is None
    if chosen:
        # Socket Mode when an app token is configured, otherwise HTTP (design §3); `check` asks
        # the same function.
        command = run_purpose(read_environment()).value
        args = build_parser().parse_args([command])
    handlers = {
        "cancel": cmd_cancel,
        "notify": cmd_notify,
        "serve": cmd_run,
        "socket": cmd_run,
        "check": cmd_check,
        "set-key": cmd_set_key,
        "allow": cmd_allow,
        "deny": cmd_allow,
        "workspaces": cmd_workspaces,
        "rotate-keys": cmd_rotate_keys,
    }
    try:
        return asyncio.run(handlers[command](args))
    except ConfigError as exc:
        if chosen and exc.context:
            env = read_environment()
            exc.context = describe_mode(mode_of(env), run_purpose(env), chosen=True)
        print(describe_config_error(exc, "" if chosen else command), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def describe_config_error(exc: ConfigError, command: str) -> str:
    """One line for one problem; otherwise the mode, every problem, the warnings, and where
    settings come from."""
    missing = any(" is missing" in p or " is required" in p for p in exc.problems)
    if len(exc.problems) == 1 and not missing:
        return f"Configuration problem: {exc.problems[0]}"
    program = f"python -m bot {command}".strip()
    lines = [f"`{program}` cannot run; the configuration has problems:"]
    if exc.context:
        lines.insert(1, f"Mode: {exc.context}.")
    lines += [f"  - {problem}" for problem in exc.problems]
    if exc.warnings:
        lines.append("Warnings (these do not stop it):")
        lines += [f"  - {warning}" for warning in exc.warnings]
    if missing:
        found = dotenv_path()
        where = (
            f"from {found}"
            if found
            else f"from {DOTENV_FILE} in this directory (there is none here)"
        )
        lines.append(
            f"Settings are read from the environment, then {where}: copy .env.example to "
            f"{DOTENV_FILE} and fill it in; `python -m bot check` says what is still missing."
        )
    return "\n".join(lines)


def _sentence(exc: BaseException) -> str:
    """An error as one sentence ending in a full stop."""
    return str(exc).rstrip(".") + "."


def _settings(purpose: Purpose, *, dry_run: bool = False, log_level: str = "WARNING") -> Settings:
    settings = load_settings(purpose)
    setup_logging(
        level=log_level or settings.log_level, fmt=settings.log_format, secrets=settings.secrets
    )
    if dry_run and not settings.dry_run:
        from dataclasses import replace

        settings = replace(settings, dry_run=True)
    return settings


async def open_store(settings: Settings) -> Store:
    """Connect to the database (waiting for PostgreSQL up to 30 s, saying so) and migrate it."""
    store = Store.from_url(settings.database_url)
    try:
        await _wait_for_database(store)
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    return store


async def _wait_for_database(store: Store) -> None:
    """Ping until the database answers; PostgreSQL may still be starting (design §3: 30 s)."""
    started = time.monotonic()
    deadline = started + DB_WAIT_SECONDS
    next_note = started + DB_PROGRESS_SECONDS
    delay = 0.25
    while True:
        try:
            # Bounded: a host that drops packets would otherwise hold one attempt for minutes.
            await asyncio.wait_for(store.ping(), timeout=max(deadline - time.monotonic(), 0.1))
            return
        except (StoreUnavailable, asyncio.TimeoutError) as exc:
            now = time.monotonic()
            if store.dialect != "postgresql" or now >= deadline - 0.05:
                if isinstance(exc, StoreUnavailable):
                    raise
                raise StoreUnavailable(
                    f"the database did not answer within {DB_WAIT_SECONDS:.0f} s"
                ) from exc
            if now >= next_note:
                print(f"waiting for the database… ({now - started:.0f} s)", file=sys.stderr)
                next_note += DB_PROGRESS_SECONDS
            # Wake for the next progress line and for the deadline, whatever the backoff says.
            await asyncio.sleep(min(delay, max(next_note - now, 0.0), deadline - now))
            delay = min(delay * 2, 1.0)


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def describe_for_terminal(row: Cancellation) -> str:
    """Return one line saying what became of a cancellation."""
    said = modelslab_said(row)
    line = f"Training {row.training_id}: {headline(row)}"
    if row.state == State.REQUESTED and row.outcome == OutcomeKind.RATE_LIMITED.value:
        line += f"; retry at {_when(row.next_attempt_at)} by a running server (python -m bot serve)"
    if said:
        line += f". {said}"
    return line + "."


def exit_code_for(row: Cancellation) -> int:
    """Map a cancellation to the `cancel` command's exit code (design §3)."""
    if row.outcome == OutcomeKind.PROBABLY_CANCELLED.value:
        return EXIT_FAILED  # not confirmed: the operator should look
    if row.state == State.CANCELLED:
        return EXIT_OK
    if row.state == State.REQUESTED and row.outcome == OutcomeKind.RATE_LIMITED.value:
        return EXIT_SCHEDULED
    return EXIT_FAILED


async def report_from_terminal(settings: Settings, store: Store, row: Cancellation) -> None:
    """Post the outcome in the notification's thread and the audit channel, as any origin is."""
    if not settings.slack_bot_token:
        return
    from bot.crypto import SecretBox
    from bot.reporter import Reporter
    from bot.slack import SlackClients

    token = settings.slack_bot_token
    clients = SlackClients(base_url=settings.slack_api_url)

    async def client_for(team_id: str) -> object:
        return clients.reporter_for(token)

    async def audit_channel(team_id: str) -> str | None:
        return settings.audit_channel

    reporter = Reporter(
        store=store,
        clients=client_for,
        secret_box=SecretBox(settings.encryption_keys),
        audit_channel=audit_channel,
        session=clients.session,
    )
    try:
        # Bounded: a running server's reporter delivers whatever is left.
        await asyncio.wait_for(reporter.deliver_now(row.id), timeout=15)
    except asyncio.TimeoutError:
        logger.warning("Slack report not delivered yet; a running server will deliver it")
    finally:
        await clients.close()


async def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a training with the stored key and print the outcome in one line."""
    settings = _settings(Purpose.CANCEL, dry_run=args.dry_run)
    try:
        store = await open_store(settings)
    except StoreUnavailable as exc:
        print(f"Cannot cancel: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    try:
        workspace_id = await resolve_team(settings, store, args.team)
        async with ModelsLabClient(
            base_url=settings.modelslab_api_url,
            v6_url=settings.modelslab_v6_url,
            dry_run=settings.dry_run,
        ) as client:
            from bot.crypto import SecretBox
            from bot.workspaces import Workspaces

            # The workspace's stored key first; MODELSLAB_API_KEY for the single workspace.
            workspaces = Workspaces(
                store=store,
                box=SecretBox(settings.encryption_keys),
                settings=settings,
                single_workspace_id=workspace_id if settings.mode is Mode.SINGLE else None,
            )
            service = CancellationService(
                store=store,
                client=client,
                keys=workspaces.key_for,
                dry_run=settings.dry_run,
            )
            result = await service.request(
                workspace_id=workspace_id,
                training_id=args.training_id,
                requested_by=f"cli:{getpass.getuser()}",
                origin=Origin.CLI,
            )
            row = result.cancellation
            if not result.created and row.is_final:
                print(
                    f"Training {row.training_id} was already cancelled by {row.requested_by} "
                    f"at {_when(row.finished_at or row.requested_at)}: {headline(row)}."
                )
                return EXIT_OK
            if result.created:
                await service.run_now(row.id)
            settled = await service.wait_settled(row.id, timeout=CLI_WAIT_SECONDS)
            if settled is None or not (settled.is_final or settled.outcome):
                print(
                    f"Training {row.training_id} is being cancelled by another instance; "
                    "its outcome will be posted in Slack."
                )
                return EXIT_FAILED
            print(describe_for_terminal(settled))
            await report_from_terminal(settings, store, settled)
            return exit_code_for(settled)
    except InvalidTrainingId as exc:
        print(f"Not a training id: {exc}.", file=sys.stderr)
        return EXIT_USAGE
    except MissingKey:
        print(
            "Cannot cancel: no ModelsLab API key for this workspace. Set MODELSLAB_API_KEY "
            "or store one with `python -m bot set-key`.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except StoreUnavailable as exc:
        print(f"Cannot cancel: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError:
        raise
    except BotError as exc:
        print(f"Cannot cancel: {_sentence(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()


async def cmd_run(args: argparse.Namespace) -> int:
    """Run the bot: the HTTP server or Socket Mode."""
    from bot import server

    socket_mode = args.command == "socket"
    settings = load_settings(Purpose.SOCKET if socket_mode else Purpose.SERVE)
    setup_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets)
    port = getattr(args, "port", None) or settings.port
    try:
        store = await open_store(settings)
    except StoreUnavailable as exc:
        print(f"Cannot start: {exc}. Check DATABASE_URL.", file=sys.stderr)
        return EXIT_FAILED
    try:
        if socket_mode:
            await server.socket(settings, store, host="0.0.0.0", port=port)  # noqa: S104 - health routes for the platform
        else:
            await server.serve(settings, store, host=args.host, port=port or 3000)
    except ConfigError:
        raise
    except BotError as exc:
        print(f"Cannot start: {_sentence(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"Cannot start: {exc.strerror or exc}.", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()
    return EXIT_OK


async def cmd_notify(args: argparse.Namespace) -> int:
    """Post a training notification with a Cancel button and record it in the store."""
    from bot.blocks import build_notification
    from bot.ids import validate_training_id
    from bot.model import Notification
    from bot.notifier import record_permalink
    from bot.server import identify_workspace
    from bot.slack import SlackClients

    settings = _settings(Purpose.ADMIN if args.url else Purpose.NOTIFY)
    try:
        training_id = validate_training_id(args.training_id)
    except InvalidTrainingId as exc:
        print(f"Not a training id: {exc}.", file=sys.stderr)
        return EXIT_USAGE
    if args.channel is None and not args.url:
        print("--channel is required (a channel ID such as C0123ABCD).", file=sys.stderr)
        return EXIT_USAGE
    if args.channel is not None and (
        args.channel[:1] not in ("C", "G") or not args.channel.isalnum()
    ):
        print(
            "--channel takes a channel ID such as C0123ABCD (channel details > About).",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.owner and not (args.owner[:1] in ("U", "W") and args.owner.isalnum()):
        print("--owner takes a Slack user ID such as U0123ABCD.", file=sys.stderr)
        return EXIT_USAGE
    if args.url:
        return await notify_over_http(settings, args, training_id)
    if settings.mode is Mode.OAUTH:
        print(
            "In OAuth mode post through the running bot: add --url https://YOUR-BOT "
            "(it uses the workspace's own token).",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        store = await open_store(settings)
    except StoreUnavailable as exc:
        print(f"Cannot notify: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    clients = SlackClients(base_url=settings.slack_api_url)
    try:
        workspace_id = args.team or str(
            (await identify_workspace(settings, store, clients)).team_id
        )
        draft = Notification(
            workspace_id=workspace_id,
            training_id=training_id,
            channel_id=args.channel,
            message_ts="",
            owner_id=args.owner,
            title=args.title,
            stage=None,
            created_at=0.0,
        )
        # One notification per training: reserve it, then post (a repeat run finds it).
        if not await store.notifications.reserve(
            workspace_id=workspace_id,
            training_id=training_id,
            channel_id=args.channel,
            owner_id=args.owner,
            title=args.title,
        ):
            existing = await store.notifications.get(workspace_id, training_id)
            if existing is None:
                print(f"Training {training_id}'s notification is being posted by another process.")
                return EXIT_FAILED
            print(
                f"Training {training_id} already has a notification in {existing.channel_id} "
                f"(ts {existing.message_ts}); not posted again."
            )
            return EXIT_OK
        latest = await store.cancellations.latest(workspace_id, training_id)
        client = clients.reporter_for(str(settings.slack_bot_token))
        try:
            response = await client.chat_postMessage(
                channel=args.channel, **build_notification(draft, latest)
            )
        except BaseException:
            await store.notifications.drop_reservation(workspace_id, training_id)
            raise
        await store.notifications.posted(
            workspace_id,
            training_id,
            channel_id=str(response["channel"]),
            message_ts=str(response["ts"]),
        )
        await record_permalink(
            store, client, workspace_id, training_id, str(response["channel"]), str(response["ts"])
        )
    except SlackApiError as exc:
        error = exc.response.get("error")
        hint = (
            " (invite the bot to the channel with /invite)"
            if error in ("not_in_channel", "channel_not_found")
            else ""
        )
        print(f"Slack refused the notification: {error}{hint}.", file=sys.stderr)
        return EXIT_FAILED
    except (SlackClientError, OSError, asyncio.TimeoutError) as exc:
        print(
            f"Slack could not be reached ({type(exc).__name__}); nothing was posted.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except ConfigError:
        raise
    except BotError as exc:
        print(f"Cannot notify: {_sentence(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await clients.close()
        await store.close()
    print(
        f"Posted the notification for training {training_id} in {args.channel} (ts {response['ts']})."
    )
    return EXIT_OK


async def notify_over_http(settings: Settings, args: argparse.Namespace, training_id: str) -> int:
    """`notify --url`: ask a running bot (on another host) to post the notification."""
    import aiohttp

    if not settings.webhook_token:
        print(
            "MODELSLAB_WEBHOOK_TOKEN is needed to call POST /notify (the bearer token).",
            file=sys.stderr,
        )
        return EXIT_USAGE
    body = {
        "training_id": training_id,
        "channel": args.channel,
        "title": args.title,
        "owner": args.owner,
    }
    url = args.url.rstrip("/") + "/notify"
    headers = {"Authorization": f"Bearer {settings.webhook_token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.post(
                url, json={k: v for k, v in body.items() if v is not None}, headers=headers
            ) as resp,
        ):
            text = await resp.text()
            status = resp.status
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        print(
            f"The bot at {args.url} could not be reached ({type(exc).__name__}).", file=sys.stderr
        )
        return EXIT_FAILED
    if status == 200:
        answer = json.loads(text)
        print(
            f"Posted the notification for training {training_id} in {answer['channel']} (ts {answer['ts']})."
        )
        return EXIT_OK
    if status == 502:
        print(
            f"The bot could not post the notification: {json.loads(text).get('error')}.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    if status == 202:
        print(
            f"The bot queued the notification for training {training_id}; it is posted when Slack allows."
        )
        return EXIT_FAILED
    reason = "the token was refused" if status == 401 else text.strip()[:200]
    print(f"The bot refused the notification (HTTP {status}): {reason}.", file=sys.stderr)
    return EXIT_FAILED


async def cmd_check(args: argparse.Namespace) -> int:
    """Validate the configuration (and, unless --offline, the tokens and key)."""
    from bot.check import run_check

    return await run_check(offline=args.offline, purpose=args.purpose)


async def served_workspace(settings: Settings, store: Store, *, required: bool) -> str | None:
    """Single workspace: the one this bot serves — cached at an earlier start, else asked of
    Slack with SLACK_BOT_TOKEN (and cached); None when it cannot be known now and not `required`."""
    cached = await store.meta.get(TEAM_ID_META)
    if cached is not None or not settings.slack_bot_token:
        return cached
    from slack_sdk.web.async_client import AsyncWebClient

    slack = AsyncWebClient(
        token=settings.slack_bot_token, base_url=settings.slack_api_url, timeout=10
    )
    try:
        auth = await slack.auth_test()
    except SlackApiError as exc:
        raise ConfigError(
            [
                f"SLACK_BOT_TOKEN was refused by Slack ({exc.response.get('error')}): reinstall "
                "the app and copy the new token."
            ]
        ) from exc
    except (SlackClientError, OSError, asyncio.TimeoutError) as exc:
        if not required:
            return None
        raise BotError(
            f"Slack could not be reached to learn which workspace SLACK_BOT_TOKEN belongs to "
            f"({type(exc).__name__}); pass --team T…"
        ) from exc
    team = str(auth["team_id"])
    await store.meta.set(TEAM_ID_META, team)
    return team


async def resolve_team(settings: Settings, store: Store, requested: str | None) -> str:
    """The workspace a terminal command acts on; ConfigError for one this bot does not serve."""
    if settings.mode is Mode.OAUTH:
        if requested is None:
            raise ConfigError(["Pass --team T…: in OAuth mode the bot serves many workspaces."])
        return requested
    served = await served_workspace(settings, store, required=requested is None)
    if requested is not None and served is not None and requested != served:
        raise ConfigError(
            [
                f"This bot serves workspace {served} (single-workspace mode: SLACK_BOT_TOKEN's), "
                f"not {requested}: drop --team, or serve several workspaces in OAuth mode."
            ]
        )
    team = requested or served
    if team is None:
        raise ConfigError(
            [
                "The workspace is not known yet: it is learned from Slack at the first start "
                "(or now, with SLACK_BOT_TOKEN set); or pass --team T…"
            ]
        )
    return team


async def _admin_context(args: argparse.Namespace) -> tuple[Settings, Store]:
    settings = _settings(Purpose.ADMIN)
    return settings, await open_store(settings)


async def cmd_set_key(args: argparse.Namespace) -> int:
    """Read a ModelsLab key from stdin, check it, and store it encrypted for one workspace."""
    from bot.crypto import SecretBox
    from bot.errors import InvalidKey, SecretStorageDisabled
    from bot.workspaces import Workspaces

    try:
        settings, store = await _admin_context(args)
    except StoreUnavailable as exc:
        print(f"Cannot store the key: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    try:
        team = await resolve_team(settings, store, args.team)
        if sys.stdin.isatty():
            key = getpass.getpass("ModelsLab API key (input hidden): ")
        else:
            key = sys.stdin.readline()
        async with ModelsLabClient(
            base_url=settings.modelslab_api_url, v6_url=settings.modelslab_v6_url
        ) as client:
            workspaces = Workspaces(
                store=store,
                box=SecretBox(settings.encryption_keys),
                settings=settings,
                modelslab=None if args.no_check else client,
            )
            hint = await workspaces.set_key(team, key, by=f"cli:{getpass.getuser()}")
    except SecretStorageDisabled as exc:
        print(f"Not stored: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidKey as exc:
        print(f"Not stored: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError:
        raise
    except BotError as exc:
        print(f"Not stored: {_sentence(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()
    print(f"Stored the ModelsLab key for workspace {team} (ends …{hint}).")
    return EXIT_OK


async def cmd_allow(args: argparse.Namespace) -> int:
    """Add or remove allow-list entries of one workspace, saying who stays allowed and why."""
    from bot.config import is_allow_entry
    from bot.crypto import SecretBox
    from bot.workspaces import Workspaces

    bad = [e for e in args.entries if not is_allow_entry(e)]
    if bad:
        print(f"Not a Slack user (U…/W…) or user-group (S…) id: {', '.join(bad)}.", file=sys.stderr)
        return EXIT_USAGE
    try:
        settings, store = await _admin_context(args)
    except StoreUnavailable as exc:
        print(f"Cannot change the allow-list: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    try:
        team = await resolve_team(settings, store, args.team)
        workspaces = Workspaces(
            store=store,
            box=SecretBox(settings.encryption_keys),
            settings=settings,
            # Single workspace: the operator's list applies to the workspace being administered.
            single_workspace_id=team if settings.mode is Mode.SINGLE else None,
        )
        by = f"cli:{getpass.getuser()}"
        fixed = workspaces.fixed_entries(team)
        if args.command == "allow":
            changed = await workspaces.allow(team, args.entries, by=by)
        else:
            changed = await workspaces.deny(team, args.entries, by=by)
        # Distinct: an id both in CANCEL_ALLOWED_USERS and stored is one entry.
        entries = dict.fromkeys([*fixed, *await store.workspaces.allow_list(team)])
    except ConfigError:
        raise
    except BotError as exc:
        print(f"Cannot change the allow-list: {_sentence(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()
    in_env = [e for e in dict.fromkeys(args.entries) if e in fixed]
    size = f"the list now has {len(entries)} entries"
    if in_env:
        size += f" ({sum(e in entries for e in fixed)} from CANCEL_ALLOWED_USERS)"
    if args.command == "allow":
        also = f" ({', '.join(in_env)} also in CANCEL_ALLOWED_USERS)" if in_env else ""
        print(f"Allowed {', '.join(changed) or 'nothing new'}{also} in workspace {team}; {size}.")
        return EXIT_OK
    absent = [e for e in dict.fromkeys(args.entries) if e not in changed and e not in in_env]
    said = [f"Removed {', '.join(changed)} from workspace {team}'s list"] if changed else []
    if absent:
        said.append(f"{', '.join(absent)} {'was' if len(absent) == 1 else 'were'} not on it")
    print(f"{'; '.join(said) or 'Nothing removed'}; {size}.")
    if in_env:
        print(
            f"Still allowed: {', '.join(in_env)} (in CANCEL_ALLOWED_USERS, which is always in "
            "force): remove them there and restart the bot.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


async def cmd_workspaces(args: argparse.Namespace) -> int:
    """List workspaces: served, installed, key set or not, allow-list size — never a key."""
    try:
        settings, store = await _admin_context(args)
    except StoreUnavailable as exc:
        print(f"Cannot list workspaces: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    try:
        rows = await store.workspaces.all()
        served = (
            await served_workspace(settings, store, required=False)
            if settings.mode is Mode.SINGLE
            else None
        )
        served_list = await store.workspaces.allow_list(served) if served is not None else []
    finally:
        await store.close()
    table: list[tuple[str, str, str, str, str, str]] = []
    for ws, allowed in rows:
        key = f"…{ws.key_hint}" if ws.key_ciphertext else "not set"
        count = str(allowed)
        if settings.mode is Mode.OAUTH:
            is_served = ws.installed
        else:
            is_served = ws.workspace_id == served
            if is_served:
                count = str(len(dict.fromkeys([*settings.allowed_entries, *served_list])))
                if not ws.key_ciphertext and settings.modelslab_api_key:
                    key = "MODELSLAB_API_KEY"
        table.append(
            (
                ws.workspace_id,
                (ws.name or "-")[:24],
                "yes" if is_served else "no",
                "yes" if ws.installed else "no",
                key,
                count,
            )
        )
    if served is not None and all(row[0] != served for row in table):
        # Single workspace: nothing stored for it yet, but it is the one the bot serves.
        key = "MODELSLAB_API_KEY" if settings.modelslab_api_key else "not set"
        count = str(len(dict.fromkeys([*settings.allowed_entries, *served_list])))
        table.insert(0, (served, "-", "yes", "no", key, count))
    if not table:
        print("No workspaces yet.")
    else:
        header = ("workspace", "name", "served", "installed", "key", "allowed")
        widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header) - 1)]
        for row in (header, *table):
            print(
                " ".join(f"{cell:<{w}}" for cell, w in zip(row[:-1], widths, strict=True))
                + f" {row[-1]}"
            )
    if settings.mode is Mode.SINGLE:
        if served is None:
            print(
                "The workspace this bot serves is not known yet: it is learned from Slack at the "
                "first start (or now, with SLACK_BOT_TOKEN set)."
            )
        elif settings.allowed_entries or settings.modelslab_api_key:
            print(
                f"Single-workspace mode: this bot serves {served}; its key and allow-list "
                "include MODELSLAB_API_KEY and CANCEL_ALLOWED_USERS."
            )
    return EXIT_OK


async def cmd_rotate_keys(args: argparse.Namespace) -> int:
    """Re-encrypt stored secrets with the newest BOT_ENCRYPTION_KEY (old keys may then be removed)."""
    from bot.crypto import SecretBox

    settings = _settings(Purpose.ADMIN)
    box = SecretBox(settings.encryption_keys)
    if not box.enabled:
        print("BOT_ENCRYPTION_KEY is not set: there is nothing to rotate.", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = await open_store(settings)
    except StoreUnavailable as exc:
        print(f"Cannot rotate: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    try:
        count = await store.workspaces.rotate_ciphertexts(box.rotate)
    except ConfigError:
        raise
    except BotError as exc:
        print(f"Cannot rotate: {_sentence(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()
    print(f"Re-encrypted {count} stored secrets with the newest key.")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
