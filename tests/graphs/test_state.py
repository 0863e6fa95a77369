"""The principal is write-once: a thread's requester cannot be replaced."""

from __future__ import annotations

import pytest

from mandate.auth import PrincipalState
from mandate.contract.errors import PrincipalImmutableError
from mandate.contract.state import write_once

ALICE = PrincipalState(issuer="i", subject="alice", tenant="acme", roles=[], groups=["finance"], client_id="c")


def test_write_once_sets_principal_when_empty() -> None:
    assert write_once(None, ALICE) == ALICE


def test_write_once_keeps_principal_when_update_is_none() -> None:
    assert write_once(ALICE, None) == ALICE


def test_write_once_accepts_identical_principal() -> None:
    assert write_once(ALICE, PrincipalState(**ALICE)) == ALICE


@pytest.mark.parametrize("change", [{"subject": "bob"}, {"tenant": "globex"}, {"groups": ["finance", "legal"]}])
def test_write_once_refuses_a_different_principal(change: dict[str, object]) -> None:
    with pytest.raises(PrincipalImmutableError):
        write_once(ALICE, PrincipalState(**{**ALICE, **change}))  # type: ignore[typeddict-item]
