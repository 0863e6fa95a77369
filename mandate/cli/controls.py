"""``mandate controls check``: every control traced to its code and tests, and proven by mutation.

Reads ``docs/controls.md`` from a source checkout, checks every reference, runs the named tests
against Postgres and OpenFGA started for the purpose (never the configured database), and with
``--mutations`` shows that each control's mutation makes its tests fail. With ``--output`` it
writes the evidence bundle, which also records the versions, the verification of the configured
audit chain (``MANDATE_DATABASE_URL``, read only) and the configuration with secrets redacted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mandate.runtime.settings import Settings

if TYPE_CHECKING:
    from mandate.evidence import Control, EvidenceRun

__all__ = ["add_controls_commands"]

DEFAULT_JOBS = min(2, os.cpu_count() or 1)

CHECK_DESCRIPTION = """\
Check the controls table (docs/controls.md) of this source checkout, and run its tests.

  1. Every `module:qualname` it names imports, every file exists, every test node id is
     collected by pytest, and every mutation's snippet still occurs exactly once in its file.
  2. Every named test passes, run once on a copy of the tree (tracked and untracked files git
     does not ignore), against an embedded Postgres and OpenFGA started for this command.
  3. With --mutations: for each control, its mutation is applied to another copy and its tests
     are run there; they must fail. A mutation that leaves them green is a finding.

With --output DIR it writes DIR/evidence.json and DIR/evidence.md: the table with the result of
each test and mutation, the versions (Mandate, OpenFGA, SHA-256 of mandate/auth/model.fga), the
audit chain verification of MANDATE_DATABASE_URL if one is configured ("not run" otherwise),
and the configuration with every secret redacted. Exit 0 when everything holds, 1 when a test
fails, a mutation survives or a reference is broken, 2 when the check cannot run.

  mandate controls check                          # references and tests (a few minutes)
  mandate controls check --mutations --output evidence/"""


def add_controls_commands(subparsers: Any) -> None:
    """Register ``mandate controls check`` on ``subparsers``."""
    parser = subparsers.add_parser(
        "controls", help="trace each control to its code and tests, prove it by mutation, write the evidence",
        description="The controls of docs/controls.md, traced to the code that enforces them and the tests "
        "that prove them.",
    )
    actions = parser.add_subparsers(dest="controls_action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="check the table's references, run its tests (and mutations); write the evidence bundle",
        description=CHECK_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "--mutations", action="store_true",
        help="also apply each control's mutation to a copy of the tree; its tests must then fail",
    )
    check.add_argument("--output", type=Path, metavar="DIR", help="write evidence.json and evidence.md into DIR")
    check.add_argument(
        "--only", action="append", metavar="ID", help="check only this control (repeatable, e.g. --only CTL-01)"
    )
    check.add_argument(
        "--jobs", type=_positive_int, default=DEFAULT_JOBS, metavar="N",
        help=f"mutation runs at a time (default {DEFAULT_JOBS}: one per core, at most two)",
    )
    check.add_argument(
        "--timeout", type=_positive_float, default=900.0, metavar="SECONDS",
        help="longest one pytest run may take before it is stopped (default 900)",
    )
    check.add_argument(
        "--repo", type=Path, metavar="DIR", help="the source checkout (default: the one this Mandate runs from)"
    )
    check.add_argument("--table", type=Path, metavar="FILE", help="the controls table (default: DIR/docs/controls.md)")
    check.add_argument("--keep", action="store_true", help="keep the tree copies and the test logs, and say where")
    check.set_defaults(run=_check)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _fail(message: str) -> int:
    print(f"mandate controls check: {message}", file=sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> int:
    from mandate.evidence import (
        EvidenceError,
        EvidenceRun,
        check_references,
        collect_versions,
        read_controls,
        redacted_configuration,
        write_bundle,
    )
    from mandate.cli.main import CommandError, operator_settings

    repo = (args.repo or _default_repo()).resolve()
    if not (repo / "tests").is_dir() or not (repo / "mandate").is_dir():
        return _fail(f"{repo} is not a Mandate source checkout (no tests/ or mandate/); give --repo DIR.")
    if repo != _default_repo():
        print(f"Note: module:qualname references are imported from the running Mandate ({_default_repo()}); "
              f"the tests and mutations run on {repo}.", flush=True)
    try:
        settings = operator_settings(args)
        controls = read_controls(args.table or repo / "docs" / "controls.md")
    except CommandError as exc:
        return _fail(exc.message)
    except EvidenceError as exc:
        return _fail(exc.message)
    if args.only:
        unknown = sorted(set(args.only) - {control.id for control in controls})
        if unknown:
            return _fail(f"no control {', '.join(unknown)} in the table ({', '.join(c.id for c in controls)}).")
        controls = [control for control in controls if control.id in args.only]
    tools_dir = settings.tools_dir if settings.tools_dir.is_absolute() else repo / settings.tools_dir
    workdir = Path(tempfile.mkdtemp(prefix="mandate-evidence-")) if args.keep else None
    problems = check_references(controls, repo=repo, need_mutations=args.mutations)
    try:
        if problems:  # nothing to run until the table is right
            run = EvidenceRun(controls=(), problems=tuple(problems), mutations_run=False, seconds=0.0)
        else:
            print("Starting Postgres and OpenFGA for the test runs …", flush=True)
            run = _gather(args, controls, repo=repo, tools_dir=tools_dir, workdir=workdir)
    except EvidenceError as exc:
        return _fail(exc.message)
    except RuntimeError as exc:  # the embedded servers could not start (the message says why)
        return _fail(str(exc))
    for problem in run.problems:
        print(f"BROKEN REFERENCE {problem}")
    _print_summary(run)
    if args.output is not None:
        json_path, markdown_path = write_bundle(
            args.output,
            run=run,
            versions=collect_versions(repo, tools_dir=tools_dir),
            audit_chain=_audit_chain(settings),
            configuration=redacted_configuration(settings),
            command=_command_line(args),
        )
        print(f"Evidence: {markdown_path} and {json_path}")
    if workdir is not None:
        print(f"Tree copies and test logs kept under {workdir}")
    return 0 if run.ok else 1


def _gather(
    args: argparse.Namespace, controls: Sequence[Control], *, repo: Path, tools_dir: Path, workdir: Path | None
) -> EvidenceRun:
    from mandate.evidence import TestServers, gather_evidence

    with _test_servers(tools_dir) as (database_url, fga_api_url):
        return gather_evidence(
            controls, repo=repo, servers=TestServers(database_url=database_url, fga_api_url=fga_api_url),
            mutations=args.mutations, parallel=args.jobs, timeout=args.timeout, workdir=workdir, keep=args.keep,
            progress=lambda line: print(line, flush=True),
        )


def _command_line(args: argparse.Namespace) -> str:
    """The command as given (canonical form, for the bundle)."""
    words = ["mandate", "controls", "check"]
    if args.mutations:
        words.append("--mutations")
    for control_id in args.only or ():
        words += ["--only", control_id]
    words += ["--output", str(args.output)]
    return shlex.join(words)


def _print_summary(run: EvidenceRun) -> None:
    if not run.controls:
        return
    print()
    for result in run.controls:
        tests = "tests pass" if result.passed else "TESTS FAIL"
        mutations = ", ".join(f"{m.name} {m.status}" for m in result.mutations) if run.mutations_run else "not run"
        print(f"{result.control.id:<8} {tests:<10}  mutation: {mutations}")
    findings = [(r.control.id, m) for r in run.controls for m in r.mutations if m.status != "killed"]
    for control_id, mutation in findings:
        print(f"FINDING {control_id}: mutation {mutation.name} {mutation.status}: {mutation.removes}"
              + (f" ({mutation.detail})" if mutation.detail else ""))
    verdict = "proven by mutation" if run.mutations_run else "passing"
    proven = sum(r.proven if run.mutations_run else r.passed for r in run.controls)
    print(f"{proven} of {len(run.controls)} controls {verdict} ({run.seconds:.0f} s).")


def _default_repo() -> Path:
    import mandate

    return Path(mandate.__file__).resolve().parents[1]


@contextmanager
def _test_servers(tools_dir: Path) -> Iterator[tuple[str, str]]:
    """An embedded Postgres and OpenFGA in a temporary directory, for the test runs only."""
    import shutil

    from mandate.devstack.stack import DevStack
    from mandate.runtime.settings import DevSettings

    data_dir = Path(tempfile.mkdtemp(prefix="mandate-evidence-stack-"))
    settings = DevSettings(
        env="test", port=_free_port(), data_dir=data_dir, tools_dir=tools_dir, fga_port=_free_port(),
        database_url="", fga_api_url="",
    )
    stack = DevStack(settings, fga_grpc_port=_free_port())
    try:
        started = stack.start()
        yield started.database_url, started.fga_api_url
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _audit_chain(settings: Settings) -> dict[str, Any]:
    """The verification of the configured audit chain, or why it was not run (read only)."""
    if not settings.database_url:
        return {"status": "not run", "reason": "no database configured (MANDATE_DATABASE_URL)"}
    try:
        return asyncio.run(_verify_chain(settings))
    except Exception as exc:  # noqa: BLE001 - the bundle says why, whatever it was
        message = getattr(exc, "message", None) or type(exc).__name__
        return {"status": "not run", "reason": f"the audit chain could not be verified: {message}"}


async def _verify_chain(settings: Settings) -> dict[str, Any]:
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    from mandate.audit import verify_chains
    from mandate.evidence import chain_summary
    from mandate.runtime.signing import audit_signer

    key = audit_signer(settings).public_key
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        settings.database_url, min_size=1, max_size=2, open=False,
        # Read only, enforced by the server: gathering evidence never changes the audited database.
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row,
                "options": "-c default_transaction_read_only=on"},
    )
    await pool.open(wait=True, timeout=30)
    try:
        return chain_summary(await verify_chains(pool, keys=[key]))
    finally:
        await pool.close()
