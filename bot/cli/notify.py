"""`python -m bot notify`: post a training notification with a Cancel button."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from slack_sdk.errors import SlackApiError, SlackClientError

from bot.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    _sentence,
    _settings,
    open_store,
    terminal_runtime,
)
from bot.config import Mode, Purpose, Settings
from bot.errors import BotError, ConfigError, InvalidTrainingId, StoreUnavailable


async def cmd_notify(args: argparse.Namespace) -> int:
    """Post a training notification with a Cancel button and record it in the store."""
    from bot.ids import validate_training_id
    from bot.model import Notification
    from bot.slack.delivery.renderer import record_permalink
    from bot.slack.messages.blocks import build_notification

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
    runtime = await terminal_runtime(settings, store)
    try:
        workspace_id = args.team or str(await runtime.workspaces.identify(fresh=True))
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
        client = runtime.clients.reporter_for(str(settings.slack_bot_token))
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
        await runtime.close()
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
