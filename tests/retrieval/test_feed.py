"""The change feed and the kept principal closures: fast when nothing changed, never behind OpenFGA.

Each query after the first reuses the (user, agent, tenant) closure and runs its vector query while
OpenFGA's change log is read; every abuse case below writes (or breaks) something between two
queries and checks the very next one.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mandate.auth import AuthorizationUnavailableError, Relationship
from mandate.retrieval import DocumentSpec, FeedPositionError, FolderSpec, OpenFgaDirectory, PrincipalCache, TupleChange
from mandate.retrieval._acl import Principals
from mandate.runtime.settings import Settings
from tests.retrieval.support import AGENT, Rooms, open_rooms, tenant_grants, unique
from tests.utils.servers import free_port

TEXT = "The quarterly widget forecast predicts strong widget demand in the northern region."


def _doc(tenant: str, name: str, **sharing: object) -> DocumentSpec:
    return DocumentSpec(doc_id=f"{tenant}-{name}", tenant=tenant, title=name, text=f"{TEXT} ({name})", source="test", **sharing)  # type: ignore[arg-type]


async def _read(rooms: Rooms, retriever: Any, tenant: str, user: str, *, agent: str = AGENT) -> set[str]:
    found = await retriever.retrieve("widget forecast", user=f"user:{user}", tenant=tenant, agent=agent, k=10)
    return {chunk.doc_id for chunk in found}


REVOCATIONS = [
    "direct grant", "group membership", "nested group", "folder grant", "folder parent", "tenant membership",
    "agent grant", "document tenant",
]


@pytest.mark.parametrize("revoke", REVOCATIONS)
async def test_revocation_written_in_openfga_reaches_a_kept_closure_on_the_next_query(rooms: Rooms, revoke: str) -> None:
    tenant = unique("fr")
    inner, outer = f"group:{tenant}-inner", f"group:{tenant}-outer"
    top, sub = f"{tenant}-top", f"{tenant}-sub"
    await rooms.authz.write(
        writes=[
            *tenant_grants(tenant, "kim"),
            Relationship("user:kim", "member", inner),
            Relationship(f"{inner}#member", "member", outer),
        ]
    )
    await rooms.ingestor.ensure_folder(FolderSpec(folder=top, tenant=tenant, viewers=("user:kim",)))
    await rooms.ingestor.ensure_folder(FolderSpec(folder=sub, tenant=tenant, parent=top))
    await rooms.ingestor.ingest(_doc(tenant, "direct", viewers=("user:kim",)))
    await rooms.ingestor.ingest(_doc(tenant, "inner", viewers=(f"{inner}#member",)))
    await rooms.ingestor.ingest(_doc(tenant, "outer", viewers=(f"{outer}#member",)))
    await rooms.ingestor.ingest(_doc(tenant, "folder", folder=sub))
    everything = {f"{tenant}-{name}" for name in ("direct", "inner", "outer", "folder")}
    retriever = rooms.retriever
    assert await _read(rooms, retriever, tenant, "kim") == everything
    assert await _read(rooms, retriever, tenant, "kim") == everything
    kept = rooms.last_retrieval()
    assert kept["mandate.retrieval.principals_cached"] and kept["mandate.retrieval.overlapped"]
    change = {
        "direct grant": ([], [Relationship("user:kim", "viewer", f"document:{tenant}-direct")]),
        "group membership": ([], [Relationship("user:kim", "member", inner)]),
        "nested group": ([], [Relationship(f"{inner}#member", "member", outer)]),
        "folder grant": ([], [Relationship("user:kim", "viewer", f"folder:{top}")]),
        "folder parent": ([], [Relationship(f"folder:{top}", "parent", f"folder:{sub}")]),
        "tenant membership": ([], [Relationship("user:kim", "member", f"tenant:{tenant}")]),
        "agent grant": ([], [Relationship(AGENT, "reader_agent", f"tenant:{tenant}")]),
        "document tenant": (
            [Relationship(f"tenant:{unique('elsewhere')}", "tenant", f"document:{tenant}-direct")],
            [Relationship(f"tenant:{tenant}", "tenant", f"document:{tenant}-direct")],
        ),
    }[revoke]
    await rooms.authz.write(writes=change[0], deletes=change[1])
    lost = {
        "direct grant": {"direct"}, "group membership": {"inner", "outer"}, "nested group": {"outer"},
        "folder grant": {"folder"}, "folder parent": {"folder"}, "tenant membership": {"direct", "inner", "outer", "folder"},
        "agent grant": {"direct", "inner", "outer", "folder"}, "document tenant": {"direct"},
    }[revoke]
    assert await _read(rooms, retriever, tenant, "kim") == everything - {f"{tenant}-{name}" for name in lost}
    after = rooms.last_retrieval()
    assert after["mandate.retrieval.feed_changes"] >= 1 and not after["mandate.retrieval.overlapped"]


async def test_every_replica_honours_a_revocation_on_its_next_query(rooms: Rooms) -> None:
    tenant = unique("fp")
    await rooms.authz.write(writes=tenant_grants(tenant, "lou"))
    await rooms.ingestor.ingest(_doc(tenant, "shared", viewers=("user:lou",)))
    replicas = [rooms.make_retriever(), rooms.make_retriever()]
    for replica in replicas:
        assert await _read(rooms, replica, tenant, "lou") == {f"{tenant}-shared"}
    await rooms.authz.write(deletes=[Relationship("user:lou", "viewer", f"document:{tenant}-shared")])
    for replica in replicas:  # the first rewrites the document's tokens; the second drops its closure too
        assert await _read(rooms, replica, tenant, "lou") == set()


async def test_concurrent_queries_after_a_revocation_share_reads_and_all_honour_it(rooms: Rooms) -> None:
    tenant = unique("fc")
    await rooms.authz.write(writes=tenant_grants(tenant, "kai"))
    await rooms.ingestor.ingest(_doc(tenant, "kept", viewers=("user:kai",)))
    await rooms.ingestor.ingest(_doc(tenant, "revoked", viewers=("user:kai",)))
    assert await _read(rooms, rooms.retriever, tenant, "kai") == {f"{tenant}-kept", f"{tenant}-revoked"}
    await rooms.authz.write(deletes=[Relationship("user:kai", "viewer", f"document:{tenant}-revoked")])
    answers = await asyncio.gather(*(_read(rooms, rooms.retriever, tenant, "kai") for _ in range(8)))
    assert answers == [{f"{tenant}-kept"}] * 8


async def test_a_kept_closure_never_reads_another_tenant(rooms: Rooms) -> None:
    home, away = unique("fh"), unique("fa")
    await rooms.authz.write(writes=[*tenant_grants(home, "max"), *tenant_grants(away, "nia")])
    await rooms.ingestor.ingest(_doc(home, "mine", viewers=("user:max",)))
    await rooms.ingestor.ingest(_doc(away, "theirs", viewers=("user:max", "user:nia")))
    for _ in range(2):  # the second round answers from kept closures
        assert await _read(rooms, rooms.retriever, home, "max") == {f"{home}-mine"}
        assert await _read(rooms, rooms.retriever, away, "max") == set()
        assert await _read(rooms, rooms.retriever, away, "nia") == {f"{away}-theirs"}
    assert rooms.last_retrieval()["mandate.retrieval.principals_cached"]


async def test_content_shared_with_a_token_that_reached_nothing_counts_at_once(rooms: Rooms) -> None:
    tenant = unique("fn")
    group = f"group:{tenant}-late"
    await rooms.authz.write(writes=[*tenant_grants(tenant, "oli"), Relationship("user:oli", "member", group)])
    await rooms.ingestor.ingest(_doc(tenant, "first", viewers=("user:oli",)))
    assert await _read(rooms, rooms.retriever, tenant, "oli") == {f"{tenant}-first"}  # size measured, kept 30 s
    await rooms.ingestor.ingest(_doc(tenant, "second", viewers=(f"{group}#member",)))
    assert await _read(rooms, rooms.retriever, tenant, "oli") == {f"{tenant}-first", f"{tenant}-second"}


async def test_openfga_failing_after_the_closure_is_kept_is_a_denial(rooms: Rooms, stack_settings: Settings) -> None:
    tenant = unique("fd")
    await rooms.authz.write(writes=tenant_grants(tenant, "pat"))
    await rooms.ingestor.ingest(_doc(tenant, "doc", viewers=("user:pat",)))
    switch = _Switch(rooms.directory)
    retriever = rooms.make_retriever(directory=switch)
    for _ in range(2):
        assert await _read(rooms, retriever, tenant, "pat") == {f"{tenant}-doc"}
    assert rooms.last_retrieval()["mandate.retrieval.principals_cached"]
    async with open_rooms(stack_settings, ("unused", "unused"), fga_url=f"http://127.0.0.1:{free_port()}") as dead:
        switch.target = OpenFgaDirectory(client=dead.client)
        with pytest.raises(AuthorizationUnavailableError) as denied:
            await _read(rooms, retriever, tenant, "pat")
        assert denied.value.code == "authz_unavailable"
    switch.target = rooms.directory
    assert await _read(rooms, retriever, tenant, "pat") == {f"{tenant}-doc"}


async def test_a_stored_position_in_the_future_is_refused_and_nothing_is_read(rooms: Rooms) -> None:
    tenant = unique("ff")
    await rooms.authz.write(writes=tenant_grants(tenant, "quinn"))
    await rooms.ingestor.ingest(_doc(tenant, "doc", viewers=("user:quinn",)))
    feed = rooms.make_retriever()._feed  # noqa: SLF001 - the position is the feed's own state
    assert feed is not None
    await feed.sync()
    saved = feed.position
    try:
        await feed.reset_position(datetime.now(UTC) + timedelta(days=1))  # forged: it would skip every change
        with pytest.raises(FeedPositionError) as refused:
            await _read(rooms, rooms.make_retriever(), tenant, "quinn")
        assert refused.value.code == "acl_feed_position_invalid"
    finally:
        await feed.reset_position(saved)
    assert await _read(rooms, rooms.make_retriever(), tenant, "quinn") == {f"{tenant}-doc"}


async def test_a_stale_stored_position_replays_the_log_and_a_revocation_made_meanwhile_holds(rooms: Rooms) -> None:
    tenant = unique("fs")
    await rooms.authz.write(writes=tenant_grants(tenant, "ray"))
    await rooms.ingestor.ingest(_doc(tenant, "kept", viewers=("user:ray",)))
    await rooms.ingestor.ingest(_doc(tenant, "revoked", viewers=("user:ray",)))
    feed = rooms.make_retriever()._feed  # noqa: SLF001
    assert feed is not None
    await feed.sync()
    await feed.reset_position(datetime.now(UTC) - timedelta(hours=1))  # stale: an hour behind
    # Revoked while no retriever follows the log: a process starting from the stale position replays
    # an hour of changes (idempotently) and applies this one before it answers.
    await rooms.authz.write(deletes=[Relationship("user:ray", "viewer", f"document:{tenant}-revoked")])
    fresh = rooms.make_retriever()
    assert await _read(rooms, fresh, tenant, "ray") == {f"{tenant}-kept"}
    assert rooms.last_retrieval()["mandate.retrieval.feed_changes"] >= 1


def test_closure_cache_drops_exactly_what_a_change_may_touch() -> None:
    cache = PrincipalCache()
    kim = Principals(tokens=("folder:f", "group:g#member", "user:kim"), tenant_member=True, agent_documents=None)
    restricted = Principals(tokens=("user:lee",), tenant_member=True, agent_documents=("d1",))
    cache.put("user:kim", AGENT, "t", kim, generation=cache.generation)
    cache.put("user:lee", "agent:narrow", "t", restricted, generation=cache.generation)

    def change(user: str, relation: str, obj: str) -> list[TupleChange]:
        return [TupleChange(relationship=Relationship(user, relation, obj), deleted=True)]

    cache.invalidate(change("user:other", "member", "group:g"))
    assert cache.get("user:kim", AGENT, "t") is not None and cache.get("user:lee", "agent:narrow", "t") is not None
    cache.invalidate(change("folder:f", "parent", "folder:child"))  # kim views f; lee's agent follows parents
    assert cache.get("user:kim", AGENT, "t") is None and cache.get("user:lee", "agent:narrow", "t") is None
    cache.put("user:kim", AGENT, "t", kim, generation=cache.generation)
    cache.invalidate(change(AGENT, "reader_agent", "tenant:t"))
    assert cache.get("user:kim", AGENT, "t") is None


def test_a_resolution_overlapping_a_change_is_used_once_and_not_kept() -> None:
    cache = PrincipalCache()
    before = cache.generation
    cache.invalidate([])  # a change arrived while the closure was being resolved
    stale = Principals(tokens=("user:kim",), tenant_member=True, agent_documents=None)
    entry = cache.put("user:kim", AGENT, "t", stale, generation=before)
    assert entry.principals is stale and cache.get("user:kim", AGENT, "t") is None


class _Switch:
    """A directory that forwards to ``target`` (a real one, live or pointing at a dead port)."""

    def __init__(self, target: OpenFgaDirectory) -> None:
        self.target = target
        self._store_id = target.store_id

    @property
    def store_id(self) -> str:
        return self._store_id

    async def list_objects(self, **kw: Any) -> tuple[str, ...]:
        return await self.target.list_objects(**kw)

    async def read(self, obj: str) -> list[Relationship]:
        return await self.target.read(obj)

    async def read_changes(self, **kw: Any) -> Any:
        return await self.target.read_changes(**kw)
