"""``mandate ingest``: a directory goes in with its sharing, bad files get their own error, delete works."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from mandate.service import Settings
from mandate.service.ingest_cli import add_ingest_command
from tests.retrieval.files import write_corpus
from tests.retrieval.support import AGENT, Rooms, tenant_grants, unique


def _mandate(argv: list[str]) -> int:
    """Run ``mandate <argv>`` with only the ingest command registered, as ``cli.main`` will."""
    parser = argparse.ArgumentParser(prog="mandate")
    add_ingest_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args))


@pytest.fixture()
def stack_env(stack_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MANDATE_DATABASE_URL", stack_settings.database_url)
    monkeypatch.setenv("MANDATE_FGA_API_URL", stack_settings.fga_api_url)


async def test_ingest_command_ingests_a_directory_and_reports_each_bad_file(
    rooms: Rooms, stack_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = unique("cli")
    files = write_corpus(tmp_path)
    await rooms.authz.write(writes=[*tenant_grants(tenant, "ann", "ben")])
    argv = ["ingest", str(tmp_path), "--tenant", tenant, "--folder", f"{tenant}-docs", "--folder-viewer", "user:ann"]
    assert await asyncio.to_thread(_mandate, argv) == 1
    output = capsys.readouterr()
    for bad in ("broken_pdf", "binary", "empty"):
        assert f"error: {files[bad]}" in output.err
    assert "3 ingested, 0 unchanged, 3 failed (of 6 files)." in output.out
    found = await rooms.retriever.retrieve("sprocket revenue", user="user:ann", tenant=tenant, agent=AGENT)
    assert [c.doc_id for c in found] == [f"{tenant}/nested/report.pdf"]
    assert await rooms.retriever.retrieve("sprocket revenue", user="user:ben", tenant=tenant, agent=AGENT) == []

    assert await asyncio.to_thread(_mandate, ["ingest", "--delete", f"{tenant}/nested/report.pdf"]) == 0
    assert f"{tenant}/nested/report.pdf: deleted" in capsys.readouterr().out
    assert await rooms.retriever.retrieve("sprocket revenue", user="user:ann", tenant=tenant, agent=AGENT) == []


def test_ingest_command_without_a_stack_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MANDATE_DATABASE_URL", "")
    monkeypatch.setenv("MANDATE_FGA_API_URL", "")
    assert _mandate(["ingest", str(tmp_path), "--tenant", "acme"]) == 2
    assert "make dev" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["ingest"], "give files or directories"),
        (["ingest", "x.md"], "--tenant is required"),
        (["ingest", "x.md", "--tenant", "t", "--viewer", "bob"], "'bob' is not a principal"),
        (["ingest", "x.md", "--tenant", "t", "--folder-viewer", "user:a"], "need --folder"),
    ],
)
def test_ingest_command_rejects_bad_arguments(argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _mandate(argv) == 2
    assert problem in capsys.readouterr().err
