"""Tokens for tests: real logins at the dev issuer, and forgeries signed with real keys."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey


def login(base_url: str, user: str, *, otp: str | None = None, scope: str | None = None) -> str:
    """An access token for a demo user from the dev issuer's password grant."""
    form = {"grant_type": "password", "client_id": "mandate-cli", "username": user, "password": "demo"}
    if otp:
        form["otp"] = otp
    if scope:
        form["scope"] = scope
    response = httpx.post(f"{base_url}/dev-idp/token", data=form, timeout=10)
    response.raise_for_status()
    return str(response.json()["access_token"])


def claims_of(token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT, for building forgeries from a real token."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def sign(claims: dict[str, Any], key: RSAKey, **header: Any) -> str:
    """A JWT signed with ``key`` (RS256, ``typ: at+jwt`` and the key's kid unless overridden)."""
    return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": key.kid, **header}, claims, key)


def unsigned(claims: dict[str, Any], **header: Any) -> str:
    """An ``alg: none`` JWT (the classic forgery)."""

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'at+jwt', **header})}.{b64(claims)}."


def dev_issuer_key(data_dir: Path) -> RSAKey:
    """The dev issuer's real signing key (to forge tokens that differ in exactly one claim)."""
    return RSAKey.import_key(json.loads((data_dir / "dev-issuer-key.json").read_text()))


def fresh_claims(template: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``template`` with new iat/exp/jti and ``changes`` applied."""
    now = int(time.time())
    return {**template, "iat": now, "exp": now + 600, "jti": f"test-{now}", **changes}
