"""Helpers for retrieval tests: real services on the session stack, and a fixed-vector embedder."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from langchain_core.embeddings import Embeddings
from openfga_sdk import OpenFgaClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate import retrieval
from mandate._db import Pool, apply_migrations, open_pool
from mandate.auth import OpenFgaAuthorizer, Relationship, open_fga_client
from mandate.retrieval import AuthorizedRetriever, Ingestor, LexicalEmbeddings, OpenFgaDirectory
from mandate.runtime.settings import Settings

AGENT = "agent:retriever"


@dataclass(frozen=True, kw_only=True, slots=True)
class Rooms:
    """Real retrieval services and the spans they emit."""

    pool: Pool
    client: OpenFgaClient
    authz: OpenFgaAuthorizer
    directory: OpenFgaDirectory
    ingestor: Ingestor
    retriever: AuthorizedRetriever
    spans: InMemorySpanExporter
    make_retriever: Callable[..., AuthorizedRetriever]
    """``make_retriever(directory=None, tuning=…)``: another retriever on the same services."""

    def last_retrieval(self) -> dict[str, Any]:
        """Attributes of the latest ``mandate.retrieve`` span."""
        found = [s for s in self.spans.get_finished_spans() if s.name == "mandate.retrieve"]
        return dict(found[-1].attributes or {})


@asynccontextmanager
async def open_rooms(
    settings: Settings,
    fga_ids: tuple[str, str],
    *,
    embeddings: Embeddings | None = None,
    fga_url: str | None = None,
) -> AsyncIterator[Rooms]:
    """Pool, authorizer, directory, ingestor and retriever (``fga_url`` may name a dead port)."""
    store_id, model_id = fga_ids
    pool = await open_pool(settings.database_url, max_size=4)
    await apply_migrations(pool, room="retrieval", migrations=retrieval.MIGRATIONS)
    client = open_fga_client(api_url=fga_url or settings.fga_api_url, store_id=store_id, model_id=model_id)
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = provider.get_tracer("tests.retrieval")
    authz = OpenFgaAuthorizer(client=client, model_id=model_id, tracer=tracer)
    directory = OpenFgaDirectory(client=client)
    embedder = embeddings or LexicalEmbeddings()

    def make_retriever(**options: Any) -> AuthorizedRetriever:
        options = {"directory": directory, "embeddings": embedder, **options}
        return AuthorizedRetriever(pool=pool, authz=authz, tracer=tracer, **options)

    try:
        yield Rooms(
            pool=pool,
            client=client,
            authz=authz,
            directory=directory,
            ingestor=Ingestor(pool=pool, authz=authz, embeddings=embedder, directory=directory),
            retriever=make_retriever(),
            spans=spans,
            make_retriever=make_retriever,
        )
    finally:
        await client.close()
        await pool.close()
        provider.shutdown()


def unique(prefix: str) -> str:
    """A fresh id, so tests sharing the session's store and database never meet."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def tenant_grants(tenant: str, *users: str, agent: str = AGENT) -> list[Relationship]:
    """Membership of ``users`` in ``tenant`` and a tenant-wide grant for ``agent``."""
    return [Relationship(f"user:{u}", "member", f"tenant:{tenant}") for u in users] + [
        Relationship(agent, "reader_agent", f"tenant:{tenant}")
    ]


class TableEmbeddings(Embeddings):
    """Embeds a text starting ``"v<i>"`` as row ``i`` of ``vectors``, ``"q<i>"`` as row ``i`` of ``questions``."""

    def __init__(self, vectors: np.ndarray, questions: np.ndarray) -> None:
        self._tables = {"v": vectors, "q": questions}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Look each text up."""
        return [self._tables[t[0]][int(t.split()[0][1:])].tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        """Look the question up."""
        return self.embed_documents([text])[0]


def clustered_unit_vectors(count: int, *, clusters: int, seed: int, dim: int = 384) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres (a stand-in for topical embeddings)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    points = centres[rng.integers(0, clusters, count)] + 0.8 * rng.standard_normal((count, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@dataclass(kw_only=True)
class EmbeddingsDouble:
    """A loopback stand-in for an OpenAI-compatible ``/v1/embeddings`` endpoint (lexical vectors)."""

    requests: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> FastAPI:
        """The HTTP app serving ``POST /v1/embeddings`` in the real wire format."""
        api = FastAPI()
        lexical = LexicalEmbeddings()

        @api.post("/v1/embeddings")
        async def embeddings(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.requests.append(body)
            texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
            vectors = lexical.embed_documents(texts)
            encode = body.get("encoding_format") == "base64"
            data = [
                {"object": "embedding", "index": i,
                 "embedding": base64.b64encode(np.asarray(v, dtype=np.float32).tobytes()).decode() if encode else v}
                for i, v in enumerate(vectors)
            ]
            return {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}}

        return api
