"""Recall equals brute force over exactly the chunks OpenFGA authorizes, at f = 0.1 % and f = 50 %.

The corpus: 99 documents of 10 chunks and one of a single chunk (991 chunks) in one tenant, with
clustered vectors. ``half`` reads 50 % of the chunks (25 documents through a nested group granted
on each, 25 through a folder nested under a folder that group views); ``tiny`` reads the
one-chunk document (0.1 %) by a direct grant. A second tenant holds copies of the nearest chunks,
shared with both users, and must never appear. The truth comes from OpenFGA checks of every
document, not from ACL tokens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import pytest

from mandate.auth import Relationship
from mandate.retrieval import DocumentSpec, FolderSpec, OpenFgaDirectory, SearchTuning
from mandate.runtime.settings import Settings
from tests.retrieval.support import AGENT, Rooms, TableEmbeddings, clustered_unit_vectors, open_rooms, tenant_grants, unique

DOCUMENTS = 100
CHUNKS_PER_DOCUMENT = 10
ROWS = (DOCUMENTS - 1) * CHUNKS_PER_DOCUMENT + 1
QUESTIONS = 10
K = 10
PAD = " pad" * 120
"""Makes each row longer than half a chunk, so the splitter keeps one row per chunk."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Corpus:
    rooms: Rooms
    tenant: str
    vectors: np.ndarray
    questions: np.ndarray
    readable: dict[str, frozenset[int]]
    """Rows each user may read, according to OpenFGA checks of their documents."""

    def brute_force(self, user: str, question: int) -> set[tuple[str, int]]:
        rows = np.fromiter(sorted(self.readable[user]), dtype=np.int64)
        similarity = self.vectors[rows].astype(np.float64) @ self.questions[question].astype(np.float64)
        return {_chunk_key(self.tenant, int(row)) for row in rows[np.argsort(-similarity)[:K]]}


def _rows(doc: int) -> range:
    start = doc * CHUNKS_PER_DOCUMENT
    return range(start, min(start + CHUNKS_PER_DOCUMENT, ROWS))


def _chunk_key(tenant: str, row: int) -> tuple[str, int]:
    return f"{tenant}-{row // CHUNKS_PER_DOCUMENT:03d}", row % CHUNKS_PER_DOCUMENT


def _spec(tenant: str, doc: int, **sharing: object) -> DocumentSpec:
    text = "\n\n".join(f"v{row}{PAD}" for row in _rows(doc))
    return DocumentSpec(doc_id=f"{tenant}-{doc:03d}", tenant=tenant, title=f"doc {doc}", text=text, source="test", **sharing)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def corpus(stack_settings: Settings, fga_ids: tuple[str, str]) -> AsyncIterator[Corpus]:
    everything = clustered_unit_vectors(ROWS + QUESTIONS, clusters=12, seed=7)
    vectors, questions = everything[:ROWS], everything[ROWS:]
    async with open_rooms(stack_settings, fga_ids, embeddings=TableEmbeddings(vectors, questions)) as rooms:
        tenant, other = unique("rc"), unique("rx")
        outer, inner = f"group:{tenant}-outer", f"group:{tenant}-inner"
        await rooms.authz.write(
            writes=[
                *tenant_grants(tenant, "half", "tiny"),
                *tenant_grants(other),
                Relationship("user:half", "member", inner),
                Relationship(f"{inner}#member", "member", outer),
            ]
        )
        await rooms.ingestor.ensure_folder(FolderSpec(folder=f"{tenant}-top", tenant=tenant, viewers=(f"{outer}#member",)))
        await rooms.ingestor.ensure_folder(FolderSpec(folder=f"{tenant}-sub", tenant=tenant, parent=f"{tenant}-top"))
        for doc in range(DOCUMENTS):
            if doc < 25:
                await rooms.ingestor.ingest(_spec(tenant, doc, viewers=(f"{outer}#member",)))
            elif doc < 50:
                await rooms.ingestor.ingest(_spec(tenant, doc, folder=f"{tenant}-sub"))
            else:
                await rooms.ingestor.ingest(_spec(tenant, doc, viewers=("user:tiny",) if doc == DOCUMENTS - 1 else ()))
        nearest = sorted({int(np.argmax(vectors @ q)) for q in questions})
        decoy = "\n\n".join(f"v{row}{PAD}" for row in nearest)
        await rooms.ingestor.ingest(
            DocumentSpec(doc_id=f"{other}-decoy", tenant=other, title="decoy", text=decoy, source="test",
                         viewers=("user:half", "user:tiny", f"{outer}#member"))
        )
        readable = {user: await _readable_rows(rooms, tenant, user) for user in ("half", "tiny")}
        yield Corpus(rooms=rooms, tenant=tenant, vectors=vectors, questions=questions, readable=readable)


async def _readable_rows(rooms: Rooms, tenant: str, user: str) -> frozenset[int]:
    checks = [Relationship(f"user:{user}", "can_read", f"document:{tenant}-{doc:03d}") for doc in range(DOCUMENTS)]
    decisions = await rooms.authz.batch_check(checks)
    return frozenset(row for doc, allowed in enumerate(decisions) if allowed for row in _rows(doc))


async def _paths_if_recall_equals_brute_force(corpus: Corpus, user: str, **options: object) -> str:
    retriever = corpus.rooms.make_retriever(min_similarity=-1.0, **options)
    paths = set()
    for question in range(QUESTIONS):
        found = await retriever.retrieve(f"q{question}", user=f"user:{user}", tenant=corpus.tenant, agent=AGENT, k=K)
        assert {(c.doc_id, c.chunk_index) for c in found} == corpus.brute_force(user, question)
        assert [c.similarity for c in found] == sorted((c.similarity for c in found), reverse=True)
        paths.add(corpus.rooms.last_retrieval()["mandate.retrieval.path"])
    return "/".join(sorted(paths))


def test_corpus_selectivity_is_half_and_a_thousandth(corpus: Corpus) -> None:
    assert len(corpus.readable["half"]) / ROWS == pytest.approx(0.5, abs=0.01)
    assert len(corpus.readable["tiny"]) == 1 and ROWS == 991


@pytest.mark.parametrize("user", ["half", "tiny"])
async def test_retrieve_recall_equals_brute_force_on_token_path(corpus: Corpus, user: str) -> None:
    assert await _paths_if_recall_equals_brute_force(corpus, user) == "exact"


async def test_retrieve_recall_equals_brute_force_on_hnsw_path_at_half(corpus: Corpus) -> None:
    assert await _paths_if_recall_equals_brute_force(corpus, "half", tuning=SearchTuning(exact_limit=0)) == "hnsw"


@pytest.mark.parametrize("user", ["half", "tiny"])
async def test_retrieve_recall_equals_brute_force_without_directory(corpus: Corpus, user: str) -> None:
    assert await _paths_if_recall_equals_brute_force(corpus, user, directory=None) == "exhaustive"


async def test_retrieve_with_capped_listing_takes_exhaustive_path(corpus: Corpus) -> None:
    capped = OpenFgaDirectory(client=corpus.rooms.client, max_results=2)
    assert await _paths_if_recall_equals_brute_force(corpus, "half", directory=capped) == "exhaustive"
