"""`python -m bot serve` / `socket` / `worker`: run the bot, or one of its roles."""

from __future__ import annotations

import argparse
import sys

from bot.cli.common import EXIT_FAILED, EXIT_OK, _sentence, open_store
from bot.config import Purpose, load_settings
from bot.errors import BotError, ConfigError, StoreUnavailable
from bot.logs import setup_logging


async def cmd_run(args: argparse.Namespace) -> int:
    """Run the bot: the HTTP server or Socket Mode (with or without the workers), or the workers."""
    from bot import runtime

    socket_mode = args.command == "socket"
    working = args.command == "worker"
    purpose = Purpose.SOCKET if socket_mode else Purpose.WORKER if working else Purpose.SERVE
    settings = load_settings(purpose)
    worker = not getattr(args, "no_worker", False)
    setup_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets)
    port = getattr(args, "port", None) or settings.port
    try:
        store = await open_store(settings)
    except StoreUnavailable as exc:
        print(f"Cannot start: {exc}. Check DATABASE_URL.", file=sys.stderr)
        return EXIT_FAILED
    try:
        if working:
            await runtime.work(settings, store, host="0.0.0.0", port=port)  # noqa: S104 - health routes for the platform
        elif socket_mode:
            await runtime.socket(settings, store, host="0.0.0.0", port=port, worker=worker)  # noqa: S104 - health routes for the platform
        else:
            await runtime.serve(settings, store, host=args.host, port=port or 3000, worker=worker)
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
