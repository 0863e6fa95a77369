"""Redaction for opt-in content capture: what may identify or authenticate someone is masked."""

from __future__ import annotations

import re

__all__ = ["REDACTED", "redact"]

REDACTED = "[REDACTED]"
_PATTERNS = (
    re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._~+/=-]+"),  # bearer credentials
    re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"),  # e-mail addresses
    re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]{4}){2,7}(?:\s?[A-Z0-9]{1,4})?\b"),  # IBANs
    re.compile(r"\b\d(?:[ -]?\d){7,}\b"),  # long numbers: accounts, cards, phones
)


def redact(text: str) -> str:
    """``text`` with tokens, e-mail addresses, IBANs and long numbers replaced by ``[REDACTED]``."""
    for pattern in _PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text
