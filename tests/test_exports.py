"""Each room's ``__all__`` names exactly its public members, and they exist."""

from __future__ import annotations

import importlib

import pytest

ROOMS = ["auth", "audit", "retrieval", "tools", "nodes", "graphs", "auth.dev_issuer", "gate", "evidence", "contract", "sdk"]


@pytest.mark.parametrize("room", ROOMS)
def test_room_exports_match_public_names(room: str) -> None:
    module = importlib.import_module(f"mandate.{room}")
    exported = set(module.__all__)
    assert all(hasattr(module, name) for name in exported)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, type(importlib)) and name != "annotations"
    } | {name for name in exported if isinstance(getattr(module, name, None), type(importlib))}  # a module re-exported on purpose
    assert public == exported
