"""``mandate users …``: cut a user off before their tokens expire, list the cut-offs, lift one.

Settings follow the operator-command rule of :mod:`mandate.cli.main`: production needs
``MANDATE_DATABASE_URL``; with ``--dev`` or ``MANDATE_ENV=dev`` the embedded dev database under
``MANDATE_DATA_DIR`` is used. Takes effect on the next request of every replica: the revocation
list is read where each request's principal is built.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mandate.cli.main import dev_option, operator_settings, require_configuration

if TYPE_CHECKING:
    from mandate._db import Pool
    from mandate.runtime.sessions import Revocation
    from mandate.runtime.settings import Settings

__all__ = ["add_users_commands"]


def add_users_commands(subparsers: Any) -> None:
    """Register ``mandate users revoke|list-revoked|restore`` on ``subparsers``."""
    parser = subparsers.add_parser(
        "users", help="cut a user off before their tokens expire, or restore them",
        description="Cut a user off before their tokens expire (every replica refuses them from the next "
        "request on), list the cut-offs, or lift one.",
    )
    actions = parser.add_subparsers(dest="users_action", required=True, metavar="ACTION")
    dev = [dev_option()]

    revoke = actions.add_parser(
        "revoke", parents=dev,
        help="refuse every token of a user now, end their page sessions, discard their vaulted tokens",
        description="Refuse every token of a user from now on, end their approver-page sessions and "
        "discard the tokens of theirs the token vault holds.",
    )
    _user_arguments(revoke)
    revoke.set_defaults(run=_sync(_revoke))

    listing = actions.add_parser(
        "list-revoked", parents=dev, help="show the revocation list (restored entries too)",
        description="Show every revocation, in force or restored, with who did it and when.",
    )
    listing.set_defaults(run=_sync(_list))

    restore = actions.add_parser(
        "restore", parents=dev,
        help="accept the user's tokens issued after the cut-off again (older ones stay refused)",
        description="Lift a revocation: tokens issued after the cut-off are accepted again; tokens issued "
        "before it stay refused for good.",
    )
    _user_arguments(restore)
    restore.set_defaults(run=_sync(_restore))


def _user_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--issuer", required=True, type=_non_empty, help="the issuer that names the user (its exact `iss`)"
    )
    parser.add_argument("--subject", required=True, type=_non_empty, help="their `sub` at that issuer")


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _sync(command: Callable[[argparse.Namespace, Pool], Awaitable[int]]) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` on the operator settings' database; failures become a message and exit 2."""

    def run(args: argparse.Namespace) -> int:
        import asyncio

        from psycopg import Error as PsycopgError

        from mandate.errors import AppError

        settings = operator_settings(args)
        require_configuration(settings, "MANDATE_DATABASE_URL")
        try:
            return asyncio.run(_on_database(command, args, settings))
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
    from mandate import auth
    from mandate._db import apply_migrations, open_pool
    from mandate.runtime import sessions
    from mandate.devstack.stack import attach_embedded

    with attach_embedded(settings) as attached:
        pool = await open_pool(attached.database_url, max_size=2)
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
    from mandate.runtime.sessions import revoke_user

    entry = await revoke_user(pool, issuer=args.issuer, subject=args.subject, by=_operator())
    print(
        f"Revoked {entry.subject} at {entry.issuer}: every token of theirs is refused until restored, and "
        f"tokens issued before {_moment(entry.not_before)} for good; ended {entry.sessions_ended} page "
        f"sessions, discarded {entry.tokens_discarded} vaulted tokens."
    )
    return 0


async def _list(args: argparse.Namespace, pool: Pool) -> int:
    from mandate.runtime.sessions import revoked_users

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
    from mandate.runtime.sessions import restore_user

    entry = await restore_user(pool, issuer=args.issuer, subject=args.subject, by=_operator())
    if entry is None:
        print(f"mandate users: {args.subject} at {args.issuer} is not revoked.", file=sys.stderr)
        return 1
    print(
        f"Restored {entry.subject} at {entry.issuer}: tokens issued from {_moment(entry.not_before)} on are "
        f"accepted again; older ones stay refused."
    )
    return 0
