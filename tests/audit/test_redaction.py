"""Opt-in content capture masks what identifies or authenticates someone."""

from __future__ import annotations

import pytest

from mandate.audit import REDACTED, redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl here", "eyJhbGciOiJSUzI1NiJ9"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("write to alice@acme.example please", "alice@acme.example"),
        ("pay DE89 3704 0044 0532 0130 00 today", "3704 0044"),
        ("card 4111 1111 1111 1111", "4111"),
    ],
)
def test_redact_masks_credentials_and_identifiers(text: str, secret: str) -> None:
    masked = redact(text)
    assert secret not in masked
    assert REDACTED in masked


def test_redact_keeps_ordinary_text() -> None:
    assert redact("Open a ticket: VPN is down in room 42") == "Open a ticket: VPN is down in room 42"
