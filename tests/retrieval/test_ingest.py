"""Ingestion: files in, sharing merged, tenants kept apart, deletion complete, token counts exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from mandate.auth import Relationship
from mandate.retrieval import (
    DocumentSpec,
    IngestionError,
    RetrievalError,
    build_embeddings,
    discover_files,
    document_id_for,
    load_file,
)
from mandate.service import Settings
from tests.retrieval.files import write_corpus
from tests.retrieval.support import AGENT, EmbeddingsDouble, Rooms, open_rooms, tenant_grants, unique
from tests.utils.servers import serve_in_thread

TEXT = "The sprocket inventory for the northern depot was audited in March."


async def _read(rooms: Rooms, tenant: str, user: str, question: str = "sprocket inventory audit") -> set[str]:
    found = await rooms.retriever.retrieve(question, user=f"user:{user}", tenant=tenant, agent=AGENT, k=10)
    return {chunk.doc_id for chunk in found}


async def _token_counts(rooms: Rooms, tenant: str) -> dict[str, int]:
    async with rooms.pool.connection() as conn:
        cur = await conn.execute("SELECT token, chunks FROM mandate.acl_token_stats WHERE tenant = %s", (tenant,))
        return {row["token"]: row["chunks"] for row in await cur.fetchall() if row["chunks"]}


def test_discover_files_walks_directories_and_keeps_named_files(tmp_path: Path) -> None:
    files = write_corpus(tmp_path)
    found = discover_files([tmp_path, tmp_path / "missing.md"])
    assert set(found) == {f for role, f in files.items()} | {tmp_path / "missing.md"}
    assert tmp_path / "ignored.py" not in found


def test_load_file_reads_text_markdown_and_pdf_with_titles(tmp_path: Path) -> None:
    files = write_corpus(tmp_path)
    assert load_file(files["markdown"]).title == "Widget Guide"
    assert load_file(files["text"]).title == "notes"
    pdf = load_file(files["pdf"])
    assert pdf.title == "Sprocket Report"
    assert "sprocket division grew by 12 percent" in pdf.text


@pytest.mark.parametrize(
    ("role", "message"),
    [
        ("broken_pdf", "not a readable PDF"),
        ("binary", "not readable as UTF-8 text"),
        ("empty", "contains no text"),
    ],
)
def test_load_file_names_the_file_and_the_problem(tmp_path: Path, role: str, message: str) -> None:
    files = write_corpus(tmp_path)
    with pytest.raises(IngestionError) as failed:
        load_file(files[role])
    assert str(files[role]) in failed.value.message and message in failed.value.message


def test_load_file_refuses_missing_and_unsupported_files(tmp_path: Path) -> None:
    write_corpus(tmp_path)
    with pytest.raises(IngestionError, match="no such file"):
        load_file(tmp_path / "missing.md")
    with pytest.raises(IngestionError, match="unsupported file type .py"):
        load_file(tmp_path / "ignored.py")


def test_document_id_for_is_stable_and_openfga_safe(tmp_path: Path) -> None:
    path = tmp_path / "Q1 notes" / "board#2: draft.md"
    assert document_id_for(path, root=tmp_path, tenant="acme") == "acme/Q1-notes/board-2-draft.md"


async def test_ingest_pdf_then_retrieve_it_as_its_viewer(rooms: Rooms, tmp_path: Path) -> None:
    tenant = unique("ip")
    await rooms.authz.write(writes=tenant_grants(tenant, "ann", "ben"))
    loaded = load_file(write_corpus(tmp_path)["pdf"])
    spec = DocumentSpec(doc_id=f"{tenant}/report.pdf", tenant=tenant, title=loaded.title, text=loaded.text,
                        source=str(loaded.path), viewers=("user:ann",))
    assert await rooms.ingestor.ingest(spec) == 1
    found = await rooms.retriever.retrieve("sprocket revenue", user="user:ann", tenant=tenant, agent=AGENT)
    assert [(c.doc_id, c.title) for c in found] == [(spec.doc_id, "Sprocket Report")]
    assert await _read(rooms, tenant, "ben", "sprocket revenue") == set()


async def test_ingest_unchanged_content_with_new_viewers_shares_it_without_rewriting(rooms: Rooms) -> None:
    tenant = unique("is")
    await rooms.authz.write(writes=tenant_grants(tenant, "cy", "dee"))
    first = DocumentSpec(doc_id=f"{tenant}-doc", tenant=tenant, title="inventory", text=TEXT, source="t", viewers=("user:cy",))
    assert await rooms.ingestor.ingest(first) == 1
    again = DocumentSpec(doc_id=first.doc_id, tenant=tenant, title="inventory", text=TEXT, source="t", viewers=("user:dee",))
    assert await rooms.ingestor.ingest(again) == 0
    assert await _read(rooms, tenant, "dee") == {first.doc_id}
    assert await _read(rooms, tenant, "cy") == {first.doc_id}
    assert await _token_counts(rooms, tenant) == {"user:cy": 1, "user:dee": 1}


async def test_ingest_refuses_to_move_a_document_to_another_tenant(rooms: Rooms) -> None:
    home, other = unique("ih"), unique("io")
    doc_id = unique("moved")
    await rooms.ingestor.ingest(DocumentSpec(doc_id=doc_id, tenant=home, title="t", text=TEXT, source="t"))
    with pytest.raises(IngestionError, match="belongs to another tenant"):
        await rooms.ingestor.ingest(DocumentSpec(doc_id=doc_id, tenant=other, title="t", text=TEXT, source="t"))
    tuples = await rooms.directory.read(f"document:{doc_id}")
    assert Relationship(f"tenant:{other}", "tenant", f"document:{doc_id}") not in tuples


async def test_delete_removes_chunks_tuples_and_token_counts(rooms: Rooms) -> None:
    tenant = unique("id")
    await rooms.authz.write(writes=tenant_grants(tenant, "eve"))
    spec = DocumentSpec(doc_id=f"{tenant}-gone", tenant=tenant, title="t", text=TEXT * 20, source="t",
                        folder=f"{tenant}-f", viewers=("user:eve",), owners=("user:eve",))
    chunks = await rooms.ingestor.ingest(spec)
    await rooms.authz.write(writes=[Relationship("user:zed", "viewer", f"document:{spec.doc_id}")])
    assert chunks > 1 and await _read(rooms, tenant, "eve") == {spec.doc_id}
    assert await _token_counts(rooms, tenant) == {"user:eve": chunks, f"folder:{tenant}-f": chunks, "user:zed": chunks}
    assert await rooms.ingestor.delete(spec.doc_id) is True
    assert await rooms.directory.read(f"document:{spec.doc_id}") == []
    assert await _token_counts(rooms, tenant) == {}
    async with rooms.pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM mandate.chunks WHERE doc_id = %s", (spec.doc_id,))
        assert (await cur.fetchone())["n"] == 0
    assert await rooms.ingestor.delete(spec.doc_id) is False


def test_build_embeddings_refuses_unknown_and_missing_providers() -> None:
    assert build_embeddings().embed_query("widget") == build_embeddings("lexical").embed_query("widget")
    with pytest.raises(RetrievalError, match="Unknown embeddings provider"):
        build_embeddings("word2vec")  # type: ignore[arg-type]
    with pytest.raises(RetrievalError, match="pip install sentence-transformers"):
        build_embeddings("sentence-transformers")


async def test_openai_embeddings_provider_round_trips_through_an_openai_compatible_endpoint(
    stack_settings: Settings, fga_ids: tuple[str, str]
) -> None:
    double = EmbeddingsDouble()
    with serve_in_thread(double.app()) as url:
        embeddings = build_embeddings("openai", model="embed-small", base_url=f"{url}/v1", api_key="test-key")
        try:
            async with open_rooms(stack_settings, fga_ids, embeddings=embeddings) as rooms:
                tenant = unique("oe")
                await rooms.authz.write(writes=tenant_grants(tenant, "fay"))
                spec = DocumentSpec(doc_id=f"{tenant}-doc", tenant=tenant, title="t", text=TEXT, source="t", viewers=("user:fay",))
                await rooms.ingestor.ingest(spec)
                assert await _read(rooms, tenant, "fay") == {spec.doc_id}
        finally:
            await embeddings.async_client._client.close()  # type: ignore[attr-defined]  # noqa: SLF001  (openai's pool)
    assert {(r["model"], r["dimensions"]) for r in double.requests} == {("embed-small", 384)}
