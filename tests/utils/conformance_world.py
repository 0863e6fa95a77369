"""Grants the conformance tests add to the demo world for their module only, in the real OpenFGA."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from mandate.auth import Relationship, ensure_store_and_model
from mandate.auth import vocabulary as fga
from mandate.runtime.services import MODEL_PATH
from mandate.runtime.settings import DEV_ISSUER_KEY, Settings
from tests.utils.services import authorizer

__all__ = ["ASSISTANT_ADMINS", "granted"]

ASSISTANT_ADMINS = (
    Relationship(fga.user(DEV_ISSUER_KEY, "dave"), fga.ASSISTANT_ADMIN, fga.tenant("acme")),
    Relationship(fga.user(DEV_ISSUER_KEY, "carol"), fga.ASSISTANT_ADMIN, fga.tenant("globex")),
)
"""dave administers acme's assistants and carol globex's (the demo world makes bob acme's admin; the
tests use others so that they neither rely on nor remove the seeded grant)."""


@asynccontextmanager
async def granted(settings: Settings, grants: Sequence[Relationship]) -> AsyncIterator[None]:
    """``grants`` written for the block, deleted after it."""
    store_id, model_id = await ensure_store_and_model(
        api_url=settings.fga_api_url, store_name=settings.fga_store_name, model_path=MODEL_PATH
    )
    authz = authorizer(settings.fga_api_url, store_id, model_id)
    await authz.write(writes=grants)
    try:
        yield
    finally:
        await authz.write(deletes=grants)
        await authz._client.close()  # noqa: SLF001  (test teardown of the SDK client)
