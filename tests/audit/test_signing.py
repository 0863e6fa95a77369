"""Signing keys and checkpoints: dev keys are generated once, bad keys refused, signatures bound."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mandate.audit import AuditKeyError, CheckpointSigner, load_public_key, load_signing_key, public_key_pem


def test_load_signing_key_generates_dev_key_once_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing-key.pem"
    first = load_signing_key(None, dev_key_path=path)
    again = load_signing_key(None, dev_key_path=path)
    assert CheckpointSigner(first).key_id == CheckpointSigner(again).key_id
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_load_signing_key_prefers_configured_pem(tmp_path: Path) -> None:
    dev = load_signing_key(None, dev_key_path=tmp_path / "dev.pem")
    configured = (tmp_path / "dev.pem").read_bytes()
    assert CheckpointSigner(load_signing_key(configured)).key_id == CheckpointSigner(dev).key_id


def test_load_signing_key_without_key_or_dev_path_fails() -> None:
    with pytest.raises(AuditKeyError, match="MANDATE_AUDIT_SIGNING_KEY"):
        load_signing_key(None)


def test_load_signing_key_refuses_other_key_types_and_garbage() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(AuditKeyError, match="Ed25519"):
        load_signing_key(ec_pem)
    with pytest.raises(AuditKeyError, match="readable"):
        load_signing_key(b"not a key")


def test_checkpoint_verifies_only_unchanged_with_the_right_key(tmp_path: Path) -> None:
    signer = CheckpointSigner(load_signing_key(None, dev_key_path=tmp_path / "k.pem"))
    other = CheckpointSigner(load_signing_key(None, dev_key_path=tmp_path / "other.pem"))
    checkpoint = signer.sign(tenant="acme", seq=100, chain_hash=b"\x01" * 32)
    public = load_public_key(public_key_pem(signer.public_key).encode())
    assert checkpoint.verify([other.public_key, public])
    assert not checkpoint.verify([other.public_key])
    assert not dataclasses.replace(checkpoint, seq=200).verify([public])
    assert not dataclasses.replace(checkpoint, tenant="globex").verify([public])
    assert not dataclasses.replace(checkpoint, hash=b"\x02" * 32).verify([public])
    with pytest.raises(AuditKeyError):
        load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
