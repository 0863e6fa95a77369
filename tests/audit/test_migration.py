"""Records written before the chain existed are chained, in time order, by the migration."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mandate import audit
from mandate._db import Pool, apply_migrations, open_pool
from mandate.audit import AuditLog, AuditQuery, CheckpointSigner, search_records, verify_chains
from mandate.runtime.settings import Settings
from tests.audit.helpers import CHECKPOINT_EVERY, database_dsn, temporary_database, write

LEGACY_INSERT = """
INSERT INTO mandate.audit_records (id, recorded_at, tenant, thread_id, event, actor, decision, detail)
VALUES (gen_random_uuid(), now() - make_interval(secs => %(age)s), %(tenant)s, 't1', 'tool.started', 'psn_old',
        'allowed', '{"legacy": true}')
"""


@pytest.fixture()
async def legacy_pool(stack_settings: Settings) -> AsyncIterator[Pool]:
    """A database at audit migration 1 only, holding 25 unchained acme records and 2 globex ones."""
    with temporary_database(stack_settings) as name:
        pool = await open_pool(database_dsn(stack_settings.database_url, name), max_size=4)
        try:
            await apply_migrations(pool, room="audit", migrations=audit.MIGRATIONS[:1])
            async with pool.connection() as conn:
                for age in range(25, 0, -1):
                    await conn.execute(LEGACY_INSERT, {"age": age, "tenant": "acme"})
                for age in (2, 1):
                    await conn.execute(LEGACY_INSERT, {"age": age, "tenant": "globex"})
            yield pool
        finally:
            await pool.close()


async def test_migration_chains_legacy_records_and_the_next_checkpoint_seals_them(
    legacy_pool: Pool, signer: CheckpointSigner
) -> None:
    await apply_migrations(legacy_pool, room="audit", migrations=audit.MIGRATIONS)
    keys = [signer.public_key]
    acme, globex = await verify_chains(legacy_pool, keys=keys, checkpoint_every=CHECKPOINT_EVERY)
    assert (globex.ok, globex.records, globex.last_seq) == (True, 2, 2)
    assert (acme.records, acme.last_seq) == (25, 25)  # every link holds ...
    assert acme.problem is not None and (acme.problem.kind, acme.problem.seq) == ("unsealed", 20)  # ... unsealed
    [oldest] = await search_records(legacy_pool, AuditQuery(tenant="acme", before_seq=2))
    assert oldest.detail == {"legacy": True}

    await write(AuditLog(pool=legacy_pool, signer=signer, checkpoint_every=CHECKPOINT_EVERY), 5)
    [acme, _] = await verify_chains(legacy_pool, keys=keys, checkpoint_every=CHECKPOINT_EVERY)
    assert (acme.ok, acme.last_seq, acme.sealed_through) == (True, 30, 30)
