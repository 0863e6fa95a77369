"""``mandate audit``: verify, export, purge and erase, on the running service's database and scratch ones."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from mandate import audit
from mandate._db import apply_migrations, open_pool
from mandate.audit import AuditLog, public_key_pem
from mandate.runtime.settings import DevSettings, Settings
from mandate.cli.audit import CLI_ISSUER
from mandate.runtime.signing import audit_signer
from mandate.cli.main import main
from tests.audit.helpers import database_dsn, tamper, temporary_database, write
from tests.utils.threads import ask, bearer, new_thread, resume

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def mandate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stack_settings: Settings) -> Run:
    """``mandate("verify", database_url=…)``: the CLI as an operator runs it, against the stack's data dir."""

    def run(*argv: str, database_url: str = stack_settings.database_url) -> tuple[int, str, str]:
        monkeypatch.setenv("MANDATE_ENV", "test")
        monkeypatch.setenv("MANDATE_DATA_DIR", str(stack_settings.data_dir))
        monkeypatch.setenv("MANDATE_DATABASE_URL", database_url)
        code = main(["audit", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture()
def scratch_url(stack_settings: Settings) -> Iterator[str]:
    """An empty database of its own (the CLI creates the audit tables)."""
    with temporary_database(stack_settings) as name:
        yield database_dsn(stack_settings.database_url, name)


def _seed(url: str, settings: Settings, count: int) -> list[str]:
    """``count`` acme records written by the service's own log (same dev signing key as the CLI)."""

    async def seed() -> list[str]:
        pool = await open_pool(url, max_size=2)
        try:
            await apply_migrations(pool, room="audit", migrations=audit.MIGRATIONS)
            return await write(AuditLog(pool=pool, signer=audit_signer(settings)), count)
        finally:
            await pool.close()

    return asyncio.run(seed())


def _tamper(url: str, statement: str, params: dict[str, Any]) -> None:
    async def run() -> None:
        pool = await open_pool(url, max_size=1)
        try:
            await tamper(pool, (statement, params))
        finally:
            await pool.close()

    asyncio.run(run())


def test_cli_verify_passes_on_the_running_services_trail(
    mandate: Run, client: httpx.Client, token: Callable[..., str]
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Open a ticket: whiteboard markers dry")
    resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
    code, out, _ = mandate("verify")
    assert code == 0, out
    assert "acme: OK, records 1.." in out


def test_cli_verify_names_the_tampered_record_and_fails(
    mandate: Run, scratch_url: str, stack_settings: Settings
) -> None:
    assert mandate("verify", database_url=scratch_url)[:2] == (0, "No audit records.\n")
    ids = _seed(scratch_url, stack_settings, 5)
    _tamper(scratch_url, "UPDATE mandate.audit_records SET actor = 'psn_other' WHERE id = %(id)s", {"id": ids[2]})
    code, out, _ = mandate("verify", database_url=scratch_url)
    assert code == 1
    assert f"acme: BROKEN at record 3 ({ids[2]})" in out and "[altered]" in out


def test_cli_verify_with_the_published_public_key(
    mandate: Run, scratch_url: str, stack_settings: Settings, tmp_path: Path
) -> None:
    _seed(scratch_url, stack_settings, 100)
    code, pem, _ = mandate("public-key")
    assert code == 0 and pem.startswith("-----BEGIN PUBLIC KEY-----")
    (tmp_path / "audit.pub").write_text(pem)
    code, out, _ = mandate("verify", "--public-key", str(tmp_path / "audit.pub"), database_url=scratch_url)
    assert code == 0
    assert out == (
        "acme: OK, records 1..100 intact: each matches its hash and links to the one before it.\n"
        "  All sealed: 1 signed checkpoint verified, the last at record 100.\n"
    )
    other = tmp_path / "other.pub"
    other.write_text(public_key_pem(audit_signer(DevSettings(env="test", data_dir=tmp_path)).public_key))
    code, out, _ = mandate("verify", "--public-key", str(other), database_url=scratch_url)
    assert code == 1 and "[bad_checkpoint]" in out


def test_cli_export_writes_json_lines_in_chain_order(
    mandate: Run, scratch_url: str, stack_settings: Settings, tmp_path: Path
) -> None:
    ids = _seed(scratch_url, stack_settings, 4)
    output = tmp_path / "acme.jsonl"
    code, _, err = mandate("export", "--tenant", "acme", "--output", str(output), database_url=scratch_url)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert (code, err.strip()) == (0, "Exported 4 records.")
    assert [(line["id"], line["seq"]) for line in lines] == [(i, n) for n, i in enumerate(ids, start=1)]
    assert all("actor_identity" not in line for line in lines)


def test_cli_purge_is_recorded_and_the_chain_still_verifies(
    mandate: Run, scratch_url: str, stack_settings: Settings
) -> None:
    _seed(scratch_url, stack_settings, 12)
    code, out, _ = mandate("purge", "--older-than", "0m", database_url=scratch_url)
    assert code == 0 and "acme: purged 12 records (up to record 12)" in out
    assert mandate("verify", database_url=scratch_url)[0] == 0
    with psycopg.connect(scratch_url) as conn:
        operator = conn.execute(
            "SELECT s.issuer FROM mandate.audit_records r JOIN mandate.audit_subjects s ON s.pseudonym = r.actor "
            "WHERE r.event = 'audit.purged'"
        ).fetchone()
    assert operator == (CLI_ISSUER,)


def test_cli_verify_says_in_plain_words_what_is_sealed_and_what_is_not(
    mandate: Run, scratch_url: str, stack_settings: Settings
) -> None:
    _seed(scratch_url, stack_settings, 3)
    code, out, _ = mandate("verify", database_url=scratch_url)
    assert code == 0
    assert out.splitlines()[1] == (
        "  None sealed yet by a signed checkpoint (a checkpoint is signed every 100 records; until then only "
        "the hash chain protects them)."
    )
    _seed(scratch_url, stack_settings, 100)
    code, out, _ = mandate("verify", database_url=scratch_url)
    assert code == 0 and "sealed through" not in out and "unsealed" not in out
    assert out.splitlines()[1].startswith(
        "  Sealed through record 100 (1 signed checkpoint verified); the 3 newer records are not sealed yet"
    )


def test_cli_verify_of_an_unknown_tenant_is_an_error(mandate: Run, scratch_url: str, stack_settings: Settings) -> None:
    _seed(scratch_url, stack_settings, 2)
    assert mandate("verify", "--tenant", "acme", database_url=scratch_url)[0] == 0
    code, out, err = mandate("verify", "--tenant", "nosuch", database_url=scratch_url)
    assert (code, out) == (2, "")
    assert err == (
        "mandate audit verify: unknown tenant 'nosuch': it has no audit records (names are case-sensitive; "
        "without --tenant every tenant is checked).\n"
    )


def test_cli_purge_rejects_a_malformed_period(mandate: Run) -> None:
    with pytest.raises(SystemExit) as exit_:
        mandate("purge", "--older-than", "a while")
    assert exit_.value.code == 2


def test_cli_erase_removes_a_users_threads_and_the_chain_still_verifies(
    mandate: Run, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection, stack_settings: Settings
) -> None:
    carol = token("carol")
    thread = new_thread(client, carol)
    ask(client, carol, thread, "Summarize the latest contract terms for Globex.")
    assert db.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread,)).fetchone() != (0,)

    code, out, _ = mandate("erase", "--issuer", stack_settings.dev_issuer_url, "--subject", "carol")

    assert code == 0 and "recorded in globex" in out
    assert client.get(f"/threads/{thread}", headers=bearer(carol)).status_code == 404
    assert db.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread,)).fetchone() == (0,)
    erased = db.execute(
        "SELECT detail->>'threads' FROM mandate.audit_records WHERE tenant = 'globex' AND event = 'subject.erased' "
        "ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    assert erased is not None and int(erased[0]) >= 1
    assert mandate("verify")[0] == 0


def test_cli_purge_uses_the_retention_setting_or_asks_for_one(
    mandate: Run, scratch_url: str, stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(scratch_url, stack_settings, 3)
    code, _, err = mandate("purge", database_url=scratch_url)
    assert code == 2 and "MANDATE_AUDIT_RETENTION_DAYS" in err
    monkeypatch.setenv("MANDATE_AUDIT_RETENTION_DAYS", "400")
    code, out, _ = mandate("purge", database_url=scratch_url)
    assert code == 0 and out.startswith("Nothing older than")
