"""``mandate users …``: cut a user off before their tokens expire, list the cut-offs, lift one.

Works against ``MANDATE_DATABASE_URL``, or the embedded dev database under ``MANDATE_DATA_DIR``
(attached if ``mandate dev`` runs, started and stopped again otherwise). Takes effect on the next
request of every replica: the revocation list is read where each request's principal is built.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from psycopg import Error as PsycopgError

from mandate import auth
from mandate._db import Pool, apply_migrations, open_pool
from mandate.errors import AppError
from mandate.service import sessions
from mandate.service.audit_cli import _database_url
from mandate.service.sessions import Revocation, restore_user, revoke_user, revoked_users
from mandate.service.settings import Settings

__all__ = ["add_users_commands"]


def add_users_commands(subparsers: Any) -> None:
    """Register ``mandate users revoke|list-revoked|restore`` on ``subparsers``."""
    parser = subparsers.add_parser("users", help="cut a user off before their tokens expire, or restore them")
    actions = parser.add_subparsers(dest="users_action", required=True, metavar="ACTION")

    revoke = actions.add_parser(
        "revoke", help="refuse every token of a user now, end their page sessions, discard their vaulted tokens"
    )
    _user_arguments(revoke)
    revoke.set_defaults(run=_sync(_revoke))

    listing = actions.add_parser("list-revoked", help="show the revocation list (restored entries too)")
    listing.set_defaults(run=_sync(_list))

    restore = actions.add_parser(
        "restore", help="accept the user's tokens issued after the cut-off again (older ones stay refused)"
    )
    _user_arguments(restore)
    restore.set_defaults(run=_sync(_restore))


def _user_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--issuer", required=True, type=_non_empty, help="the issuer that names the user (exact iss)")
    parser.add_argument("--subject", required=True, type=_non_empty, help="their `sub` at that issuer")


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _sync(command: Callable[[argparse.Namespace, Pool], Awaitable[int]]) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` on the configured database; failures become a message and exit 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(_on_database(command, args, Settings()))
        except AppError as exc:
            print(f"mandate users: {exc.message}", file=sys.stderr)
            return 2
        except (PsycopgError, OSError) as exc:
            print(f"mandate users: the database is unreachable ({type(exc).__name__}).", file=sys.stderr)
            return 2

    return run


async def _on_database(
    command: Callable[[argparse.Namespace, Pool], Awaitable[int]], args: argparse.Namespace, settings: Settings
) -> int:
    async with _database(settings) as pool:
        return await command(args, pool)


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Pool]:
    with _database_url(settings) as dsn:
        pool = await open_pool(dsn, max_size=2)
        try:
            # Revoking discards vaulted tokens, so the vault's table must exist too.
            await apply_migrations(pool, room="auth", migrations=auth.MIGRATIONS)
            await apply_migrations(pool, room="sessions", migrations=sessions.MIGRATIONS)
            yield pool
        finally:
            await pool.close()


def _operator() -> str:
    """Who runs the command, as recorded on the entry."""
    return f"cli:{getpass.getuser()}"


def _moment(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f %Z")


async def _revoke(args: argparse.Namespace, pool: Pool) -> int:
    entry = await revoke_user(pool, issuer=args.issuer, subject=args.subject, by=_operator())
    print(
        f"Revoked {entry.subject} at {entry.issuer}: every token of theirs is refused until restored, and "
        f"tokens issued before {_moment(entry.not_before)} for good; ended {entry.sessions_ended} page "
        f"sessions, discarded {entry.tokens_discarded} vaulted tokens."
    )
    return 0


async def _list(args: argparse.Namespace, pool: Pool) -> int:
    entries = await revoked_users(pool)
    if not entries:
        print("Nobody is revoked.")
    for entry in entries:
        print(_describe(entry))
    return 0


def _describe(entry: Revocation) -> str:
    line = (
        f"{entry.issuer} {entry.subject}: revoked {_moment(entry.revoked_at)} by {entry.revoked_by}; "
        f"tokens issued before {_moment(entry.not_before)} refused"
    )
    if entry.restored_at is None:
        return line + "; IN FORCE (all tokens refused)"
    return line + f"; restored {_moment(entry.restored_at)} by {entry.restored_by}"


async def _restore(args: argparse.Namespace, pool: Pool) -> int:
    entry = await restore_user(pool, issuer=args.issuer, subject=args.subject, by=_operator())
    if entry is None:
        print(f"mandate users: {args.subject} at {args.issuer} is not revoked.", file=sys.stderr)
        return 1
    print(
        f"Restored {entry.subject} at {entry.issuer}: tokens issued from {_moment(entry.not_before)} on are "
        f"accepted again; older ones stay refused."
    )
    return 0
