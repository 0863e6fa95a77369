"""The arms answered in the same run, and the floors they are compared with.

- ANN floor: the k nearest chunks by HNSW with pgvector's defaults, no filter and no authorization
  (what an unauthorized vector search costs on the same data; its leaks are expected).
- anchor: the retriever as it was before the change feed (``anchor``): principals resolved and
  candidates checked in OpenFGA at higher consistency on every query.
- A, post-filter: the k nearest chunks of the tenant (HNSW, pgvector defaults), then one batch
  check of their documents; denied chunks are dropped (auth0-ai-langchain's FGARetriever).
- B, ListObjects pre-filter: the documents OpenFGA lists for the user (capped at 1,000 without a
  signal), then the k nearest chunks ``WHERE doc_id = ANY(...)``.
- C, Mandate: :class:`mandate.retrieval.AuthorizedRetriever`, as the service runs it.

By default the floor, the anchor and C run (``--arms`` adds A and B).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from langchain_core.embeddings import Embeddings
from openfga_sdk.client.models import ClientListObjectsRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.retrieval.anchor import AnchorRetriever
from bench.retrieval.corpus import AGENT, CHUNKS_PER_DOCUMENT, TENANT, BenchUser, Corpus
from bench.retrieval.store import BenchStore
from mandate.auth import Relationship
from mandate.retrieval import AuthorizedRetriever, SearchTuning

__all__ = [
    "ALL_ARMS", "ARMS", "AnchorArm", "Answer", "Floors", "ListObjectsArm", "MandateArm", "PostFilterArm", "UnfilteredAnnArm",
    "measure_floors",
]

NEAREST_IN_TENANT = """
SELECT doc_id, chunk_index FROM mandate.chunks WHERE tenant = %(tenant)s
ORDER BY embedding <=> %(query)s LIMIT %(k)s
"""
NEAREST_ANYWHERE = "SELECT doc_id, chunk_index FROM mandate.chunks ORDER BY embedding <=> %(query)s LIMIT %(k)s"
NEAREST_IN_DOCUMENTS = """
SELECT doc_id, chunk_index FROM mandate.chunks WHERE doc_id = ANY(%(documents)s::text[])
ORDER BY embedding <=> %(query)s LIMIT %(k)s
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    """What one arm returned for one question, and what it cost."""

    rows: list[int]
    """Corpus rows returned, nearest first."""
    seconds: float
    fga_calls: int
    sql_round_trips: int
    path: str = ""
    """Mandate's search path (exact, hnsw, exhaustive)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Floors:
    """Latencies no authorized query can beat, measured in the same run (p50, seconds)."""

    select_one: float
    batch_check_10: float
    read_changes: float = 0.0
    """One ReadChanges call that finds nothing new (what the change feed costs a query)."""


def _row(doc_id: str, chunk_index: int) -> int:
    return int(doc_id[1:]) * CHUNKS_PER_DOCUMENT + chunk_index


class QuestionEmbeddings(Embeddings):
    """Embeds ``"q<i>"`` as the corpus's question ``i`` (the retriever embeds text; the bench has vectors)."""

    def __init__(self, questions: np.ndarray) -> None:
        self._questions = questions

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Look each question up."""
        return [self._questions[int(t[1:])].tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        """Look one question up."""
        return self.embed_documents([text])[0]

    async def aembed_query(self, text: str) -> list[float]:
        """Look one question up, without a thread hop."""
        return self.embed_query(text)


class UnfilteredAnnArm:
    """The floor: HNSW with pgvector's defaults over every chunk, nothing filtered or checked."""

    name = "ANN floor"

    def __init__(self, store: BenchStore, corpus: Corpus) -> None:
        self._store, self._corpus = store, corpus

    async def answer(self, question: int, user: BenchUser, k: int) -> Answer:
        """The k nearest chunks of the whole store."""
        started = time.perf_counter()
        async with self._store.pool.connection() as conn:
            cur = await conn.execute(NEAREST_ANYWHERE, {"query": self._corpus.questions[question], "k": k}, prepare=False)
            rows = await cur.fetchall()
        kept = [_row(r["doc_id"], r["chunk_index"]) for r in rows]
        return Answer(rows=kept, seconds=time.perf_counter() - started, fga_calls=0, sql_round_trips=1)


class AnchorArm:
    """The retriever before the change feed (see ``anchor``)."""

    name = "anchor"

    def __init__(self, store: BenchStore, corpus: Corpus) -> None:
        self._retriever, self._corpus = AnchorRetriever(store), corpus

    async def answer(self, question: int, user: BenchUser, k: int) -> Answer:
        """What the old flow returns, with its calls."""
        started = time.perf_counter()
        found = await self._retriever.retrieve(
            self._corpus.questions[question], user=user.fga_user, agent=AGENT, tenant=TENANT, k=k
        )
        return Answer(
            rows=[_row(d, i) for d, i in found.rows], seconds=time.perf_counter() - started,
            fga_calls=found.fga_calls, sql_round_trips=found.sql_round_trips, path=found.path,
        )


class PostFilterArm:
    """Arm A."""

    name = "A post-filter"

    def __init__(self, store: BenchStore, corpus: Corpus) -> None:
        self._store, self._corpus = store, corpus

    async def answer(self, question: int, user: BenchUser, k: int) -> Answer:
        """The tenant's k nearest chunks, minus those whose document the check denies."""
        started = time.perf_counter()
        async with self._store.pool.connection() as conn:
            cur = await conn.execute(
                NEAREST_IN_TENANT, {"tenant": TENANT, "query": self._corpus.questions[question], "k": k}, prepare=False
            )
            rows = await cur.fetchall()
        documents = list(dict.fromkeys(r["doc_id"] for r in rows))
        questions = [q for d in documents for q in _read_questions(user.fga_user, d)]
        decisions = await self._store.authz.batch_check(questions)
        allowed = {d for i, d in enumerate(documents) if decisions[2 * i] and decisions[2 * i + 1]}
        kept = [_row(r["doc_id"], r["chunk_index"]) for r in rows if r["doc_id"] in allowed]
        return Answer(rows=kept, seconds=time.perf_counter() - started, fga_calls=1, sql_round_trips=1)


class ListObjectsArm:
    """Arm B."""

    name = "B ListObjects"

    def __init__(self, store: BenchStore, corpus: Corpus) -> None:
        self._store, self._corpus = store, corpus

    async def answer(self, question: int, user: BenchUser, k: int) -> Answer:
        """The k nearest chunks of the documents ListObjects returns."""
        started = time.perf_counter()
        listed = await self._store.client.list_objects(
            ClientListObjectsRequest(user=user.fga_user, relation="can_read", type="document")
        )
        documents = [obj.removeprefix("document:") for obj in listed.objects]
        async with self._store.pool.connection() as conn:
            cur = await conn.execute(
                NEAREST_IN_DOCUMENTS,
                {"documents": documents, "query": self._corpus.questions[question], "k": k},
                prepare=False,
            )
            rows = await cur.fetchall()
        kept = [_row(r["doc_id"], r["chunk_index"]) for r in rows]
        return Answer(rows=kept, seconds=time.perf_counter() - started, fga_calls=1, sql_round_trips=1)


class MandateArm:
    """Arm C: the retriever, with its span read back for the path and the calls it made."""

    name = "C Mandate"

    tuning: SearchTuning | None = None
    """Knobs for this run (``--tuning``); ``None``: the retriever's defaults."""

    def __init__(self, store: BenchStore, corpus: Corpus) -> None:
        self._spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self._spans))
        self._retriever = AuthorizedRetriever(
            pool=store.pool,
            authz=store.authz,
            embeddings=QuestionEmbeddings(corpus.questions),
            tracer=provider.get_tracer("bench"),
            min_similarity=-1.0,
            directory=store.directory,
            tuning=self.tuning,
        )

    async def answer(self, question: int, user: BenchUser, k: int) -> Answer:
        """What the retriever returns, with the calls its span reports."""
        self._spans.clear()
        started = time.perf_counter()
        found = await self._retriever.retrieve(f"q{question}", user=user.fga_user, tenant=TENANT, agent=AGENT, k=k)
        seconds = time.perf_counter() - started
        span = next(s for s in self._spans.get_finished_spans() if s.name == "mandate.retrieve")
        attributes = dict(span.attributes or {})
        return Answer(
            rows=[_row(c.doc_id, c.chunk_index) for c in found],
            seconds=seconds,
            fga_calls=int(attributes["mandate.retrieval.fga_calls"]),  # type: ignore[arg-type]
            sql_round_trips=int(attributes["mandate.retrieval.sql_round_trips"]),  # type: ignore[arg-type]
            path=str(attributes.get("mandate.retrieval.path", "none")),
        )


ALL_ARMS = (UnfilteredAnnArm, AnchorArm, PostFilterArm, ListObjectsArm, MandateArm)
ARMS = (UnfilteredAnnArm, AnchorArm, MandateArm)
"""The default arms: the floor, the anchor and Mandate."""


def _read_questions(user: str, doc_id: str) -> tuple[Relationship, Relationship]:
    obj = f"document:{doc_id}"
    return Relationship(user, "can_read", obj), Relationship(AGENT, "reader_agent", obj)


async def measure_floors(store: BenchStore, corpus: Corpus, user: BenchUser, *, repeats: int) -> Floors:
    """p50 of one ``SELECT 1`` round trip, one higher-consistency batch check of 10 and one empty ReadChanges."""
    select_one, batch, changes = [], [], []
    documents = [corpus.doc_id(d) for d in sorted(user.documents)[:5]]
    questions = [q for d in documents for q in _read_questions(user.fga_user, d)]
    for _ in range(repeats):
        started = time.perf_counter()
        async with store.pool.connection() as conn:
            await conn.execute("SELECT 1")
        select_one.append(time.perf_counter() - started)
        started = time.perf_counter()
        await store.authz.batch_check(questions, strong=True)
        batch.append(time.perf_counter() - started)
        started = time.perf_counter()
        await store.directory.read_changes(object_type=None, cursor="", start_time=datetime.now(UTC))
        changes.append(time.perf_counter() - started)
    return Floors(
        select_one=float(np.median(select_one)), batch_check_10=float(np.median(batch)), read_changes=float(np.median(changes))
    )
