"""A fresh database per test, cloned from a migrated template on the session's embedded Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from mandate import audit, auth
from mandate._db import Pool, apply_migrations, open_pool
from mandate.audit import AuditLog, CheckpointSigner
from mandate.runtime.settings import Settings
from mandate.runtime.queries import MIGRATIONS as SERVICE_MIGRATIONS
from tests.audit.helpers import CHECKPOINT_EVERY, database_dsn, temporary_database

ROOM_MIGRATIONS = (("auth", auth.MIGRATIONS), ("audit", audit.MIGRATIONS), ("service", SERVICE_MIGRATIONS))


@pytest.fixture(scope="session")
async def migrated_template(stack_settings: Settings) -> AsyncIterator[str]:
    """A database with every table Mandate creates (auth, audit, service rooms, LangGraph's)."""
    with temporary_database(stack_settings) as name:
        pool = await open_pool(database_dsn(stack_settings.database_url, name), max_size=1)
        try:
            for room, migrations in ROOM_MIGRATIONS:
                await apply_migrations(pool, room=room, migrations=migrations)
            await AsyncPostgresSaver(pool).setup()  # type: ignore[arg-type]
        finally:
            await pool.close()
        yield name


@pytest.fixture()
def database_url(stack_settings: Settings, migrated_template: str) -> Iterator[str]:
    """A migrated database of this test's own, dropped afterwards."""
    with temporary_database(stack_settings, template=migrated_template) as name:
        yield database_dsn(stack_settings.database_url, name)


@pytest.fixture()
async def pool(database_url: str) -> AsyncIterator[Pool]:
    """A pool on this test's database."""
    pool = await open_pool(database_url, max_size=8)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture()
def signer() -> CheckpointSigner:
    """A checkpoint signer with a fresh Ed25519 key."""
    return CheckpointSigner(Ed25519PrivateKey.generate())


@pytest.fixture()
def log(pool: Pool, signer: CheckpointSigner) -> AuditLog:
    """The real audit log, sealing every :data:`CHECKPOINT_EVERY` records."""
    return AuditLog(pool=pool, signer=signer, checkpoint_every=CHECKPOINT_EVERY)
