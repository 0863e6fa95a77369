"""Opt-in content capture masks what identifies or authenticates someone."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mandate.audit import REDACTED, redact


# Assembled at run time so the source holds no token-shaped literal (secret scanners stay quiet).
_FAKE_JWT = ".".join(
    base64.urlsafe_b64encode(part.encode()).rstrip(b"=").decode()
    for part in ('{"alg":"RS256"}', '{"sub":"alice"}', "signature")
)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"token {_FAKE_JWT} here", _FAKE_JWT.split(".")[0]),
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


def test_redact_masks_a_token_inside_a_run_of_token_characters() -> None:
    assert redact(f"id_{_FAKE_JWT}") == f"id_{REDACTED}"


def test_redact_masks_an_overlong_local_part_from_its_last_64_characters() -> None:
    # RFC 5321 caps a local part at 64 characters; the cap is what keeps a long run linear.
    assert redact("x" * 100 + "@acme.example") == "x" * 36 + REDACTED


# Long runs: those on which the former patterns restarted a scan of the whole run at each character
# (quadratic), and the worst cases of the bounds that replaced them. Redaction has no length limit of
# its own (it also sees tool arguments), so they are five times the longest message: long enough that
# a quadratic pattern takes minutes, not milliseconds.
_LONG = 100_000


def _repeat(unit: str, length: int = _LONG) -> str:
    return (unit * (length // len(unit) + 1))[:length]


_PATHOLOGICAL = [
    (_repeat("eyJ"), _repeat("eyJ")),
    (_repeat("eyJ", _LONG - 4) + ".x.y", REDACTED),
    (_repeat("a"), _repeat("a")),
    ("a@" + _repeat("a.", _LONG - 2), "a@" + _repeat("a.", _LONG - 2)),
    ("x" * 64 + "@" + _repeat("a", _LONG - 65), "x" * 64 + "@" + _repeat("a", _LONG - 65)),
    (_repeat("x@"), _repeat("x@")),
    (_repeat("a", _LONG - 13) + "@acme.example", _repeat("a", _LONG - 77) + REDACTED),
    (_repeat("1-"), f"{REDACTED}-"),
    (_repeat("1", _LONG - 1) + "x", _repeat("1", _LONG - 1) + "x"),
    ("bearer" + " " * (_LONG - 7) + "!", "bearer" + " " * (_LONG - 7) + "!"),
]


@pytest.mark.parametrize(("text", "masked"), _PATHOLOGICAL, ids=lambda value: repr(value[:12]))
def test_redact_masks_pathological_runs_exactly(text: str, masked: str) -> None:
    assert redact(text) == masked


_TEXT = st.text(st.sampled_from("eyJ.-_a@x1 \nbearer%+DE89"), max_size=200) | st.text(max_size=200)


# The deadline is the liveness guard: each pathological example took the former patterns seconds to
# minutes; a linear pass over it takes milliseconds.
@settings(max_examples=200, deadline=timedelta(seconds=2), database=None)
@given(text=_TEXT)
@example(text=_repeat("eyJ")).via("pathological")
@example(text=_repeat("a.b")).via("pathological")
@example(text=_repeat("1-")).via("pathological")
def test_redact_keeps_text_with_nothing_to_mask_and_returns_quickly(text: str) -> None:
    masked = redact(text)
    if not re.search(r"\d|@|eyJ|bearer", text, re.IGNORECASE):
        assert masked == text
