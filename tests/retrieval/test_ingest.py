"""Ingestion: files in, sharing merged, tenants kept apart, deletion complete, token counts exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from mandate.auth import AuthorizationUnavailableError, Relationship
from mandate.retrieval import (
    DocumentSpec,
    FolderSpec,
    IngestionError,
    RetrievalError,
    build_embeddings,
    discover_files,
    document_id_for,
    load_file,
)
from mandate.runtime.settings import Settings
from tests.retrieval.files import write_corpus
from tests.retrieval.support import AGENT, EmbeddingsDouble, Rooms, open_rooms, tenant_grants, unique
from tests.utils.servers import free_port, serve_in_thread

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


def test_document_id_for_is_openfga_safe_and_never_shared_by_two_paths(tmp_path: Path) -> None:
    path = tmp_path / "Q1 notes" / "board#2: draft.md"
    assert document_id_for(path, root=tmp_path, tenant="acme") == "acme/Q1%20notes/board%232%3A%20draft.md"
    ids = {document_id_for(tmp_path / name, root=tmp_path, tenant="t") for name in ("a b", "a-b", "a%20b")}
    assert len(ids) == 3


def test_document_id_for_is_one_id_per_file_however_it_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "docs").mkdir()
    target = tmp_path / "docs" / "msa.md"
    target.write_text("# MSA\n")
    (tmp_path / "link.md").symlink_to(target)
    monkeypatch.chdir(tmp_path / "docs")
    names = [target, Path("msa.md"), Path("../docs/./msa.md"), tmp_path / "link.md"]
    assert {document_id_for(name, root=tmp_path, tenant="acme") for name in names} == {"acme/docs/msa.md"}
    with pytest.raises(IngestionError, match="not under the root"):
        document_id_for(target, root=tmp_path / "elsewhere", tenant="acme")


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


async def test_ingest_that_fails_midway_withdraws_the_tuples_it_wrote_and_keeps_the_rest(rooms: Rooms) -> None:
    tenant = unique("iw")
    await rooms.authz.write(writes=tenant_grants(tenant, "ann"))
    doc_id = f"{tenant}-doc"
    first = DocumentSpec(doc_id=doc_id, tenant=tenant, title="t", text=TEXT, source="t", viewers=("user:ann",))
    assert await rooms.ingestor.ingest(first) == 1
    before = set(await rooms.directory.read(f"document:{doc_id}"))
    # More tuples than one OpenFGA write takes: the first batch goes in, the second is refused
    # (an agent cannot be a document viewer in the model).
    viewers = (*(f"user:v{i}" for i in range(110)), "agent:not-a-viewer")
    changed = DocumentSpec(
        doc_id=doc_id, tenant=tenant, title="t", text=TEXT + " Revised.", source="t", viewers=viewers
    )
    with pytest.raises(AuthorizationUnavailableError):
        await rooms.ingestor.ingest(changed)
    assert set(await rooms.directory.read(f"document:{doc_id}")) == before  # the 100 written are withdrawn
    assert await _read(rooms, tenant, "ann") == {doc_id}  # the stored version is untouched
    async with rooms.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM mandate.chunks WHERE doc_id = %s AND content LIKE '%%Revised%%'", (doc_id,)
        )
        assert (await cur.fetchone())["n"] == 0

    new = DocumentSpec(doc_id=unique("new"), tenant=tenant, title="t", text=TEXT, source="t", viewers=viewers)
    with pytest.raises(AuthorizationUnavailableError):
        await rooms.ingestor.ingest(new)
    assert await rooms.directory.read(f"document:{new.doc_id}") == []
    assert await _document_rows(rooms, new.doc_id) == 0


async def test_ingest_the_database_refuses_reports_the_cause_and_leaves_nothing(rooms: Rooms) -> None:
    tenant = unique("in")
    spec = DocumentSpec(doc_id=unique("nul"), tenant=tenant, title="t", text="binary\x00inside", source="t",
                        viewers=("user:ann",))
    with pytest.raises(IngestionError, match="could not be stored; this attempt left nothing behind") as failed:
        await rooms.ingestor.ingest(spec)
    assert "NUL" in str(failed.value.__cause__)
    assert await rooms.directory.read(f"document:{spec.doc_id}") == []
    assert await _document_rows(rooms, spec.doc_id) == 0


async def test_ingest_with_an_unreachable_embeddings_endpoint_stores_nothing(
    stack_settings: Settings, fga_ids: tuple[str, str]
) -> None:
    dead = build_embeddings("openai", model="embed-small", base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="k")
    async with open_rooms(stack_settings, fga_ids, embeddings=dead) as rooms:
        spec = DocumentSpec(doc_id=unique("emb"), tenant=unique("ie"), title="t", text=TEXT, source="t")
        with pytest.raises(IngestionError, match="could not be embedded") as failed:
            await rooms.ingestor.ingest(spec)
        assert type(failed.value.__cause__).__name__ == "APIConnectionError"
        assert await rooms.directory.read(f"document:{spec.doc_id}") == []
        assert await _document_rows(rooms, spec.doc_id) == 0


async def test_delete_folder_refuses_while_it_holds_documents_then_removes_its_tuples(rooms: Rooms) -> None:
    tenant = unique("if")
    folder, sub = f"{tenant}-f", f"{tenant}-sub"
    await rooms.ingestor.ensure_folder(FolderSpec(folder=folder, tenant=tenant, viewers=("user:ann",)))
    await rooms.ingestor.ensure_folder(FolderSpec(folder=sub, tenant=tenant, parent=folder))
    spec = DocumentSpec(doc_id=f"{tenant}-d", tenant=tenant, title="t", text=TEXT, source="t", folder=folder)
    await rooms.ingestor.ingest(spec)
    held = rf"still holds 2 documents or folders \(document:{spec.doc_id}, folder:{sub}\)"
    with pytest.raises(IngestionError, match=held):
        await rooms.ingestor.delete_folder(folder)
    assert len(await rooms.directory.read(f"folder:{folder}")) == 2

    assert await rooms.ingestor.delete(spec.doc_id) is True
    assert await rooms.ingestor.delete_folder(sub) is True
    assert await rooms.ingestor.delete_folder(folder) is True
    assert await rooms.directory.read(f"folder:{folder}") == []
    assert await rooms.ingestor.delete_folder(folder) is False


async def _document_rows(rooms: Rooms, doc_id: str) -> int:
    async with rooms.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT (SELECT count(*) FROM mandate.documents WHERE doc_id = %(d)s)"
            " + (SELECT count(*) FROM mandate.chunks WHERE doc_id = %(d)s) AS n",
            {"d": doc_id},
        )
        return int((await cur.fetchone())["n"])


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
