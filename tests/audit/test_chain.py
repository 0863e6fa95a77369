"""The hash chain: intact chains verify; each kind of tampering is detected and located."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import psycopg

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mandate._db import Pool
from mandate.audit import AuditLog, CheckpointSigner, ChainReport, verify_chains
from tests.audit.helpers import CHECKPOINT_EVERY, recompute_from, tamper, write



async def _verify(pool: Pool, signer: CheckpointSigner, tenant: str = "acme") -> ChainReport:
    [report] = await verify_chains(pool, keys=[signer.public_key], tenant=tenant, checkpoint_every=CHECKPOINT_EVERY)
    return report


async def test_chain_intact_verifies_and_is_sealed_every_interval(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    await write(log, 25)
    await write(log, 3, tenant="globex")
    reports = await verify_chains(pool, keys=[signer.public_key], checkpoint_every=CHECKPOINT_EVERY)
    assert [(r.tenant, r.ok, r.records) for r in reports] == [("acme", True, 25), ("globex", True, 3)]
    acme = reports[0]
    assert (acme.first_seq, acme.last_seq, acme.checkpoints, acme.sealed_through, acme.unsealed) == (1, 25, 2, 20, 5)


async def test_chain_concurrent_writers_keep_one_gapless_chain(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    await asyncio.gather(*(write(log, 15) for _ in range(8)))
    report = await _verify(pool, signer)
    assert report.ok, report.problem
    assert (report.records, report.last_seq, report.sealed_through) == (120, 120, 120)


async def test_verify_modified_record_is_named(pool: Pool, log: AuditLog, signer: CheckpointSigner) -> None:
    ids = await write(log, 15)
    await tamper(pool, ("UPDATE mandate.audit_records SET decision = 'denied' WHERE id = %(id)s", {"id": ids[6]}))
    problem = (await _verify(pool, signer)).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("altered", 7, ids[6])


async def test_verify_deleted_record_is_named(pool: Pool, log: AuditLog, signer: CheckpointSigner) -> None:
    ids = await write(log, 15)
    await tamper(pool, ("DELETE FROM mandate.audit_records WHERE id = %(id)s", {"id": ids[6]}))
    problem = (await _verify(pool, signer)).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("missing", 7, None)
    assert ids[7] in problem.message


async def test_verify_deleted_then_renumbered_records_are_found(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    ids = await write(log, 15)
    await tamper(
        pool,
        ("DELETE FROM mandate.audit_records WHERE id = %(id)s", {"id": ids[6]}),
        ("UPDATE mandate.audit_records SET seq = -seq WHERE tenant = 'acme' AND seq > 7", {}),
        ("UPDATE mandate.audit_records SET seq = -seq - 1 WHERE tenant = 'acme' AND seq < 0", {}),
    )
    problem = (await _verify(pool, signer)).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("out_of_order", 7, ids[7])


async def test_verify_inserted_forgery_is_named(pool: Pool, log: AuditLog, signer: CheckpointSigner) -> None:
    ids = await write(log, 15)
    forged = str(uuid.uuid4())
    await tamper(
        pool,
        ("UPDATE mandate.audit_records SET seq = -seq WHERE tenant = 'acme' AND seq >= 7", {}),
        ("UPDATE mandate.audit_records SET seq = -seq + 1 WHERE tenant = 'acme' AND seq < 0", {}),
        (
            "INSERT INTO mandate.audit_records (id, tenant, event, actor, seq, prev_hash, hash) "
            "SELECT %(id)s, 'acme', 'tool.succeeded', 'psn_forged', 7, hash, %(hash)s "
            "FROM mandate.audit_records WHERE id = %(prev)s",
            {"id": forged, "hash": hashlib.sha256(b"forged").digest(), "prev": ids[5]},
        ),
    )
    problem = (await _verify(pool, signer)).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("altered", 7, forged)


async def test_verify_inserted_record_with_valid_hash_is_named(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    ids = await write(log, 15)
    forged = str(uuid.uuid4())
    await tamper(
        pool,
        ("UPDATE mandate.audit_records SET seq = -seq WHERE tenant = 'acme' AND seq >= 7", {}),
        ("UPDATE mandate.audit_records SET seq = -seq + 1 WHERE tenant = 'acme' AND seq < 0", {}),
        (
            "INSERT INTO mandate.audit_records (id, recorded_at, tenant, event, actor, seq, prev_hash, hash) "
            "SELECT %(id)s, recorded_at, 'acme', 'tool.succeeded', 'psn_forged', 7, hash, '' "
            "FROM mandate.audit_records WHERE id = %(prev)s",
            {"id": forged, "prev": ids[5]},
        ),
        ("UPDATE mandate.audit_records r SET hash = mandate.audit_record_hash(r) WHERE id = %(id)s", {"id": forged}),
    )
    problem = (await _verify(pool, signer)).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("inserted", 7, forged)


async def test_verify_reordered_records_are_named(pool: Pool, log: AuditLog, signer: CheckpointSigner) -> None:
    ids = await write(log, 15)
    await tamper(
        pool,
        ("UPDATE mandate.audit_records SET seq = -1 WHERE id = %(id)s", {"id": ids[6]}),
        ("UPDATE mandate.audit_records SET seq = 7 WHERE id = %(id)s", {"id": ids[7]}),
        ("UPDATE mandate.audit_records SET seq = 8 WHERE id = %(id)s", {"id": ids[6]}),
    )
    problem = (await _verify(pool, signer)).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("out_of_order", 7, ids[7])


async def test_verify_recomputed_chain_is_caught_by_signed_checkpoint(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    ids = await write(log, 25)
    await tamper(
        pool,
        ("UPDATE mandate.audit_records SET decision = 'denied' WHERE id = %(id)s", {"id": ids[13]}),
        recompute_from(14),
    )
    problem = (await _verify(pool, signer)).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == ("rewritten", 20)
    assert "after 10" in problem.message


async def test_verify_rewrite_hidden_by_deleting_checkpoints_is_caught(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    ids = await write(log, 25)
    await tamper(
        pool,
        ("UPDATE mandate.audit_records SET decision = 'denied' WHERE id = %(id)s", {"id": ids[13]}),
        recompute_from(14),
        ("ALTER TABLE mandate.audit_checkpoints DISABLE TRIGGER USER", {}),
        ("DELETE FROM mandate.audit_checkpoints WHERE tenant = 'acme' AND seq > 10", {}),
    )
    problem = (await _verify(pool, signer)).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == ("unsealed", 20)


async def test_verify_checkpoint_signed_by_another_key_is_rejected(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    await write(log, 12)
    impostor = CheckpointSigner(Ed25519PrivateKey.generate())
    forged = impostor.sign(tenant="acme", seq=5, chain_hash=b"\x00" * 32)
    await tamper(
        pool,
        (
            "INSERT INTO mandate.audit_checkpoints (tenant, seq, hash, signed_at, key_id, signature) "
            "VALUES ('acme', 5, %(hash)s, %(at)s, %(key)s, %(sig)s)",
            {"hash": forged.hash, "at": forged.signed_at, "key": signer.key_id, "sig": forged.signature},
        ),
    )
    problem = (await _verify(pool, signer)).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == ("bad_checkpoint", 5)


async def test_verify_truncated_tail_behind_a_checkpoint_is_caught(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    await write(log, 25)
    await tamper(pool, ("DELETE FROM mandate.audit_records WHERE tenant = 'acme' AND seq >= 20", {}))
    problem = (await _verify(pool, signer)).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == ("missing", 20)


async def test_verify_records_of_other_tenants_are_unaffected(
    pool: Pool, log: AuditLog, signer: CheckpointSigner
) -> None:
    ids = await write(log, 5)
    await write(log, 5, tenant="globex")
    await tamper(pool, ("UPDATE mandate.audit_records SET actor = 'psn_x' WHERE id = %(id)s", {"id": ids[0]}))
    assert not (await _verify(pool, signer)).ok
    assert (await _verify(pool, signer, tenant="globex")).ok


async def test_audit_records_refuse_update_delete_and_truncate(pool: Pool, log: AuditLog) -> None:
    await write(log, CHECKPOINT_EVERY)
    async with pool.connection() as conn:
        for statement in (
            "UPDATE mandate.audit_records SET decision = 'x'",
            "DELETE FROM mandate.audit_records",
            "TRUNCATE mandate.audit_records",
            "DELETE FROM mandate.audit_checkpoints",
            "TRUNCATE mandate.audit_checkpoints",
        ):
            try:
                await conn.execute(statement)
            except psycopg.errors.RaiseException as exc:
                assert "append-only" in str(exc)
            else:
                raise AssertionError(f"{statement} was allowed")
