"""Where the benchmark runs: its own embedded stack (or given servers), one database and store per size.

Loading is a bench concern, so it is bulk: tuples in batches of 100, rows by COPY with the same ACL
tokens ingestion computes (``document_acl``), the HNSW index rebuilt once afterwards with its own
definition, statistics refreshed, and the ACL change log followed once so queries start current.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from openfga_sdk import OpenFgaClient
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from tqdm import tqdm

from bench.retrieval.corpus import AGENT, CHUNKS_PER_DOCUMENT, TENANT, BenchUser, Corpus
from mandate import retrieval
from mandate._db import Pool, apply_migrations, open_pool
from mandate.auth import OpenFgaAuthorizer, Relationship, ensure_store_and_model, open_fga_client
from mandate.retrieval import ChangeFeed, OpenFgaDirectory, document_acl
from mandate.devstack.stack import DevStack
from mandate.runtime.settings import DevSettings

__all__ = ["BenchStore", "open_store", "running_stack"]

MODEL_PATH = Path(__file__).resolve().parents[2] / "mandate" / "auth" / "model.fga"
WRITE_BATCH = 100
COPY_DOCUMENTS = "COPY mandate.documents (doc_id, tenant, folder, title, source, content_sha256, acl) FROM STDIN"
COPY_CHUNKS = "COPY mandate.chunks (doc_id, chunk_index, tenant, acl, content, embedding) FROM STDIN WITH (FORMAT BINARY)"
INDEX_DEFINITION = "SELECT pg_get_indexdef('mandate.chunks_embedding_hnsw'::regclass) AS definition"


@dataclass(frozen=True, kw_only=True, slots=True)
class BenchStore:
    """A loaded corpus: its pool and OpenFGA client, and what loading took."""

    pool: Pool
    client: OpenFgaClient
    authz: OpenFgaAuthorizer
    directory: OpenFgaDirectory
    load_seconds: dict[str, float]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_stack(*, database_url: str = "", fga_api_url: str = "") -> Iterator[tuple[str, str]]:
    """``(database_url, fga_api_url)``: the given servers, or an embedded stack in a temp directory."""
    if database_url and fga_api_url:
        yield database_url, fga_api_url
        return
    with tempfile.TemporaryDirectory(prefix="mandate-bench-") as data_dir:
        settings = DevSettings(env="test", data_dir=Path(data_dir), tools_dir=Path(".tools").absolute(), fga_port=_free_port())
        stack = DevStack(settings, fga_grpc_port=_free_port())
        resolved = stack.start()
        try:
            yield resolved.database_url, resolved.fga_api_url
        finally:
            stack.stop()


@asynccontextmanager
async def open_store(
    corpus: Corpus, users: list[BenchUser], *, database_url: str, fga_api_url: str, tracer: object
) -> AsyncIterator[BenchStore]:
    """A fresh database and OpenFGA store holding ``corpus`` and ``users``; both dropped on exit."""
    name = f"bench_{len(corpus.vectors)}_{uuid.uuid4().hex[:6]}"
    admin = make_conninfo(database_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(database_url)
    params["dbname"] = name
    store_id, model_id = await ensure_store_and_model(api_url=fga_api_url, store_name=name, model_path=MODEL_PATH)
    client = open_fga_client(api_url=fga_api_url, store_id=store_id, model_id=model_id)
    pool = await open_pool(make_conninfo(**params), max_size=6)  # type: ignore[arg-type]
    try:
        authz = OpenFgaAuthorizer(client=client, model_id=model_id, tracer=tracer)  # type: ignore[arg-type]
        directory = OpenFgaDirectory(client=client)
        timings = await _load(corpus, users, pool=pool, authz=authz, directory=directory)
        yield BenchStore(pool=pool, client=client, authz=authz, directory=directory, load_seconds=timings)
    finally:
        await pool.close()
        await client.delete_store()
        await client.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def _document_tuples(corpus: Corpus, users: list[BenchUser]) -> dict[int, list[Relationship]]:
    tuples = {
        d: [
            Relationship(f"tenant:{TENANT}", "tenant", f"document:{corpus.doc_id(d)}"),
            Relationship(f"folder:t{corpus.document_topic[d]}", "parent", f"document:{corpus.doc_id(d)}"),
        ]
        for d in range(corpus.documents)
    }
    for user in users:
        for d, userset in user.document_grants.items():
            tuples[d].append(Relationship(userset, "viewer", f"document:{corpus.doc_id(d)}"))
    return tuples


async def _load(
    corpus: Corpus, users: list[BenchUser], *, pool: Pool, authz: OpenFgaAuthorizer, directory: OpenFgaDirectory
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    timings: dict[str, float] = {}
    started = loop.time()
    await apply_migrations(pool, room="retrieval", migrations=retrieval.MIGRATIONS)
    per_document = _document_tuples(corpus, users)
    tuples = [Relationship(f"tenant:{TENANT}", "tenant", f"folder:t{t}") for t in range(corpus.topics)]
    tuples += [Relationship(AGENT, "reader_agent", f"tenant:{TENANT}")]
    tuples += [t for user in users for t in user.tuples] + [t for d in per_document.values() for t in d]
    batches = [tuples[i : i + WRITE_BATCH] for i in range(0, len(tuples), WRITE_BATCH)]
    semaphore = asyncio.Semaphore(4)

    async def write(batch: list[Relationship]) -> None:
        async with semaphore:
            await authz.write(writes=batch)

    with tqdm(total=len(batches), desc="tuples", unit="batch", leave=False) as bar:
        for done in asyncio.as_completed([write(b) for b in batches]):
            await done
            bar.update()
    timings["tuples"] = loop.time() - started
    started = loop.time()
    await asyncio.to_thread(_copy_rows, pool.conninfo, corpus, per_document)
    timings["rows_and_index"] = loop.time() - started
    started = loop.time()
    await ChangeFeed(pool=pool, directory=directory).sync()
    timings["acl_sync"] = loop.time() - started
    return timings


def _copy_rows(conninfo: str, corpus: Corpus, per_document: dict[int, list[Relationship]]) -> None:
    """COPY documents and chunks, then rebuild the HNSW index in one pass (much faster than inserts)."""
    from pgvector.psycopg import register_vector

    acl = {d: list(document_acl(per_document[d])) for d in range(corpus.documents)}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        register_vector(conn)
        definition = conn.execute(INDEX_DEFINITION).fetchone()[0]  # type: ignore[index]
        conn.execute("DROP INDEX mandate.chunks_embedding_hnsw")
        with conn.cursor().copy(COPY_DOCUMENTS) as copy:
            for d in range(corpus.documents):
                digest = hashlib.sha256(corpus.doc_id(d).encode()).hexdigest()
                folder = f"t{corpus.document_topic[d]}"
                copy.write_row([corpus.doc_id(d), TENANT, folder, corpus.doc_id(d), "bench", digest, acl[d]])
        with conn.cursor().copy(COPY_CHUNKS) as copy:
            copy.set_types(["text", "int4", "text", "text[]", "text", "vector"])
            for row in tqdm(range(len(corpus.vectors)), desc="chunks", unit="chunk", leave=False, miniters=5000):
                d = row // CHUNKS_PER_DOCUMENT
                chunk = [corpus.doc_id(d), row % CHUNKS_PER_DOCUMENT, TENANT, acl[d], corpus.text(row), corpus.vectors[row]]
                copy.write_row(chunk)
        # The graph must fit in memory while it is built (1M chunks need about 3 GB), or the build
        # slows down many times; one parallel worker uses the second core.
        conn.execute("SET maintenance_work_mem = '1GB'" if len(corpus.vectors) <= 200_000 else "SET maintenance_work_mem = '6GB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        conn.execute(definition)
        conn.execute("ANALYZE mandate.documents, mandate.chunks")
