"""The token vault: a user's token kept, encrypted, for as long as it is valid, for one thread.

When a run waits for an approver, the requester's token must outlive the request so the tool can
still be called *as the requester* afterwards. It is sealed with AES-256-GCM; the associated data
binds each ciphertext to its (issuer, subject, thread) so a row copied under another key does not
decrypt. An expired entry is never returned: the run asks the user to sign in again instead.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg import Error as PsycopgError

from mandate._db import Pool
from mandate.auth import queries
from mandate.auth.errors import VaultUnavailableError

__all__ = ["TokenVault", "TokenVaultStore"]


class TokenVault(Protocol):
    """What nodes and the service need from the vault."""

    async def put(self, *, issuer: str, subject: str, thread_id: str, token: str, expires_at: float) -> None: ...

    async def get(self, *, issuer: str, subject: str, thread_id: str, now: float) -> str | None: ...


class TokenVaultStore:
    """The real :class:`TokenVault`, in ``mandate.token_vault``."""

    def __init__(self, *, pool: Pool, secret: bytes) -> None:
        # A fixed-length key from any secret; the secret itself is validated by settings.
        self._aead = AESGCM(hashlib.sha256(b"mandate-token-vault\x00" + secret).digest())
        self._pool = pool

    async def put(self, *, issuer: str, subject: str, thread_id: str, token: str, expires_at: float) -> None:
        """Store (or replace) the token of ``subject`` for ``thread_id`` until ``expires_at``.

        Raises:
            VaultUnavailableError: The database refused the write.
        """
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, token.encode(), _aad(issuer, subject, thread_id))
        params = {
            "issuer": issuer,
            "subject": subject,
            "thread_id": thread_id,
            "nonce": nonce,
            "ciphertext": sealed,
            "expires_at": expires_at,
        }
        try:
            async with self._pool.connection() as conn:
                await conn.execute(queries.UPSERT_VAULT_ENTRY, params)
        except PsycopgError as exc:
            raise VaultUnavailableError("The token vault is unavailable.") from exc

    async def get(self, *, issuer: str, subject: str, thread_id: str, now: float) -> str | None:
        """The stored token, or ``None`` if there is none, it expired, or it does not decrypt.

        Raises:
            VaultUnavailableError: The database failed.
        """
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    queries.SELECT_VAULT_ENTRY, {"issuer": issuer, "subject": subject, "thread_id": thread_id}
                )
                row = await cur.fetchone()
        except PsycopgError as exc:
            raise VaultUnavailableError("The token vault is unavailable.") from exc
        if row is None or float(row["expires_at"]) <= now:
            return None
        try:
            plain = self._aead.decrypt(bytes(row["nonce"]), bytes(row["ciphertext"]), _aad(issuer, subject, thread_id))
        except InvalidTag:
            return None
        return plain.decode()


def _aad(issuer: str, subject: str, thread_id: str) -> bytes:
    return f"{issuer}\x00{subject}\x00{thread_id}".encode()
