"""``mandate ingest``: a directory goes in with its sharing, one id per file, bad files report their cause
and leave nothing behind, documents and folders can be deleted."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from mandate.runtime.settings import Settings
from mandate.cli.main import main
from tests.retrieval.files import write_corpus
from tests.retrieval.support import AGENT, Rooms, tenant_grants, unique

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def mandate(
    stack_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Run:
    """``await mandate("ingest", …)``: the CLI as an operator runs it next to `mandate dev` (dev mode)."""
    for name in list(os.environ):
        if name.startswith("MANDATE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MANDATE_DATA_DIR", str(stack_settings.data_dir))
    monkeypatch.setenv("MANDATE_FGA_PORT", str(stack_settings.fga_port))

    async def run(*argv: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, ["--dev", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run  # type: ignore[return-value]


async def _documents(rooms: Rooms, tenant: str) -> list[str]:
    async with rooms.pool.connection() as conn:
        cur = await conn.execute("SELECT doc_id FROM mandate.documents WHERE tenant = %s ORDER BY doc_id", (tenant,))
        return [row["doc_id"] for row in await cur.fetchall()]


async def test_ingest_command_ingests_a_directory_and_reports_each_bad_file(
    rooms: Rooms, mandate: Run, tmp_path: Path
) -> None:
    tenant = unique("cli")
    files = write_corpus(tmp_path)
    ann, ben = f"{tenant}|ann", f"{tenant}|ben"
    await rooms.authz.write(writes=[*tenant_grants(tenant, ann, ben)])
    code, out, err = await mandate(
        "ingest", str(tmp_path), "--root", str(tmp_path), "--tenant", tenant, "--folder", f"{tenant}-docs",
        "--folder-viewer", f"user:{ann}",
    )
    assert code == 1
    assert f"error: {files['broken_pdf']}: not a readable PDF (PdfStreamError: " in err
    assert f"error: {files['binary']}: not readable as UTF-8 text (UnicodeDecodeError: 'utf-8' codec" in err
    assert f"error: {files['empty']}: contains no text.\n" in err
    assert "\r" not in err  # no progress bar outside a terminal: logs stay readable
    assert "3 ingested, 0 unchanged, 3 failed (of 6 files)." in out
    assert f"Document ids are {tenant}/<path relative to {tmp_path.resolve()}>" in out
    found = await rooms.retriever.retrieve("sprocket revenue", user=f"user:{ann}", tenant=tenant, agent=AGENT)
    assert [c.doc_id for c in found] == [f"{tenant}/nested/report.pdf"]
    assert await rooms.retriever.retrieve("sprocket revenue", user=f"user:{ben}", tenant=tenant, agent=AGENT) == []

    code, out, _ = await mandate("ingest", "--delete", f"{tenant}/nested/report.pdf")
    assert (code, out) == (0, f"{tenant}/nested/report.pdf: deleted\n")
    assert await rooms.retriever.retrieve("sprocket revenue", user=f"user:{ann}", tenant=tenant, agent=AGENT) == []


async def test_ingest_command_gives_a_file_one_id_however_it_is_named(
    rooms: Rooms, mandate: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = unique("one")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "notes.txt").write_text("Field notes: the gadget warehouse stocks spindles.\n")
    (tmp_path / "nested" / "plan.md").write_text("# Plan\n\nCalibrate the spindle.\n")
    monkeypatch.chdir(tmp_path)
    code, out, _ = await mandate("ingest", "nested", "--tenant", tenant)
    assert (code, out.splitlines()[0]) == (0, "2 ingested, 0 unchanged, 0 failed (of 2 files).")
    code, out, _ = await mandate("ingest", str(tmp_path / "nested" / "notes.txt"), "--tenant", tenant)
    assert (code, out.splitlines()[0]) == (0, "0 ingested, 1 unchanged, 0 failed (of 1 files).")
    monkeypatch.chdir(tmp_path / "nested")
    code, out, _ = await mandate("ingest", "notes.txt", "--root", "..", "--tenant", tenant)
    assert (code, out.splitlines()[0]) == (0, "0 ingested, 1 unchanged, 0 failed (of 1 files).")
    assert await _documents(rooms, tenant) == [f"{tenant}/nested/notes.txt", f"{tenant}/nested/plan.md"]


async def test_ingest_command_file_the_database_refuses_reports_why_and_leaves_nothing(
    rooms: Rooms, mandate: Run, tmp_path: Path
) -> None:
    tenant = unique("nul")
    (tmp_path / "good.md").write_text("# Good\n\nThe sprocket ledger is balanced.\n")
    (tmp_path / "nul.txt").write_text("a text file with a \x00 inside\n")
    code, out, err = await mandate(
        "ingest", str(tmp_path), "--root", str(tmp_path), "--tenant", tenant, "--viewer", f"user:{tenant}|ann"
    )
    assert code == 1 and "1 ingested, 0 unchanged, 1 failed (of 2 files)." in out
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: {tmp_path / 'nul.txt'}: Document '{tenant}/nul.txt' could not be stored; ")
    assert "(DataError: " in line and "NUL" in line
    assert await _documents(rooms, tenant) == [f"{tenant}/good.md"]
    assert await rooms.directory.read(f"document:{tenant}/nul.txt") == []


async def test_ingest_command_deletes_a_folder_only_once_it_is_empty(
    rooms: Rooms, mandate: Run, tmp_path: Path
) -> None:
    tenant = unique("fold")
    folder = f"{tenant}-board"
    (tmp_path / "minutes.md").write_text("# Minutes\n\nThe board approved the sprocket budget.\n")
    argv = ["ingest", str(tmp_path / "minutes.md"), "--root", str(tmp_path), "--tenant", tenant, "--folder", folder,
            "--folder-viewer", "group:board"]
    assert (await mandate(*argv))[0] == 0
    code, _, err = await mandate("ingest", "--delete-folder", folder)
    assert code == 1
    assert err == (
        f"error: Folder {folder!r} still holds 1 documents or folders (document:{tenant}/minutes.md); "
        "delete them first.\n"
    )
    assert len(await rooms.directory.read(f"folder:{folder}")) == 2  # tenant and viewer tuples stay

    code, out, _ = await mandate("ingest", "--delete", f"{tenant}/minutes.md", "--delete-folder", folder)
    assert (code, out) == (0, f"{tenant}/minutes.md: deleted\nfolder {folder}: deleted\n")
    assert await rooms.directory.read(f"folder:{folder}") == []


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["ingest"], "give files or directories to ingest, or --delete DOC_ID, or --delete-folder NAME."),
        (["ingest", "x.md"], "--tenant is required"),
        (["ingest", "x.md", "--tenant", "t", "--viewer", "bob"], "'bob' is not a principal"),
        (["ingest", "x.md", "--tenant", "t", "--viewer", "user:bob"], "users are issuer-qualified"),
        (["ingest", "x.md", "--tenant", "t", "--owner", "group:g"], "'group:g' is not a user"),
        (["ingest", "x.md", "--tenant", "t", "--folder-viewer", "user:dev|a"], "need --folder"),
        (["ingest", "x.md", "--tenant", "t", "--root", "/no/such/dir"], "--root /no/such/dir is not a directory"),
    ],
)
def test_ingest_command_rejects_bad_arguments_in_one_line(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mandate ingest: ") and problem in err and len(err.splitlines()) == 1
