"""Command line: `python -m bot [serve|socket|check|notify|cancel|…] …`."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from bot import version
from bot.cli import audit as audit_cli
from bot.cli.admin import cmd_allow, cmd_rotate_keys, cmd_safety, cmd_set_key, cmd_workspaces
from bot.cli.cancel import cmd_cancel
from bot.cli.check import cmd_check
from bot.cli.common import EXIT_USAGE
from bot.cli.notify import cmd_notify
from bot.cli.run import cmd_run
from bot.config import (
    DOTENV_FILE,
    Purpose,
    describe_mode,
    dotenv_path,
    mode_of,
    read_environment,
    run_purpose,
)
from bot.errors import ConfigError

COMMANDS = (
    "serve",
    "socket",
    "worker",
    "check",
    "notify",
    "cancel",
    "set-key",
    "allow",
    "deny",
    "safety",
    "workspaces",
    "rotate-keys",
    "audit",
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
    socket = sub.add_parser("socket", help="run in Socket Mode (needs SLACK_APP_TOKEN)")
    for runner in (serve, socket):
        runner.add_argument(
            "--no-worker",
            action="store_true",
            help="only verify, authorise, claim and ack; `python -m bot worker` works the queues "
            "(PostgreSQL)",
        )
    sub.add_parser(
        "worker",
        help="only work the queues (cancellations, reports, notifications, polls); "
        "/healthz and /metrics on $PORT when set",
    )
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
    transport.add_argument(
        "--worker",
        dest="purpose",
        action="store_const",
        const=Purpose.WORKER,
        help="check for `worker`",
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
    safety = sub.add_parser(
        "safety", help="show or change a workspace's undo window and two-person rule"
    )
    safety.add_argument(
        "--team", help="workspace id (T…); default: the bot's workspace (single mode)"
    )
    safety.add_argument(
        "--undo",
        type=_undo_seconds,
        metavar="SECONDS",
        help="hold each request this long with an Undo button (e.g. 10, 30, 60; off or 0: none)",
    )
    safety.add_argument(
        "--two-person",
        choices=("on", "off"),
        help="cancelling someone else's training needs the owner or a second allowed user",
    )
    safety.add_argument(
        "--approval-minutes", type=int, metavar="N", help="how long an approval may take (15)"
    )
    sub.add_parser(
        "workspaces", help="list workspaces: installed, key set, allow-list size (never a key)"
    )
    sub.add_parser(
        "rotate-keys", help="re-encrypt every stored secret with the newest BOT_ENCRYPTION_KEY"
    )
    audit_cli.add_parser(sub)
    return parser


def _undo_seconds(value: str) -> int:
    """--undo: seconds, or "off"."""
    if value.strip().lower() in ("off", "0"):
        return 0
    try:
        return int(value.strip().rstrip("s"))
    except ValueError:
        raise argparse.ArgumentTypeError("seconds such as 10, 30 or 60, or off") from None


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
        "worker": cmd_run,
        "check": cmd_check,
        "set-key": cmd_set_key,
        "allow": cmd_allow,
        "deny": cmd_allow,
        "safety": cmd_safety,
        "workspaces": cmd_workspaces,
        "rotate-keys": cmd_rotate_keys,
        "audit": audit_cli.cmd_audit,
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
