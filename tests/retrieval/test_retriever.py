"""The authorized retriever on real pgvector and real OpenFGA."""

from __future__ import annotations

import uuid

import pytest

from mandate.auth import AuthorizationUnavailableError, Relationship
from mandate.retrieval import DocumentSpec
from mandate.runtime.settings import Settings
from tests.utils.servers import free_port
from tests.utils.services import room_services

TEXT = "The quarterly widget forecast predicts strong widget demand in the northern region."


def _spec(tenant: str, **kw: object) -> DocumentSpec:
    doc_id = f"doc-{uuid.uuid4().hex[:8]}"
    return DocumentSpec(doc_id=doc_id, tenant=tenant, title=f"Widget forecast {doc_id}", text=TEXT, source="test", **kw)  # type: ignore[arg-type]


async def _grant_tenant(authz, tenant: str, *users: str) -> None:  # type: ignore[no-untyped-def]
    await authz.write(
        writes=[Relationship(f"user:{u}", "member", f"tenant:{tenant}") for u in users]
        + [Relationship("agent:retriever", "reader_agent", f"tenant:{tenant}")]
    )


async def test_retrieve_returns_direct_grant_and_hides_others(stack_settings: Settings) -> None:
    tenant = f"t{uuid.uuid4().hex[:6]}"
    async with room_services(stack_settings) as rooms:
        await _grant_tenant(rooms.authz, tenant, "ann", "ben")
        spec = _spec(tenant, viewers=("user:ann",))
        assert await rooms.ingestor.ingest(spec) == 1
        ann = await rooms.retriever.retrieve("widget forecast", user="user:ann", tenant=tenant, agent="agent:retriever")
        ben = await rooms.retriever.retrieve("widget forecast", user="user:ben", tenant=tenant, agent="agent:retriever")
    assert [c.doc_id for c in ann] == [spec.doc_id]
    assert ben == []


async def test_retrieve_honours_group_and_folder_inheritance(stack_settings: Settings) -> None:
    tenant, folder, group = (f"x{uuid.uuid4().hex[:6]}" for _ in range(3))
    async with room_services(stack_settings) as rooms:
        await _grant_tenant(rooms.authz, tenant, "cat")
        await rooms.authz.write(
            writes=[
                Relationship("user:cat", "member", f"group:{group}"),
                Relationship(f"group:{group}#member", "viewer", f"folder:{folder}"),
                Relationship(f"tenant:{tenant}", "tenant", f"folder:{folder}"),
            ]
        )
        spec = _spec(tenant, folder=folder)
        await rooms.ingestor.ingest(spec)
        found = await rooms.retriever.retrieve("widget demand", user="user:cat", tenant=tenant, agent="agent:retriever")
    assert [c.doc_id for c in found] == [spec.doc_id]


async def test_retrieve_requires_the_agent_grant_too(stack_settings: Settings) -> None:
    tenant = f"a{uuid.uuid4().hex[:6]}"
    async with room_services(stack_settings) as rooms:
        await rooms.authz.write(writes=[Relationship("user:dan", "member", f"tenant:{tenant}")])
        spec = _spec(tenant, viewers=("user:dan",))
        await rooms.ingestor.ingest(spec)
        as_retriever = await rooms.retriever.retrieve("widget", user="user:dan", tenant=tenant, agent="agent:retriever")
        await rooms.authz.write(writes=[Relationship("agent:researcher", "reader_agent", f"document:{spec.doc_id}")])
        as_researcher = await rooms.retriever.retrieve("widget", user="user:dan", tenant=tenant, agent="agent:researcher")
    assert as_retriever == []
    assert [c.doc_id for c in as_researcher] == [spec.doc_id]


async def test_retrieve_revocation_takes_effect_on_next_query(stack_settings: Settings) -> None:
    tenant = f"r{uuid.uuid4().hex[:6]}"
    async with room_services(stack_settings) as rooms:
        await _grant_tenant(rooms.authz, tenant, "eve")
        spec = _spec(tenant, viewers=("user:eve",))
        await rooms.ingestor.ingest(spec)
        before = await rooms.retriever.retrieve("widget", user="user:eve", tenant=tenant, agent="agent:retriever")
        await rooms.authz.write(deletes=[Relationship("user:eve", "viewer", f"document:{spec.doc_id}")])
        after = await rooms.retriever.retrieve("widget", user="user:eve", tenant=tenant, agent="agent:retriever")
    assert [c.doc_id for c in before] == [spec.doc_id]
    assert after == []


async def test_retrieve_with_openfga_down_is_a_denial(stack_settings: Settings) -> None:
    tenant = f"d{uuid.uuid4().hex[:6]}"
    async with room_services(stack_settings) as rooms:
        await _grant_tenant(rooms.authz, tenant, "fay")
        await rooms.ingestor.ingest(_spec(tenant, viewers=("user:fay",)))
    async with room_services(stack_settings, fga_url=f"http://127.0.0.1:{free_port()}") as dead:
        with pytest.raises(AuthorizationUnavailableError) as denied:
            await dead.retriever.retrieve("widget", user="user:fay", tenant=tenant, agent="agent:retriever")
    assert denied.value.code == "authz_unavailable"


async def test_ingest_same_content_twice_is_a_no_op(stack_settings: Settings) -> None:
    tenant = f"i{uuid.uuid4().hex[:6]}"
    async with room_services(stack_settings) as rooms:
        spec = _spec(tenant, viewers=("user:gus",))
        assert await rooms.ingestor.ingest(spec) == 1
        assert await rooms.ingestor.ingest(spec) == 0
        async with rooms.pool.connection() as conn:
            row = await (await conn.execute("SELECT count(*) AS n FROM mandate.chunks WHERE doc_id = %s", (spec.doc_id,))).fetchone()
    assert row["n"] == 1
