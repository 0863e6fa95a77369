"""The ``mandate ingest`` command: text, Markdown and PDF files into a tenant, or documents out of it.

    mandate ingest docs/ --tenant acme --folder acme-contracts --folder-viewer group:acme-legal
    mandate ingest report.pdf --tenant acme --viewer user:bob --viewer group:acme-finance
    mandate ingest --delete acme/report.pdf

It talks to the Postgres and OpenFGA that ``MANDATE_DATABASE_URL`` and ``MANDATE_FGA_API_URL`` name
(next to ``make dev``: the embedded Postgres socket under ``.data/pg`` and ``http://127.0.0.1:8080``).
A file that cannot be read gets its own error line; the others go in.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from tqdm import tqdm

from mandate import retrieval
from mandate._db import apply_migrations, open_pool
from mandate.auth import AuthorizationUnavailableError, OpenFgaAuthorizer, ensure_store_and_model, open_fga_client
from mandate.retrieval import (
    DocumentSpec,
    FolderSpec,
    IngestionError,
    Ingestor,
    OpenFgaDirectory,
    build_embeddings,
    discover_files,
    document_id_for,
    load_file,
)
from mandate.service.runtime import MODEL_PATH
from mandate.service.settings import Settings

__all__ = ["add_ingest_command"]

_PRINCIPAL = re.compile(r"^(user:[^\s#:@]+|group:[^\s#:@]+(#member)?)$")
NOT_CONFIGURED = (
    "mandate ingest: set MANDATE_DATABASE_URL and MANDATE_FGA_API_URL to a running stack; next to `make dev`:\n"
    "  export MANDATE_DATABASE_URL=\"postgresql://postgres:@/mandate?host=$PWD/.data/pg\" "
    "MANDATE_FGA_API_URL=http://127.0.0.1:8080"
)


def add_ingest_command(subparsers: Any) -> None:
    """Register ``mandate ingest`` on the ``mandate`` command's subparsers."""
    parser = subparsers.add_parser(
        "ingest",
        help="ingest text, Markdown and PDF files into a tenant, or delete documents",
        description="Ingest files or directories (text, Markdown, PDF) with their sharing, or delete documents.",
    )
    parser.add_argument("paths", nargs="*", type=Path, help="files or directories to ingest")
    parser.add_argument("--tenant", help="tenant the documents belong to (required to ingest)")
    parser.add_argument("--folder", help="folder for the documents; they inherit its viewers")
    parser.add_argument("--parent-folder", help="nest --folder under this folder (it inherits its viewers)")
    parser.add_argument(
        "--folder-viewer", action="append", default=[], metavar="PRINCIPAL", help="grant --folder to user:ID or group:ID"
    )
    parser.add_argument(
        "--viewer", action="append", default=[], metavar="PRINCIPAL", help="share each document with user:ID or group:ID"
    )
    parser.add_argument("--owner", action="append", default=[], metavar="USER", help="owner of each document (user:ID)")
    parser.add_argument("--doc-id", help="document id (a single file only); default <tenant>/<relative path>")
    parser.add_argument("--title", help="document title (a single file only); default its heading or file name")
    parser.add_argument(
        "--delete", action="append", default=[], metavar="DOC_ID", help="delete a document: chunks and tuples"
    )
    parser.set_defaults(run=_cmd_ingest)


def _cmd_ingest(args: argparse.Namespace) -> int:
    problem = _usage_problem(args)
    if problem:
        print(f"mandate ingest: {problem}", file=sys.stderr)
        return 2
    settings = Settings()
    if not settings.database_url or not settings.fga_api_url:
        print(NOT_CONFIGURED, file=sys.stderr)
        return 2
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # broken PDFs get our one-line error instead
    try:
        return asyncio.run(_run(settings, args))
    except AuthorizationUnavailableError:
        print(f"mandate ingest: OpenFGA at {settings.fga_api_url} is unavailable; stopped.", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"mandate ingest: cannot reach the database or OpenFGA ({exc.__class__.__name__}).", file=sys.stderr)
        return 1


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments, if anything."""
    if not args.paths and not args.delete:
        return "give files or directories to ingest, or --delete DOC_ID."
    if args.paths and not args.tenant:
        return "--tenant is required to ingest."
    if (args.doc_id or args.title) and (len(args.paths) != 1 or Path(args.paths[0]).is_dir()):
        return "--doc-id and --title need exactly one file."
    if (args.parent_folder or args.folder_viewer) and not args.folder:
        return "--parent-folder and --folder-viewer need --folder."
    for principal in [*args.viewer, *args.folder_viewer, *args.owner]:
        if not _PRINCIPAL.match(principal) or (principal in args.owner and not principal.startswith("user:")):
            return f"{principal!r} is not a principal; use user:ID or group:ID (owners: user:ID)."
    return None


def _principal(value: str) -> str:
    """``group:legal`` grants its members: ``group:legal#member``."""
    return f"{value}#member" if value.startswith("group:") and "#" not in value else value


@asynccontextmanager
async def _open_ingestor(settings: Settings, args: argparse.Namespace) -> AsyncIterator[Ingestor]:
    """The ingestor on the configured Postgres and OpenFGA (migrations applied, model synced)."""
    api_token = settings.fga_api_token.get_secret_value() if settings.fga_api_token else None
    store_id, model_id = await ensure_store_and_model(
        api_url=settings.fga_api_url, store_name=settings.fga_store_name, model_path=MODEL_PATH,
        store_id=settings.fga_store_id, model_id=settings.fga_model_id, api_token=api_token,
    )
    # The same settings as the service: ingesting with another embedder would make chunks unfindable.
    embeddings = build_embeddings(
        settings.embeddings_provider, model=settings.embeddings_model, base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value(),
    )
    pool = await open_pool(settings.database_url, max_size=2)
    client = open_fga_client(api_url=settings.fga_api_url, store_id=store_id, model_id=model_id, api_token=api_token)
    try:
        await apply_migrations(pool, room="retrieval", migrations=retrieval.MIGRATIONS)
        authz = OpenFgaAuthorizer(client=client, model_id=model_id, tracer=trace.get_tracer(__name__))
        yield Ingestor(pool=pool, authz=authz, embeddings=embeddings, directory=OpenFgaDirectory(client=client))
    finally:
        await client.close()
        await pool.close()


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    async with _open_ingestor(settings, args) as ingestor:
        failed = 0
        for doc_id in args.delete:
            found = await ingestor.delete(doc_id)
            print(f"{doc_id}: {'deleted' if found else 'not found'}")
        if args.paths:
            failed = await _ingest_files(ingestor, args)
        return 1 if failed else 0


async def _ingest_files(ingestor: Ingestor, args: argparse.Namespace) -> int:
    """Ingest every file with a progress bar; returns how many failed."""
    if args.folder:
        await ingestor.ensure_folder(
            FolderSpec(
                folder=args.folder, tenant=args.tenant, parent=args.parent_folder,
                viewers=tuple(_principal(p) for p in args.folder_viewer),
            )
        )
    files = discover_files(args.paths)
    written = unchanged = failed = 0
    with tqdm(files, desc="ingest", unit="file", file=sys.stderr) as bar:
        for path in bar:
            try:
                loaded = load_file(path)
                root = next((Path(p) for p in args.paths if Path(p).is_dir() and path.is_relative_to(p)), path.parent)
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
                bar.write(f"error: {exc.message}", file=sys.stderr)
                continue
            written += chunks > 0
            unchanged += chunks == 0
    print(f"{written} ingested, {unchanged} unchanged, {failed} failed (of {len(files)} files).")
    return failed
