"""`python -m bot set-key|allow|deny|safety|workspaces|rotate-keys`: administer workspaces."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from bot.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    _sentence,
    _settings,
    open_store,
    resolve_team,
    terminal_runtime,
)
from bot.config import Mode, Purpose
from bot.errors import BotError, ConfigError, StoreUnavailable

if TYPE_CHECKING:
    from bot.runtime import Runtime


async def _admin_context(args: argparse.Namespace) -> Runtime:
    settings = _settings(Purpose.ADMIN)
    return await terminal_runtime(settings, await open_store(settings))


async def cmd_set_key(args: argparse.Namespace) -> int:
    """Read a ModelsLab key from stdin, check it, and store it encrypted for one workspace."""
    from bot.errors import InvalidKey, SecretStorageDisabled

    try:
        runtime = await _admin_context(args)
    except StoreUnavailable as exc:
        print(f"Cannot store the key: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    try:
        team = await resolve_team(runtime, args.team)
        if sys.stdin.isatty():
            key = getpass.getpass("ModelsLab API key (input hidden): ")
        else:
            key = sys.stdin.readline()
        hint = await runtime.workspaces.set_key(
            team, key, by=f"cli:{getpass.getuser()}", check=not args.no_check
        )
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
        await runtime.close()
    print(f"Stored the ModelsLab key for workspace {team} (ends …{hint}).")
    return EXIT_OK


async def cmd_allow(args: argparse.Namespace) -> int:
    """Add or remove allow-list entries of one workspace, saying who stays allowed and why."""
    from bot.config import is_allow_entry

    bad = [e for e in args.entries if not is_allow_entry(e)]
    if bad:
        print(f"Not a Slack user (U…/W…) or user-group (S…) id: {', '.join(bad)}.", file=sys.stderr)
        return EXIT_USAGE
    try:
        runtime = await _admin_context(args)
    except StoreUnavailable as exc:
        print(f"Cannot change the allow-list: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    try:
        team = await resolve_team(runtime, args.team)
        workspaces, store = runtime.workspaces, runtime.store
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
        await runtime.close()
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


async def cmd_safety(args: argparse.Namespace) -> int:
    """Show or change one workspace's undo window and two-person rule."""
    from bot.errors import InvalidSetting

    try:
        runtime = await _admin_context(args)
    except StoreUnavailable as exc:
        print(f"Cannot read the settings: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    try:
        team = await resolve_team(runtime, args.team)
        safety = await runtime.workspaces.set_safety(
            team,
            by=f"cli:{getpass.getuser()}",
            undo_seconds=args.undo,
            two_person=None if args.two_person is None else args.two_person == "on",
            approval_minutes=args.approval_minutes,
        )
    except InvalidSetting as exc:
        print(f"Not changed: {exc}.", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError:
        raise
    except BotError as exc:
        print(f"Cannot change the settings: {_sentence(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await runtime.close()
    undo = f"{safety.undo_seconds} s" if safety.undo_seconds else "off"
    two = (
        f"on (approval within {safety.approval_seconds // 60} min)" if safety.two_person else "off"
    )
    print(f"Workspace {team}: undo window {undo}; two-person rule {two}.")
    return EXIT_OK


async def cmd_workspaces(args: argparse.Namespace) -> int:
    """List workspaces: served, installed, key set or not, allow-list size — never a key."""
    try:
        runtime = await _admin_context(args)
    except StoreUnavailable as exc:
        print(f"Cannot list workspaces: {exc}.", file=sys.stderr)
        return EXIT_FAILED
    settings, store = runtime.settings, runtime.store
    try:
        rows = await store.workspaces.all()
        served = (
            await runtime.workspaces.identify(fresh=False, required=False)
            if settings.mode is Mode.SINGLE
            else None
        )
        served_list = await store.workspaces.allow_list(served) if served is not None else []
    finally:
        await runtime.close()
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
