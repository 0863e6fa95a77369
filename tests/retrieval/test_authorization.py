"""Who may read what: groups, folders, tenants and agents honoured; revocation immediate; fail closed."""

from __future__ import annotations


import pytest
from opentelemetry import trace

from mandate._db import open_pool
from mandate.auth import AuthorizationUnavailableError, Relationship
from mandate.retrieval import AuthorizedRetriever, DocumentSpec, FolderSpec, LexicalEmbeddings, RetrievalUnavailableError
from mandate.runtime.settings import Settings
from tests.retrieval.support import AGENT, Rooms, open_rooms, tenant_grants, unique
from tests.utils.servers import free_port

TEXT = "The quarterly widget forecast predicts strong widget demand in the northern region."


def _doc(tenant: str, name: str, **sharing: object) -> DocumentSpec:
    return DocumentSpec(doc_id=f"{tenant}-{name}", tenant=tenant, title=name, text=f"{TEXT} ({name})", source="test", **sharing)  # type: ignore[arg-type]


async def _read(rooms: Rooms, tenant: str, user: str, *, agent: str = AGENT) -> set[str]:
    found = await rooms.retriever.retrieve("widget forecast", user=f"user:{user}", tenant=tenant, agent=agent, k=10)
    return {chunk.doc_id for chunk in found}


async def test_retrieve_honours_nested_groups_and_nested_folders(rooms: Rooms) -> None:
    tenant = unique("ag")
    outer, inner = f"group:{tenant}-outer", f"group:{tenant}-inner"
    await rooms.authz.write(
        writes=[
            *tenant_grants(tenant, "ann", "ben"),
            Relationship("user:ann", "member", inner),
            Relationship(f"{inner}#member", "member", outer),
        ]
    )
    await rooms.ingestor.ensure_folder(FolderSpec(folder=f"{tenant}-top", tenant=tenant, viewers=(f"{outer}#member",)))
    await rooms.ingestor.ensure_folder(FolderSpec(folder=f"{tenant}-sub", tenant=tenant, parent=f"{tenant}-top"))
    for spec in (
        _doc(tenant, "in-folder", folder=f"{tenant}-sub"),
        _doc(tenant, "to-group", viewers=(f"{outer}#member",)),
        _doc(tenant, "owned", owners=("user:ann",)),
        _doc(tenant, "private", viewers=("user:ben",)),
    ):
        await rooms.ingestor.ingest(spec)
    assert await _read(rooms, tenant, "ann") == {f"{tenant}-in-folder", f"{tenant}-to-group", f"{tenant}-owned"}
    assert rooms.last_retrieval()["mandate.retrieval.path"] == "exact"
    assert await _read(rooms, tenant, "ben") == {f"{tenant}-private"}


async def test_retrieve_never_crosses_tenants(rooms: Rooms) -> None:
    home, away = unique("th"), unique("ta")
    await rooms.authz.write(writes=[*tenant_grants(home, "cy"), *tenant_grants(away, "dee")])
    await rooms.ingestor.ingest(_doc(home, "mine", viewers=("user:cy",)))
    await rooms.ingestor.ingest(_doc(away, "theirs", viewers=("user:cy", "user:dee")))
    assert await _read(rooms, home, "cy") == {f"{home}-mine"}
    assert await _read(rooms, away, "cy") == set()
    assert await _read(rooms, away, "dee") == {f"{away}-theirs"}


async def test_retrieve_limits_a_restricted_agent_to_its_documents(rooms: Rooms) -> None:
    tenant = unique("aa")
    await rooms.authz.write(writes=tenant_grants(tenant, "eli"))
    for name in ("granted", "other"):
        await rooms.ingestor.ingest(_doc(tenant, name, viewers=("user:eli",)))
    researcher = f"agent:{unique('researcher')}"
    await rooms.authz.write(writes=[Relationship(researcher, "reader_agent", f"document:{tenant}-granted")])
    assert await _read(rooms, tenant, "eli", agent=researcher) == {f"{tenant}-granted"}
    assert await _read(rooms, tenant, "eli", agent=f"agent:{unique('nobody')}") == set()
    assert await _read(rooms, tenant, "eli") == {f"{tenant}-granted", f"{tenant}-other"}


@pytest.mark.parametrize("revoke", ["direct grant", "group membership", "folder grant", "tenant membership"])
async def test_retrieve_revocation_takes_effect_on_next_query(rooms: Rooms, revoke: str) -> None:
    tenant = unique("rv")
    group, folder = f"group:{tenant}-g", f"{tenant}-f"
    await rooms.authz.write(writes=[*tenant_grants(tenant, "fay"), Relationship("user:fay", "member", group)])
    await rooms.ingestor.ensure_folder(FolderSpec(folder=folder, tenant=tenant, viewers=("user:fay",)))
    await rooms.ingestor.ingest(_doc(tenant, "direct", viewers=("user:fay",)))
    await rooms.ingestor.ingest(_doc(tenant, "group", viewers=(f"{group}#member",)))
    await rooms.ingestor.ingest(_doc(tenant, "folder", folder=folder))
    assert len(await _read(rooms, tenant, "fay")) == 3
    revoked = {
        "direct grant": Relationship("user:fay", "viewer", f"document:{tenant}-direct"),
        "group membership": Relationship("user:fay", "member", group),
        "folder grant": Relationship("user:fay", "viewer", f"folder:{folder}"),
        "tenant membership": Relationship("user:fay", "member", f"tenant:{tenant}"),
    }[revoke]
    await rooms.authz.write(deletes=[revoked])
    expected = {
        "direct grant": {f"{tenant}-group", f"{tenant}-folder"},
        "group membership": {f"{tenant}-direct", f"{tenant}-folder"},
        "folder grant": {f"{tenant}-direct", f"{tenant}-group"},
        "tenant membership": set(),
    }[revoke]
    assert await _read(rooms, tenant, "fay") == expected


async def test_retrieve_grant_written_in_openfga_directly_counts_on_the_next_query(rooms: Rooms) -> None:
    tenant = unique("gr")
    await rooms.authz.write(writes=tenant_grants(tenant, "gil"))
    await rooms.ingestor.ingest(_doc(tenant, "later"))
    assert await rooms.retriever.retrieve("widget forecast", user="user:gil", tenant=tenant, agent=AGENT) == []
    await rooms.authz.write(writes=[Relationship("user:gil", "viewer", f"document:{tenant}-later")])
    found = await rooms.retriever.retrieve("widget forecast", user="user:gil", tenant=tenant, agent=AGENT)
    assert [c.doc_id for c in found] == [f"{tenant}-later"]
    assert rooms.last_retrieval()["mandate.retrieval.feed_changes"] >= 1


async def test_retrieve_document_moved_out_of_its_tenant_in_openfga_is_read_by_nobody(rooms: Rooms) -> None:
    tenant, other = unique("mv"), unique("mo")
    await rooms.authz.write(writes=[*tenant_grants(tenant, "hal"), *tenant_grants(other, "hal")])
    await rooms.ingestor.ingest(_doc(tenant, "moved", viewers=("user:hal",)))
    assert await _read(rooms, tenant, "hal") == {f"{tenant}-moved"}
    obj = f"document:{tenant}-moved"
    await rooms.authz.write(
        writes=[Relationship(f"tenant:{other}", "tenant", obj)], deletes=[Relationship(f"tenant:{tenant}", "tenant", obj)]
    )
    assert await _read(rooms, tenant, "hal") == set()
    assert await _read(rooms, other, "hal") == set()


async def test_retrieve_with_openfga_down_is_a_denial(stack_settings: Settings, fga_ids: tuple[str, str]) -> None:
    tenant = unique("dn")
    async with open_rooms(stack_settings, fga_ids) as rooms:
        await rooms.authz.write(writes=tenant_grants(tenant, "ida"))
        await rooms.ingestor.ingest(_doc(tenant, "doc", viewers=("user:ida",)))
    async with open_rooms(stack_settings, fga_ids, fga_url=f"http://127.0.0.1:{free_port()}") as dead:
        for retriever in (dead.retriever, dead.make_retriever(directory=None)):
            with pytest.raises(AuthorizationUnavailableError) as denied:
                await retriever.retrieve("widget", user="user:ida", tenant=tenant, agent=AGENT)
            assert denied.value.code == "authz_unavailable"


async def test_retrieve_with_database_down_is_a_denial(rooms: Rooms, stack_settings: Settings) -> None:
    closed = await open_pool(stack_settings.database_url, max_size=1)
    await closed.close()
    for directory in (rooms.directory, None):
        retriever = AuthorizedRetriever(
            pool=closed, authz=rooms.authz, embeddings=LexicalEmbeddings(), tracer=trace.get_tracer("test"), directory=directory
        )
        with pytest.raises(RetrievalUnavailableError) as denied:
            await retriever.retrieve("widget", user="user:x", tenant=unique("db"), agent=AGENT)
        assert denied.value.code == "retrieval_unavailable"
