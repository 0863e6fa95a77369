"""``mandate audit …``: verify, export, purge and erase the audit trail from the command line.

Settings follow the operator-command rule of :mod:`mandate.cli.main`: production needs
``MANDATE_DATABASE_URL`` (and the keys a command uses); with ``--dev`` or ``MANDATE_ENV=dev`` the
embedded dev database under ``MANDATE_DATA_DIR`` is used. Operators act under the pseudonym of their
OS login at issuer :data:`CLI_ISSUER`, resolvable by auditors like anyone's. The heavy modules are
imported when a command runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from mandate.cli.main import CommandError, dev_option, operator_settings, require_configuration

if TYPE_CHECKING:
    from mandate._db import Pool
    from mandate.audit import AuditLog, ChainReport
    from mandate.runtime.settings import Settings

__all__ = ["CLI_ISSUER", "add_audit_commands"]

CLI_ISSUER = "urn:mandate:cli"
"""Issuer under which operators running these commands are pseudonymized."""
OPEN_AFTER = timedelta(minutes=1)
"""A tool call started longer ago than this without an end is reported as open."""
_DURATION = re.compile(r"^(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}

Command = Callable[[argparse.Namespace, "Settings"], Awaitable[int]]

VERIFY_DESCRIPTION = """\
Recompute every tenant's hash chain and check its signed checkpoints; exit 1 if a chain is broken.

Each audit record contains the hash of the record before it, so a record changed, removed,
inserted or moved breaks the chain at that point. Every 100th record is also sealed by a
checkpoint signed with the audit signing key (Ed25519): records up to the last checkpoint are
"sealed", and rewriting them would need the private key. Newer records are protected by the
hash chain alone until the next checkpoint. Tool calls that started and never finished (a
crash) are listed under their tenant."""


def add_audit_commands(subparsers: Any) -> None:
    """Register ``mandate audit verify|export|purge|erase|public-key`` on ``subparsers``."""
    parser = subparsers.add_parser(
        "audit", help="verify, export, purge or erase the audit trail",
        description="Verify, export, purge or erase the audit trail (hash-chained, with signed checkpoints).",
    )
    actions = parser.add_subparsers(dest="audit_action", required=True, metavar="ACTION")
    dev = [dev_option()]
    raw = argparse.RawDescriptionHelpFormatter

    verify = actions.add_parser(
        "verify", parents=dev, help="check every chain and its signed checkpoints; exit 1 if broken",
        description=VERIFY_DESCRIPTION, formatter_class=raw,
    )
    verify.add_argument("--tenant", help="only this tenant (default: every tenant); an unknown tenant is an error")
    verify.add_argument(
        "--public-key", type=Path, metavar="FILE",
        help="Ed25519 public key (PEM, from `mandate audit public-key`) to check checkpoints with "
        "(default: the key of MANDATE_AUDIT_SIGNING_KEY, or the dev key)",
    )
    verify.set_defaults(run=_sync(_verify, needs=_verify_needs))

    export = actions.add_parser(
        "export", parents=dev, help="write records as JSON lines, in chain order (actors stay pseudonymous)",
        description="Write audit records as JSON lines, in chain order per tenant. Actors appear as "
        "pseudonyms (psn_…); auditors resolve them through the API.",
    )
    export.add_argument("--tenant", help="only this tenant (default: every tenant)")
    export.add_argument("--since", type=_moment, metavar="WHEN", help="ISO date or time, inclusive (UTC if no zone)")
    export.add_argument("--until", type=_moment, metavar="WHEN", help="ISO date or time, exclusive (UTC if no zone)")
    export.add_argument("--output", type=Path, metavar="FILE", help="file to write (default: standard output)")
    export.set_defaults(run=_sync(_export, needs=("MANDATE_DATABASE_URL",)))

    purge = actions.add_parser(
        "purge", parents=dev, help="remove records older than a retention period (recorded and signed)",
        description="Remove records older than a retention period. A signed `audit.purged` record is "
        "appended first, so the shortened chain still verifies.",
    )
    purge.add_argument(
        "--older-than", type=_duration, metavar="AGE",
        help="400d, 36h or 90m (default: MANDATE_AUDIT_RETENTION_DAYS days)",
    )
    purge.add_argument("--tenant", help="only this tenant (default: every tenant)")
    purge.set_defaults(run=_sync(_purge, needs=_KEYED))

    erase = actions.add_parser(
        "erase", parents=dev, help="erase a person's threads, checkpoints and vault entries (recorded)",
        description="Erase a person's threads, LangGraph checkpoints and vaulted tokens (GDPR erasure). "
        "Their audit records stay, under a pseudonym; the erasure itself is recorded.",
    )
    erase.add_argument("--issuer", required=True, help="the issuer that names the person (its exact `iss`)")
    erase.add_argument("--subject", required=True, help="their `sub` at that issuer")
    erase.set_defaults(run=_sync(_erase, needs=_KEYED))

    public = actions.add_parser(
        "public-key", parents=dev, help="print the key that verifies checkpoints (PEM), for auditors",
        description="Print the Ed25519 public key (PEM) that verifies the signed checkpoints; give it "
        "to auditors for `mandate audit verify --public-key FILE`.",
    )
    public.set_defaults(run=_sync(_public_key, needs=("MANDATE_AUDIT_SIGNING_KEY",)))


_KEYED = ("MANDATE_DATABASE_URL", "MANDATE_AUDIT_SIGNING_KEY", "MANDATE_PSEUDONYM_KEY")
"""What a command that appends signed records under an operator's pseudonym needs in production."""


def _verify_needs(args: argparse.Namespace) -> Sequence[str]:
    return ("MANDATE_DATABASE_URL",) if args.public_key else ("MANDATE_DATABASE_URL", "MANDATE_AUDIT_SIGNING_KEY")


def _sync(
    command: Command, *, needs: Sequence[str] | Callable[[argparse.Namespace], Sequence[str]]
) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` with the operator settings; failures become a message and exit 1 (broken chain) or 2."""

    def run(args: argparse.Namespace) -> int:
        import asyncio

        from psycopg import Error as PsycopgError

        from mandate.audit import AuditError

        settings = operator_settings(args)
        require_configuration(settings, *(needs(args) if callable(needs) else needs))
        try:
            return asyncio.run(command(args, settings))
        except AuditError as exc:
            print(f"mandate audit: {exc.message}", file=sys.stderr)
            return 1 if exc.code == "audit_chain_broken" else 2
        except (PsycopgError, OSError) as exc:
            print(f"mandate audit: the database is unreachable ({type(exc).__name__}: {_first_line(exc)}).",
                  file=sys.stderr)
            return 2

    return run


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Pool]:
    from mandate import audit
    from mandate._db import apply_migrations, open_pool
    from mandate.devstack.stack import attach_embedded

    with attach_embedded(settings) as attached:
        pool = await open_pool(attached.database_url, max_size=2)
        try:
            await apply_migrations(pool, room="audit", migrations=audit.MIGRATIONS)
            yield pool
        finally:
            await pool.close()


def _operator(settings: Settings, log: AuditLog) -> str:
    """The pseudonym of whoever runs the command, remembered so auditors can resolve it."""
    import getpass

    from mandate.audit import Pseudonymizer

    login = getpass.getuser()
    pseudonym = Pseudonymizer(settings.pseudonym_key.get_secret_value().encode())(CLI_ISSUER, login)
    log.remember_subject(pseudonym=pseudonym, issuer=CLI_ISSUER, subject=login)
    return pseudonym


async def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from mandate.audit import CHECKPOINT_EVERY, load_public_key, open_tool_calls, verify_chains
    from mandate.runtime.signing import audit_signer

    key = load_public_key(args.public_key.read_bytes()) if args.public_key else audit_signer(settings).public_key
    async with _database(settings) as pool:
        reports = await verify_chains(pool, keys=[key], tenant=args.tenant)
        if args.tenant is not None and not reports:
            raise CommandError(
                f"unknown tenant {args.tenant!r}: it has no audit records (names are case-sensitive; "
                "without --tenant every tenant is checked)."
            )
        if not reports:
            print("No audit records.")
        for report in reports:
            print(_describe(report, every=CHECKPOINT_EVERY))
            stale = await open_tool_calls(pool, tenant=report.tenant, started_before=datetime.now(UTC) - OPEN_AFTER)
            for record in stale:
                print(
                    f"  unfinished: {record.tool} call {record.tool_call_id} (thread {record.thread_id}, record "
                    f"{record.seq}) started {record.recorded_at:%Y-%m-%d %H:%M:%S} and has no success or failure "
                    "record: the process may have stopped mid-call; check the tool's side"
                )
    return 0 if all(report.ok for report in reports) else 1


def _describe(report: ChainReport, *, every: int) -> str:
    """One tenant's result in plain words (two lines when it is intact)."""
    if report.problem is not None:
        problem = report.problem
        where = f"record {problem.seq}" + (f" ({problem.record_id})" if problem.record_id else "")
        return f"{report.tenant}: BROKEN at {where}: {problem.message} [{problem.kind}]"
    if not report.records:
        return f"{report.tenant}: OK, no records."
    purged = " (earlier ones were removed by a recorded purge)" if (report.first_seq or 1) > 1 else ""
    head = (
        f"{report.tenant}: OK, records {report.first_seq}..{report.last_seq} intact{purged}: each matches its "
        "hash and links to the one before it."
    )
    pending = f"a checkpoint is signed every {every} records; until then only the hash chain protects them"
    checkpoints = f"{report.checkpoints} signed checkpoint{'' if report.checkpoints == 1 else 's'}"
    if report.sealed_through == 0:
        sealing = f"None sealed yet by a signed checkpoint ({pending})."
    elif report.unsealed == 0:
        sealing = f"All sealed: {checkpoints} verified, the last at record {report.sealed_through}."
    else:
        newer = "the newest record is" if report.unsealed == 1 else f"the {report.unsealed} newer records are"
        sealing = (
            f"Sealed through record {report.sealed_through} ({checkpoints} verified); {newer} not sealed yet "
            f"({pending})."
        )
    return f"{head}\n  {sealing}"


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    from mandate.audit import export_records

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
    from mandate.audit import AuditLog, purge_records
    from mandate.runtime.signing import audit_signer

    days = settings.audit_retention_days
    retention = args.older_than if args.older_than is not None else timedelta(days=days) if days else None
    if retention is None:
        raise CommandError("give --older-than or set MANDATE_AUDIT_RETENTION_DAYS.")
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
        print(
            f"{result.tenant}: purged {result.deleted} records (up to record {result.through_seq}); the purge is "
            f"recorded as {result.record_id}, so the shortened chain still verifies."
        )
    return 0


async def _erase(args: argparse.Namespace, settings: Settings) -> int:
    from mandate.audit import AuditLog, Pseudonymizer, erase_subject
    from mandate.runtime.signing import audit_signer

    pseudonym = Pseudonymizer(settings.pseudonym_key.get_secret_value().encode())(args.issuer, args.subject)
    async with _database(settings) as pool:
        log = AuditLog(pool=pool, signer=audit_signer(settings))
        actor = _operator(settings, log)
        result = await erase_subject(
            pool, log=log, pseudonym=pseudonym, issuer=args.issuer, subject=args.subject, actor=actor
        )
    if not result.tenants:
        print(f"Nothing held for {args.subject} at {args.issuer} (pseudonym {pseudonym}).")
        return 0
    print(
        f"Erased {args.subject} at {args.issuer} (pseudonym {pseudonym}): {result.threads} threads, "
        f"{result.checkpoint_rows} checkpoint rows, {result.vault_entries} vault entries; the erasure is "
        f"recorded in {', '.join(result.tenants)}."
    )
    return 0


async def _public_key(args: argparse.Namespace, settings: Settings) -> int:
    from mandate.audit import public_key_pem
    from mandate.runtime.signing import audit_signer

    print(public_key_pem(audit_signer(settings).public_key), end="")
    return 0


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


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
