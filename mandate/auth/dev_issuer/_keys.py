"""The dev issuer's signing key: loaded from a private JWK file, or generated and persisted there."""

from __future__ import annotations

import json
import os
from pathlib import Path

from joserfc.jwk import KeyParameters, RSAKey

__all__ = ["SIGNING_ALG", "load_or_create_signing_key"]

SIGNING_ALG = "RS256"
"""The only algorithm the dev issuer signs with."""

_KEY_SIZE = 2048
_KEY_PARAMETERS: KeyParameters = {"use": "sig", "alg": SIGNING_ALG}
_FILE_MODE = 0o600


def load_or_create_signing_key(path: Path) -> RSAKey:
    """Load the RSA signing key from ``path``, generating and saving one if the file does not exist.

    The file holds the private key as a JWK JSON object and is created with mode 0600. The key's
    ``kid`` is always its RFC 7638 thumbprint, so tokens signed before a restart still verify.

    Args:
        path: Where the private JWK lives; missing parent directories are created.

    Returns:
        The private RSA key, with ``kid``, ``use`` and ``alg`` set.

    Raises:
        ValueError: If the file exists but does not hold a private RSA key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _create(path)
    stored = {name: value for name, value in json.loads(text).items() if name != "kid"}
    key = RSAKey.import_key(stored, parameters=_KEY_PARAMETERS)
    if not key.is_private:
        raise ValueError(f"{path} holds no private RSA key")
    key.ensure_kid()
    return key


def _create(path: Path) -> RSAKey:
    key = RSAKey.generate_key(_KEY_SIZE, parameters=_KEY_PARAMETERS, private=True, auto_kid=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump(key.as_dict(private=True), file)
    return key
