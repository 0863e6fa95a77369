"""Ingestion: a document becomes chunks in pgvector and relationship tuples in OpenFGA.

Tuples and rows go in together or not at all. The document's rows are written in a database
transaction; while it is open (the rows invisible to every reader), the tuples the document does
not have yet are written to OpenFGA; then the transaction commits. If anything fails before the
commit (the rows, a tuple, the commit itself), the rows roll back and the tuples written for this
attempt are deleted again, so a failed document leaves nothing behind. Tuples it already had (an
earlier ingestion or a grant made elsewhere) are never withdrawn. Only a process killed between
the tuple write and the commit leaves tuples behind, and those grant nothing: there is nothing to
read until the document is ingested again (or ``--delete`` removes them). Chunks therefore never
exist without the tuples that say who may read them.

Each chunk carries its document's ACL tokens (see ``_acl``). Re-ingesting unchanged content stores
nothing new but still merges new sharing. Deleting removes the chunks first, then every tuple of
the document; a folder is deleted only once it holds no documents or folders.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_text_splitters import RecursiveCharacterTextSplitter
from psycopg import AsyncConnection
from psycopg import Error as PsycopgError

from mandate._db import Pool
from mandate.auth import AuthorizationUnavailableError, Authorizer, Relationship
from mandate.auth import vocabulary as fga
from mandate.retrieval import queries
from mandate.retrieval._acl import document_acl
from mandate.retrieval.directory import RelationshipDirectory
from mandate.retrieval.errors import IncompleteListingError, IngestionError

__all__ = ["DocumentSpec", "FolderSpec", "Ingestor"]

SHOWN_CONTENTS = 5
"""How many of a folder's documents and folders a refusal to delete it names."""
CHUNK_SIZE = 800
CHUNK_OVERLAP = 100
WRITE_BATCH = 100
"""Tuples per OpenFGA write (the server's default ``OPENFGA_MAX_TUPLES_PER_WRITE``)."""


def _placement(obj: str, *, tenant: str, parent: str | None, viewers: tuple[str, ...]) -> list[Relationship]:
    """Tuples putting ``obj`` (a document or folder) in its tenant, under its parent folder, shared with viewers."""
    tuples = [Relationship(fga.tenant(tenant), fga.TENANT, obj)]
    if parent:
        tuples.append(Relationship(fga.folder(parent), fga.PARENT, obj))
    tuples.extend(Relationship(viewer, fga.VIEWER, obj) for viewer in viewers)
    return tuples


@dataclass(frozen=True, kw_only=True, slots=True)
class DocumentSpec:
    """A document to ingest and who may read it."""

    doc_id: str
    """Stable id; also the OpenFGA object ``document:<doc_id>``."""
    tenant: str
    title: str
    text: str
    source: str
    """Where it came from (a path or URL), for citations."""
    folder: str | None = None
    """Folder id; the document inherits the folder's viewers."""
    viewers: tuple[str, ...] = ()
    """Direct grants as OpenFGA users: ``user:bob``, ``group:acme-finance#member``."""
    owners: tuple[str, ...] = ()
    """Owners (``user:bob``); an owner is a viewer."""

    def relationships(self) -> list[Relationship]:
        """The tuples that place this document in its tenant, folder and sharing."""
        obj = fga.document(self.doc_id)
        return [
            *_placement(obj, tenant=self.tenant, parent=self.folder, viewers=self.viewers),
            *(Relationship(owner, fga.OWNER, obj) for owner in self.owners),
        ]


@dataclass(frozen=True, kw_only=True, slots=True)
class FolderSpec:
    """A folder in a tenant, its parent folder and who may view it (documents inherit this)."""

    folder: str
    tenant: str
    parent: str | None = None
    viewers: tuple[str, ...] = ()
    """Grants as OpenFGA users: ``user:bob``, ``group:acme-legal#member``."""

    def relationships(self) -> list[Relationship]:
        """The tuples that place this folder in its tenant, under its parent, and share it."""
        return _placement(fga.folder(self.folder), tenant=self.tenant, parent=self.parent, viewers=self.viewers)


class Ingestor:
    """Writes documents into the vector store and their tuples into OpenFGA."""

    def __init__(
        self,
        *,
        pool: Pool,
        authz: Authorizer,
        embeddings: Embeddings,
        directory: RelationshipDirectory | None = None,
    ) -> None:
        """Wire the ingestor.

        Args:
            pool: The shared database pool.
            authz: Writes and deletes tuples.
            embeddings: Embeds chunks; the retriever must embed questions with the same model.
            directory: Reads a document's tuples so :meth:`delete` removes all of them.
        """
        self._pool = pool
        self._authz = authz
        self._embeddings = embeddings
        self._directory = directory
        self._splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)

    async def ensure_folder(self, spec: FolderSpec) -> None:
        """Write a folder's tuples (idempotent).

        Raises:
            AuthorizationUnavailableError: OpenFGA erred.
        """
        await self._write(writes=spec.relationships())

    async def ingest(self, spec: DocumentSpec) -> int:
        """Ingest one document; returns the number of chunks written (0 when unchanged).

        Rows and tuples are kept together or not at all (see the module docstring).

        Raises:
            IngestionError: The document is empty, belongs to another tenant, could not be
                embedded, or the database rejected it (the cause is chained); this attempt kept nothing.
            AuthorizationUnavailableError: Its tuples could not be written; this attempt kept nothing.
        """
        if not spec.text.strip():
            raise IngestionError(f"Document {spec.doc_id!r} has no text.")
        digest = hashlib.sha256(spec.text.encode()).hexdigest()
        try:
            async with self._pool.connection() as conn:
                stored = await _stored(conn, spec.doc_id, lock=False)
        except PsycopgError as exc:
            raise IngestionError(f"Document {spec.doc_id!r} could not be read back.") from exc
        _same_tenant(spec, stored)
        chunks = self._splitter.split_text(spec.text)
        unchanged = stored is not None and stored["content_sha256"] == digest
        vectors = None if unchanged else await self._embed(spec.doc_id, chunks)
        wanted = spec.relationships()
        had = set(await self._directory.read(fga.document(spec.doc_id))) if self._directory else set(wanted)
        written: list[Relationship] = []
        try:
            async with self._pool.connection() as conn, conn.transaction():
                stored = await _stored(conn, spec.doc_id, lock=True)
                _same_tenant(spec, stored)
                acl = sorted({*(stored["acl"] if stored else ()), *document_acl(wanted)})
                if stored is not None and stored["content_sha256"] == digest:
                    if acl != stored["acl"]:
                        await conn.execute(queries.UPDATE_DOCUMENT_ACL, {"doc_id": spec.doc_id, "acl": acl})
                        await conn.execute(queries.UPDATE_CHUNKS_ACL, {"doc_id": spec.doc_id, "acl": acl})
                    stored_chunks = 0
                else:
                    if vectors is None:  # changed by a concurrent ingest since the first read
                        vectors = await self._embed(spec.doc_id, chunks)
                    await self._store(conn, spec, digest=digest, acl=acl, chunks=chunks, vectors=vectors)
                    stored_chunks = len(chunks)
                # The rows are invisible until the commit below; their tuples go in first.
                await self._write_new([r for r in wanted if r not in had], written)
        except PsycopgError as exc:
            await self._withdraw(spec.doc_id, written)
            raise IngestionError(
                f"Document {spec.doc_id!r} could not be stored; this attempt left nothing behind."
            ) from exc
        except BaseException:
            await self._withdraw(spec.doc_id, written)
            raise
        return stored_chunks

    async def delete(self, doc_id: str) -> bool:
        """Delete a document: its chunks first, then every tuple whose object it is.

        Returns:
            Whether there was anything to delete.

        Raises:
            IngestionError: No directory is configured, or the database erred.
            AuthorizationUnavailableError: OpenFGA erred (the chunks may already be gone; run again).
        """
        if self._directory is None:
            raise IngestionError("Deleting a document needs the OpenFGA directory to find its tuples.")
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(queries.DELETE_DOCUMENT, {"doc_id": doc_id})
                existed = await cur.fetchone() is not None
        except PsycopgError as exc:
            raise IngestionError(f"Document {doc_id!r} could not be deleted.") from exc
        tuples = await self._directory.read(fga.document(doc_id))
        await self._write(deletes=tuples)
        return existed or bool(tuples)

    async def delete_folder(self, folder: str) -> bool:
        """Delete an empty folder: every tuple whose object it is (tenant, parent, viewers, agent grants).

        A folder that still holds documents or folders is refused, not emptied: deleting its
        contents is a separate, explicit step (:meth:`delete`, then this).

        Returns:
            Whether the folder had any tuples.

        Raises:
            IngestionError: No directory is configured, or the folder still holds documents or
                folders (the message names up to five of them).
            AuthorizationUnavailableError: OpenFGA erred.
        """
        if self._directory is None:
            raise IngestionError("Deleting a folder needs the OpenFGA directory to find its tuples.")
        contents: list[str] = []
        for object_type in ("document", "folder"):
            try:
                contents += await self._directory.list_objects(
                    user=fga.folder(folder), relation=fga.PARENT, object_type=object_type
                )
            except IncompleteListingError:
                raise IngestionError(
                    f"Folder {folder!r} still holds too many {object_type}s to list; delete them first."
                ) from None
        if contents:
            shown = ", ".join(sorted(contents)[:SHOWN_CONTENTS]) + (", …" if len(contents) > SHOWN_CONTENTS else "")
            raise IngestionError(
                f"Folder {folder!r} still holds {len(contents)} documents or folders ({shown}); "
                "delete them first."
            )
        tuples = await self._directory.read(fga.folder(folder))
        await self._write(deletes=tuples)
        return bool(tuples)

    async def _embed(self, doc_id: str, chunks: list[str]) -> list[list[float]]:
        """Embed the chunks; any failure of the embeddings provider becomes an :class:`IngestionError`."""
        try:
            return await self._embeddings.aembed_documents(chunks)
        except Exception as exc:  # the provider's own errors (HTTP, model, quota): reported with their cause
            raise IngestionError(f"Document {doc_id!r} could not be embedded.") from exc

    async def _write_new(self, tuples: Sequence[Relationship], written: list[Relationship]) -> None:
        """Write ``tuples`` in batches, noting each batch in ``written`` before it is sent.

        A batch that fails may still have been applied (a timeout after the server committed), so it
        is noted too; withdrawing a tuple that was never written is harmless.
        """
        for start in range(0, len(tuples), WRITE_BATCH):
            batch = tuples[start : start + WRITE_BATCH]
            written.extend(batch)
            await self._authz.write(writes=batch)

    async def _withdraw(self, doc_id: str, written: Sequence[Relationship]) -> None:
        """Delete the tuples a failed ingestion wrote.

        Raises:
            IngestionError: They could not all be deleted (the message says how to finish the job).
        """
        try:
            await self._write(deletes=written)
        except AuthorizationUnavailableError as exc:
            raise IngestionError(
                f"Document {doc_id!r} failed, and OpenFGA refused to withdraw the {len(written)} tuples "
                f"written for it; they grant nothing to read; remove them with `mandate ingest --delete {doc_id}`."
            ) from exc

    async def _store(
        self,
        conn: AsyncConnection,
        spec: DocumentSpec,
        *,
        digest: str,
        acl: list[str],
        chunks: list[str],
        vectors: list[list[float]],
    ) -> None:
        document = {
            "doc_id": spec.doc_id, "tenant": spec.tenant, "folder": spec.folder, "title": spec.title,
            "source": spec.source, "content_sha256": digest, "acl": acl,
        }
        await conn.execute(queries.UPSERT_DOCUMENT, document)
        await conn.execute(queries.DELETE_CHUNKS, {"doc_id": spec.doc_id})
        async with conn.cursor() as cur:
            await cur.executemany(
                queries.INSERT_CHUNK,
                [
                    {
                        "doc_id": spec.doc_id, "chunk_index": i, "tenant": spec.tenant, "acl": acl, "content": text,
                        "embedding": np.asarray(vector, dtype=np.float32),
                    }
                    for i, (text, vector) in enumerate(zip(chunks, vectors, strict=True))
                ],
            )

    async def _write(self, *, writes: Sequence[Relationship] = (), deletes: Sequence[Relationship] = ()) -> None:
        for start in range(0, len(writes), WRITE_BATCH):
            await self._authz.write(writes=writes[start : start + WRITE_BATCH])
        for start in range(0, len(deletes), WRITE_BATCH):
            await self._authz.write(deletes=deletes[start : start + WRITE_BATCH])


async def _stored(conn: AsyncConnection, doc_id: str, *, lock: bool) -> dict[str, object] | None:
    query = queries.SELECT_DOCUMENT_FOR_UPDATE if lock else queries.SELECT_DOCUMENT
    cur = await conn.execute(query, {"doc_id": doc_id})
    return await cur.fetchone()  # type: ignore[return-value]


def _same_tenant(spec: DocumentSpec, stored: dict[str, object] | None) -> None:
    """Refuse to move a document across tenants: its old tenant tuple would keep granting."""
    if stored is not None and stored["tenant"] != spec.tenant:
        raise IngestionError(f"Document {spec.doc_id!r} belongs to another tenant; delete it first.")
