"""``mandate audit …``: verify, export, purge and erase the audit trail from the command line.

Works against ``MANDATE_DATABASE_URL``, or the embedded dev database under ``MANDATE_DATA_DIR``
(attached if ``mandate dev`` runs, started and stopped again otherwise). Operators act under the
pseudonym of their OS login at issuer :data:`CLI_ISSUER`, resolvable by auditors like anyone's.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from psycopg import Error as PsycopgError

from mandate import audit
from mandate._db import Pool, apply_migrations, open_pool
from mandate.audit import (
    DEV_SIGNING_KEY_FILE,
    AuditError,
    AuditLog,
    ChainReport,
    CheckpointSigner,
    Pseudonymizer,
    erase_subject,
    export_records,
    load_public_key,
    load_signing_key,
    open_tool_calls,
    public_key_pem,
    purge_records,
    verify_chains,
)
from mandate.service._postgres import EmbeddedPostgres
from mandate.service.devstack import APP_DATABASE
from mandate.service.settings import Settings

__all__ = ["CLI_ISSUER", "add_audit_commands", "audit_signer"]

CLI_ISSUER = "urn:mandate:cli"
"""Issuer under which operators running these commands are pseudonymized."""
OPEN_AFTER = timedelta(minutes=1)
"""A tool call started longer ago than this without an end is reported as open."""
_DURATION = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def audit_signer(settings: Settings) -> CheckpointSigner:
    """The checkpoint signer from ``MANDATE_AUDIT_SIGNING_KEY``, or the dev key under ``data_dir``.

    Raises:
        AuditKeyError: No usable key (in prod a configured key is required).
    """
    configured = settings.audit_signing_key
    pem = configured.get_secret_value().encode() if configured else None
    dev_path = None if settings.env == "prod" else Path(settings.data_dir) / DEV_SIGNING_KEY_FILE
    return CheckpointSigner(load_signing_key(pem, dev_key_path=dev_path))


def add_audit_commands(subparsers: Any) -> None:
    """Register ``mandate audit verify|export|purge|erase|public-key`` on ``subparsers``."""
    parser = subparsers.add_parser("audit", help="verify, export, purge or erase the audit trail")
    actions = parser.add_subparsers(dest="audit_action", required=True, metavar="ACTION")

    verify = actions.add_parser("verify", help="recompute every chain and check its checkpoints; exit 1 if broken")
    verify.add_argument("--tenant", help="only this tenant (default: all)")
    verify.add_argument("--public-key", type=Path, help="Ed25519 public key (PEM) to check checkpoints with")
    verify.set_defaults(run=_sync(_verify))

    export = actions.add_parser("export", help="write records as JSON lines, in chain order (actors stay pseudonymous)")
    export.add_argument("--tenant", help="only this tenant (default: all)")
    export.add_argument("--since", type=_moment, help="ISO date or time, inclusive")
    export.add_argument("--until", type=_moment, help="ISO date or time, exclusive")
    export.add_argument("--output", type=Path, help="file to write (default: stdout)")
    export.set_defaults(run=_sync(_export))

    purge = actions.add_parser("purge", help="remove records older than a retention period (recorded and signed)")
    purge.add_argument(
        "--older-than", type=_duration, help="400d, 36h or 90m (default: MANDATE_AUDIT_RETENTION_DAYS days)"
    )
    purge.add_argument("--tenant", help="only this tenant (default: all)")
    purge.set_defaults(run=_sync(_purge))

    erase = actions.add_parser("erase", help="erase a person's threads, checkpoints and vault entries (recorded)")
    erase.add_argument("--issuer", required=True, help="the issuer that names the person")
    erase.add_argument("--subject", required=True, help="their `sub` at that issuer")
    erase.set_defaults(run=_sync(_erase))

    public = actions.add_parser("public-key", help="print the key that verifies checkpoints (PEM), for auditors")
    public.set_defaults(run=_sync(_public_key))


def _sync(command: Callable[[argparse.Namespace, Settings], Awaitable[int]]) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` with fresh settings; failures become a message and exit 1 (broken chain) or 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(command(args, Settings()))
        except AuditError as exc:
            print(f"mandate audit: {exc.message}", file=sys.stderr)
            return 1 if exc.code == "audit_chain_broken" else 2
        except (PsycopgError, OSError) as exc:
            print(f"mandate audit: the database is unreachable ({type(exc).__name__}).", file=sys.stderr)
            return 2

    return run


@contextmanager
def _database_url(settings: Settings) -> Iterator[str]:
    if settings.database_url:
        yield settings.database_url
        return
    postgres = EmbeddedPostgres(Path(settings.data_dir))
    already_running = postgres.pid is not None
    try:
        yield postgres.ensure_database(APP_DATABASE)
    finally:
        if not already_running:
            postgres.stop()


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Pool]:
    with _database_url(settings) as dsn:
        pool = await open_pool(dsn, max_size=2)
        try:
            await apply_migrations(pool, room="audit", migrations=audit.MIGRATIONS)
            yield pool
        finally:
            await pool.close()


def _operator(settings: Settings, log: AuditLog) -> str:
    """The pseudonym of whoever runs the command, remembered so auditors can resolve it."""
    login = getpass.getuser()
    pseudonym = Pseudonymizer(settings.pseudonym_key.get_secret_value().encode())(CLI_ISSUER, login)
    log.remember_subject(pseudonym=pseudonym, issuer=CLI_ISSUER, subject=login)
    return pseudonym


async def _verify(args: argparse.Namespace, settings: Settings) -> int:
    key = load_public_key(args.public_key.read_bytes()) if args.public_key else audit_signer(settings).public_key
    async with _database(settings) as pool:
        reports = await verify_chains(pool, keys=[key], tenant=args.tenant)
        if not reports:
            print("No audit records.")
        for report in reports:
            print(_describe(report))
            stale = await open_tool_calls(pool, tenant=report.tenant, started_before=datetime.now(UTC) - OPEN_AFTER)
            for record in stale:
                print(
                    f"  open: {record.tool} call {record.tool_call_id} started {record.recorded_at:%Y-%m-%d %H:%M:%S}"
                    f" (record {record.seq}, thread {record.thread_id}) never finished"
                )
    return 0 if all(report.ok for report in reports) else 1


def _describe(report: ChainReport) -> str:
    if report.problem is not None:
        problem = report.problem
        where = f"record {problem.seq}" + (f" ({problem.record_id})" if problem.record_id else "")
        return f"{report.tenant}: BROKEN at {where}: {problem.message} [{problem.kind}]"
    span = f"records {report.first_seq}..{report.last_seq}" if report.records else "no records"
    return (
        f"{report.tenant}: OK, {span}, {report.checkpoints} checkpoints checked, "
        f"sealed through {report.sealed_through}, {report.unsealed} unsealed"
    )


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    async with _database(settings) as pool:
        with _output(args.output) as out:
            count = 0
            async for record in export_records(pool, tenant=args.tenant, since=args.since, until=args.until):
                out.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
                count += 1
    print(f"Exported {count} records.", file=sys.stderr)
    return 0


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8") as handle:
        yield handle


async def _purge(args: argparse.Namespace, settings: Settings) -> int:
    days = settings.audit_retention_days
    retention = args.older_than if args.older_than is not None else timedelta(days=days) if days else None
    if retention is None:
        print("mandate audit purge: give --older-than or set MANDATE_AUDIT_RETENTION_DAYS.", file=sys.stderr)
        return 2
    signer = audit_signer(settings)
    before = datetime.now(UTC) - retention
    async with _database(settings) as pool:
        log = AuditLog(pool=pool, signer=signer)
        actor = _operator(settings, log)
        results = await purge_records(
            pool, log=log, keys=[signer.public_key], before=before, actor=actor, tenant=args.tenant
        )
    if not results:
        print(f"Nothing older than {before:%Y-%m-%d %H:%M:%S} UTC.")
    for result in results:
        print(f"{result.tenant}: purged {result.deleted} records (through {result.through_seq}); "
              f"recorded as {result.record_id}")
    return 0


async def _erase(args: argparse.Namespace, settings: Settings) -> int:
    pseudonym = Pseudonymizer(settings.pseudonym_key.get_secret_value().encode())(args.issuer, args.subject)
    async with _database(settings) as pool:
        log = AuditLog(pool=pool, signer=audit_signer(settings))
        actor = _operator(settings, log)
        result = await erase_subject(
            pool, log=log, pseudonym=pseudonym, issuer=args.issuer, subject=args.subject, actor=actor
        )
    if not result.tenants:
        print(f"Nothing held for {pseudonym}.")
        return 0
    print(
        f"Erased {pseudonym}: {result.threads} threads, {result.checkpoint_rows} checkpoint rows, "
        f"{result.vault_entries} vault entries; recorded in {', '.join(result.tenants)}."
    )
    return 0


async def _public_key(args: argparse.Namespace, settings: Settings) -> int:
    print(public_key_pem(audit_signer(settings).public_key), end="")
    return 0


def _duration(text: str) -> timedelta:
    match = _DURATION.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError("use a number and d, h or m, for example 400d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("use an ISO date or time, for example 2026-01-31") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
