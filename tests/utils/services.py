"""Real room services wired to the session stack, for tests below the HTTP layer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from opentelemetry import trace

from mandate import retrieval
from mandate._db import Pool, apply_migrations, open_pool
from mandate.auth import OpenFgaAuthorizer, ensure_store_and_model, open_fga_client
from mandate.retrieval import AuthorizedRetriever, Ingestor, LexicalEmbeddings, OpenFgaDirectory
from mandate.runtime.settings import Settings
from mandate.runtime.services import MODEL_PATH


@dataclass(frozen=True, kw_only=True, slots=True)
class RoomServices:
    pool: Pool
    authz: OpenFgaAuthorizer
    retriever: AuthorizedRetriever
    ingestor: Ingestor


def authorizer(api_url: str, store_id: str, model_id: str) -> OpenFgaAuthorizer:
    """A real OpenFGA authorizer (point it at a dead port to see it fail closed)."""
    client = open_fga_client(api_url=api_url, store_id=store_id, model_id=model_id)
    return OpenFgaAuthorizer(client=client, model_id=model_id, tracer=trace.get_tracer("test"))


@asynccontextmanager
async def room_services(settings: Settings, *, fga_url: str | None = None) -> AsyncIterator[RoomServices]:
    """Pool, authorizer, retriever and ingestor on the real stack (or a given OpenFGA URL)."""
    store_id, model_id = await ensure_store_and_model(
        api_url=settings.fga_api_url, store_name=settings.fga_store_name, model_path=MODEL_PATH
    )
    pool = await open_pool(settings.database_url, max_size=4)
    await apply_migrations(pool, room="retrieval", migrations=retrieval.MIGRATIONS)
    authz = authorizer(fga_url or settings.fga_api_url, store_id, model_id)
    embeddings = LexicalEmbeddings()
    directory = OpenFgaDirectory(client=authz._client)
    try:
        yield RoomServices(
            pool=pool,
            authz=authz,
            retriever=AuthorizedRetriever(
                pool=pool, authz=authz, embeddings=embeddings, tracer=trace.get_tracer("t"), directory=directory
            ),
            ingestor=Ingestor(pool=pool, authz=authz, embeddings=embeddings, directory=directory),
        )
    finally:
        await authz._client.close()
        await pool.close()
