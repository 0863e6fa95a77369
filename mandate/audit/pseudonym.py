"""Pseudonymous subject ids: a keyed HMAC, so spans and logs name nobody directly."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["Pseudonymizer"]


class Pseudonymizer:
    """Maps (issuer, subject) to a stable pseudonym; resolvable only by whoever holds the key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, issuer: str, subject: str) -> str:
        """The pseudonym of ``subject`` at ``issuer`` (``psn_`` + 32 hex characters)."""
        mac = hmac.new(self._key, f"{issuer}\x00{subject}".encode(), hashlib.sha256)
        return "psn_" + mac.hexdigest()[:32]
