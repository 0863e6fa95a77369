"""The ``mandate ingest`` command: text, Markdown and PDF files into a tenant, or documents and folders out of it.

    mandate --dev ingest docs/ --tenant acme --folder acme-docs --folder-viewer group:acme-legal
    mandate ingest report.pdf --tenant acme --viewer 'user:dev|bob' --viewer group:acme-finance
    mandate ingest --delete acme/report.pdf --delete-folder acme-docs

Settings follow the operator-command rule of :mod:`mandate.cli.main`: production needs
``MANDATE_DATABASE_URL`` and ``MANDATE_FGA_API_URL``; with ``--dev`` or ``MANDATE_ENV=dev`` the
embedded stack under ``MANDATE_DATA_DIR`` is used. A file's document id is ``<tenant>/<its path
relative to --root>`` (default: the current directory), however the file is named on the command
line. A file that fails gets its own error line with the cause, and leaves nothing behind; the
others go in.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mandate.cli.main import CommandError, dev_option, operator_settings, require_configuration

if TYPE_CHECKING:
    from mandate.retrieval import Ingestor
    from mandate.runtime.settings import Settings

__all__ = ["add_ingest_command"]

_USER = r"user:[^\s#:@|]+\|[^\s#:@]+"
"""An issuer-qualified user, ``user:<issuer id>|<subject>`` (``user:dev|bob``)."""
_GROUP = r"group:[^\s#:@]+(#member)?"
_VIEWER = re.compile(rf"^({_USER}|{_GROUP})$")
_OWNER = re.compile(rf"^{_USER}$")

DESCRIPTION = """\
Ingest text, Markdown and PDF files (or every such file under a directory) into a tenant, with
who may read them; or delete documents and folders.

Document ids: a file's id is <tenant>/<its path relative to --root> (default --root: the current
directory), so a file has one id however it is named (through its directory or alone). Spaces,
#, :, @ and % in the path are percent-encoded (a b.md → a%20b.md). Run from the same directory
(or pass the same --root) to update documents instead of adding new ones.

Each file goes in whole or not at all: its chunks (pgvector) and its tuples (OpenFGA) are kept
together, and a file that fails prints the cause and leaves nothing behind.

Users are issuer-qualified, as in OpenFGA: user:<issuer id>|<subject>, for example user:dev|bob
for bob at the dev issuer. Groups: group:ID (its members)."""


def add_ingest_command(subparsers: Any) -> None:
    """Register ``mandate ingest`` on the ``mandate`` command's subparsers."""
    parser = subparsers.add_parser(
        "ingest",
        parents=[dev_option()],
        help="ingest text, Markdown and PDF files into a tenant, or delete documents and folders",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or directories to ingest")
    parser.add_argument("--tenant", help="tenant the documents belong to (required to ingest)")
    parser.add_argument(
        "--root", type=Path, metavar="DIR",
        help="directory document ids are relative to (default: the current directory)",
    )
    parser.add_argument("--folder", metavar="NAME", help="put the documents in this folder; they inherit its viewers")
    parser.add_argument(
        "--parent-folder", metavar="NAME", help="nest --folder under this folder (it inherits its viewers)"
    )
    parser.add_argument(
        "--folder-viewer", action="append", default=[], metavar="PRINCIPAL",
        help="share --folder with user:ISSUER|SUBJECT or group:ID (repeatable)",
    )
    parser.add_argument(
        "--viewer", action="append", default=[], metavar="PRINCIPAL",
        help="share each document with user:ISSUER|SUBJECT or group:ID (repeatable)",
    )
    parser.add_argument(
        "--owner", action="append", default=[], metavar="USER",
        help="owner of each document, user:ISSUER|SUBJECT (an owner may read it; repeatable)",
    )
    parser.add_argument("--doc-id", help="document id (one file only); default <tenant>/<path relative to --root>")
    parser.add_argument("--title", help="document title (one file only); default its first heading, PDF title or name")
    parser.add_argument(
        "--delete", action="append", default=[], metavar="DOC_ID",
        help="delete a document: its chunks and every tuple of it (repeatable)",
    )
    parser.add_argument(
        "--delete-folder", action="append", default=[], metavar="NAME",
        help="delete an empty folder and its sharing; refused while it holds documents or folders (repeatable; "
        "runs after --delete)",
    )
    parser.set_defaults(run=_cmd_ingest)


def _cmd_ingest(args: argparse.Namespace) -> int:
    problem = _usage_problem(args)
    if problem:
        raise CommandError(problem)
    settings = operator_settings(args)
    require_configuration(settings, "MANDATE_DATABASE_URL", "MANDATE_FGA_API_URL")

    import asyncio
    import logging

    from psycopg import Error as PsycopgError

    from mandate.auth import AuthorizationUnavailableError
    from mandate.devstack.stack import attach_embedded

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # broken PDFs get our one-line error instead
    try:
        with attach_embedded(settings, openfga=True) as attached:
            try:
                return asyncio.run(_run(attached, args))
            except AuthorizationUnavailableError as exc:
                print(f"mandate ingest: OpenFGA at {attached.fga_api_url} failed ({_cause(exc)}); stopped.",
                      file=sys.stderr)
                return 1
    except (PsycopgError, OSError) as exc:
        print(f"mandate ingest: cannot reach the database or OpenFGA ({type(exc).__name__}: {_first_line(exc)}).",
              file=sys.stderr)
        return 1
    except RuntimeError as exc:  # the embedded OpenFGA could not be built or started
        print(f"mandate ingest: the embedded OpenFGA did not start: {_first_line(exc)}", file=sys.stderr)
        return 1


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, if anything."""
    if not args.paths and not args.delete and not args.delete_folder:
        return "give files or directories to ingest, or --delete DOC_ID, or --delete-folder NAME."
    if args.paths and not args.tenant:
        return "--tenant is required to ingest."
    if (args.doc_id or args.title) and (len(args.paths) != 1 or Path(args.paths[0]).is_dir()):
        return "--doc-id and --title need exactly one file."
    if (args.parent_folder or args.folder_viewer) and not args.folder:
        return "--parent-folder and --folder-viewer need --folder."
    if args.root is not None and not args.root.is_dir():
        return f"--root {args.root} is not a directory."
    for principal in [*args.viewer, *args.folder_viewer]:
        if not _VIEWER.match(principal):
            return (f"{principal!r} is not a principal; use user:ISSUER|SUBJECT (users are issuer-qualified, "
                    "for example user:dev|bob) or group:ID.")
    for owner in args.owner:
        if not _OWNER.match(owner):
            return f"{owner!r} is not a user; owners are user:ISSUER|SUBJECT (for example user:dev|bob)."
    return None


def _principal(value: str) -> str:
    """``group:legal`` grants its members: ``group:legal#member``."""
    return f"{value}#member" if value.startswith("group:") and "#" not in value else value


@asynccontextmanager
async def _open_ingestor(settings: Settings) -> AsyncIterator[Ingestor]:
    """The ingestor on the configured Postgres and OpenFGA (migrations applied, model synced)."""
    from opentelemetry import trace

    from mandate import retrieval
    from mandate._db import apply_migrations, open_pool
    from mandate.retrieval import Ingestor, OpenFgaDirectory, build_embeddings
    from mandate.runtime.services import open_authorizer

    # The same settings as the service: ingesting with another embedder would make chunks unfindable.
    embeddings = build_embeddings(
        settings.embeddings_provider, model=settings.embeddings_model, base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value(),
    )
    async with open_authorizer(settings, tracer=trace.get_tracer(__name__)) as (authz, client):
        pool = await open_pool(settings.database_url, max_size=2)
        try:
            await apply_migrations(pool, room="retrieval", migrations=retrieval.MIGRATIONS)
            yield Ingestor(pool=pool, authz=authz, embeddings=embeddings, directory=OpenFgaDirectory(client=client))
        finally:
            await pool.close()


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from mandate.retrieval import IngestionError

    failed = 0
    async with _open_ingestor(settings) as ingestor:
        for doc_id in args.delete:
            found = await ingestor.delete(doc_id)
            print(f"{doc_id}: {'deleted' if found else 'not found'}")
        for folder in args.delete_folder:
            try:
                found = await ingestor.delete_folder(folder)
            except IngestionError as exc:
                print(f"error: {exc.message}", file=sys.stderr)
                failed += 1
                continue
            print(f"folder {folder}: {'deleted' if found else 'not found'}")
        if args.paths:
            failed += await _ingest_files(ingestor, args)
    return 1 if failed else 0


async def _ingest_files(ingestor: Ingestor, args: argparse.Namespace) -> int:
    """Ingest every file with a progress bar; returns how many failed."""
    from tqdm import tqdm

    from mandate.retrieval import DocumentSpec, FolderSpec, IngestionError, discover_files, document_id_for, load_file

    if args.folder:
        await ingestor.ensure_folder(
            FolderSpec(
                folder=args.folder, tenant=args.tenant, parent=args.parent_folder,
                viewers=tuple(_principal(p) for p in args.folder_viewer),
            )
        )
    root = (args.root or Path.cwd()).resolve()
    files = discover_files(args.paths)
    written = unchanged = failed = 0
    example = None
    # disable=None: a bar on a terminal, none in logs and pipes (the error lines and the summary stay).
    with tqdm(files, desc="ingest", unit="file", file=sys.stderr, disable=None) as bar:
        for path in bar:
            try:
                loaded = load_file(path)
                spec = DocumentSpec(
                    doc_id=args.doc_id or document_id_for(path, root=root, tenant=args.tenant),
                    tenant=args.tenant,
                    title=args.title or loaded.title,
                    text=loaded.text,
                    source=str(path),
                    folder=args.folder,
                    viewers=tuple(_principal(p) for p in args.viewer),
                    owners=tuple(args.owner),
                )
                chunks = await ingestor.ingest(spec)
            except IngestionError as exc:
                failed += 1
                message = _with_path(exc.message, path)
                if exc.__cause__ is not None:
                    message = f"{message.rstrip('.')} ({_cause(exc)})"
                bar.write(f"error: {message}", file=sys.stderr)
                continue
            example = example or spec.doc_id
            written += chunks > 0
            unchanged += chunks == 0
    print(f"{written} ingested, {unchanged} unchanged, {failed} failed (of {len(files)} files).")
    if example is not None and not args.doc_id:
        print(f"Document ids are {args.tenant}/<path relative to {root}>, for example {example}.")
    return failed


def _with_path(message: str, path: Path) -> str:
    """The message, prefixed with the file unless it names it already."""
    return message if message.startswith(str(path)) else f"{path}: {message}"


def _cause(exc: BaseException) -> str:
    """The first line of what caused ``exc`` (the root of its ``raise … from`` chain), with its type."""
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return f"{type(cause).__name__}: {_first_line(cause)}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
