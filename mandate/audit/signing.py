"""Signed checkpoints: an Ed25519 signature over a tenant's chain head at a given position."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mandate.audit._chain import checkpoint_message
from mandate.audit.errors import AuditKeyError

__all__ = [
    "DEV_SIGNING_KEY_FILE",
    "Checkpoint",
    "CheckpointSigner",
    "key_id",
    "load_public_key",
    "load_signing_key",
    "public_key_pem",
]

DEV_SIGNING_KEY_FILE = "audit-signing-key.pem"
"""Name of the generated dev/test signing key under the data directory."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Checkpoint:
    """A signed statement: the chain of ``tenant`` had hash ``hash`` at position ``seq``."""

    tenant: str
    seq: int
    """Position of the record whose hash is sealed."""
    hash: bytes
    """That record's chain hash."""
    signed_at: datetime
    key_id: str
    """Fingerprint of the public key that verifies ``signature`` (see :func:`key_id`)."""
    signature: bytes = field(repr=False)

    def verify(self, keys: Sequence[Ed25519PublicKey]) -> bool:
        """Whether one of ``keys`` with this checkpoint's key id verifies its signature."""
        message = checkpoint_message(tenant=self.tenant, seq=self.seq, chain_hash=self.hash, signed_at=self.signed_at)
        for key in keys:
            if key_id(key) != self.key_id:
                continue
            try:
                key.verify(self.signature, message)
            except InvalidSignature:
                return False
            return True
        return False


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of ``public_key``: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class CheckpointSigner:
    """Signs checkpoints with one Ed25519 private key; the key never leaves this object."""

    def __init__(self, key: Ed25519PrivateKey, *, clock: Callable[[], datetime] | None = None) -> None:
        self._key = key
        self._clock = clock or (lambda: datetime.now(UTC))
        self.public_key = key.public_key()
        """The key that verifies this signer's checkpoints."""
        self.key_id = key_id(self.public_key)

    def sign(self, *, tenant: str, seq: int, chain_hash: bytes) -> Checkpoint:
        """A checkpoint sealing ``tenant``'s chain at ``seq`` with hash ``chain_hash``."""
        # Microsecond precision, as stored by Postgres, so that the signed text survives the round trip.
        signed_at = self._clock().astimezone(UTC)
        message = checkpoint_message(tenant=tenant, seq=seq, chain_hash=chain_hash, signed_at=signed_at)
        return Checkpoint(
            tenant=tenant, seq=seq, hash=chain_hash, signed_at=signed_at, key_id=self.key_id,
            signature=self._key.sign(message),
        )


def load_signing_key(pem: bytes | None, *, dev_key_path: Path | None = None) -> Ed25519PrivateKey:
    """The Ed25519 signing key from PEM (PKCS#8), or the dev key kept at ``dev_key_path``.

    Args:
        pem: The configured key (``MANDATE_AUDIT_SIGNING_KEY``), or ``None``.
        dev_key_path: Where to keep a generated key when none is configured; pass it only in
            dev and test, so production without a configured key fails instead.

    Returns:
        The private key.

    Raises:
        AuditKeyError: The PEM is not an Ed25519 private key, or there is no key and no dev path.
    """
    if pem is None:
        if dev_key_path is None:
            raise AuditKeyError("No audit signing key is configured (MANDATE_AUDIT_SIGNING_KEY).")
        _create_private(dev_key_path)
        pem = dev_key_path.read_bytes()
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AuditKeyError("The audit signing key is not a readable PEM private key.") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError("The audit signing key must be an Ed25519 key.")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (to verify without holding the signing key).

    Raises:
        AuditKeyError: The PEM is not an Ed25519 public key.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AuditKeyError("The audit verification key is not a readable PEM public key.") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditKeyError("The audit verification key must be an Ed25519 key.")
    return key


def public_key_pem(key: Ed25519PublicKey) -> str:
    """``key`` as PEM text, to hand to auditors who verify exports."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _create_private(path: Path) -> None:
    """Generate a key into ``path`` (owner-only) unless it exists; a concurrent creator wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
