"""Fixtures of the retrieval tests: real Postgres + pgvector and real OpenFGA from the session stack."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mandate.auth import ensure_store_and_model
from mandate.runtime.settings import Settings
from mandate.runtime.services import MODEL_PATH
from tests.retrieval.support import Rooms, open_rooms


@pytest.fixture(scope="session")
async def fga_ids(stack_settings: Settings) -> tuple[str, str]:
    """Store and model id of the session's OpenFGA store."""
    return await ensure_store_and_model(
        api_url=stack_settings.fga_api_url, store_name=stack_settings.fga_store_name, model_path=MODEL_PATH
    )


@pytest.fixture()
async def rooms(stack_settings: Settings, fga_ids: tuple[str, str]) -> AsyncIterator[Rooms]:
    """Retrieval services with the lexical embedder."""
    async with open_rooms(stack_settings, fga_ids) as opened:
        yield opened
