"""Redaction for opt-in content capture: what may identify or authenticate someone is masked.

It runs on user-sized text on the event loop, and ``re`` holds the GIL while it matches, so every
pattern is linear in the text: none restarts an unbounded scan at each character of a run it has
already read.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact"]

REDACTED = "[REDACTED]"
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # JWTs. A token starts at the first "eyJ" of a run of base64url characters, not necessarily at
    # the run's start: the pattern starts at the run's start and keeps what precedes that "eyJ", so
    # a long run without the token's dots is read once, not once per "eyJ" in it.
    (
        re.compile(
            r"(?<![A-Za-z0-9_-])(?P<keep>(?:(?!eyJ)[A-Za-z0-9_-])*)"
            r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
        ),
        rf"\g<keep>{REDACTED}",
    ),
    (re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+"), REDACTED),  # bearer credentials
    # E-mail addresses. A local part is at most 64 characters (RFC 5321); the bound caps the work
    # started at each character of a long run of local-part characters.
    (re.compile(r"[A-Za-z0-9._%+-]{1,64}+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), REDACTED),
    (re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b"), REDACTED),  # IBANs
    (re.compile(r"\b\d(?:[ -]?\d){7,}\b"), REDACTED),  # long numbers: accounts, cards, phones
)


def redact(text: str) -> str:
    """``text`` with tokens, e-mail addresses, IBANs and long numbers replaced by ``[REDACTED]``."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
