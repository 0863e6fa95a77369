"""Signing in at the embedded Keycloak the way a person does (its real login pages), and TOTP codes.

The login pages are driven over plain HTTP: the authorization request (PKCE S256), the password
form, the one-time-code form when Keycloak asks for it, then the code is redeemed. Keycloak sets
its cookies ``Secure`` even on loopback HTTP (browsers accept that for 127.0.0.1); the standard
cookie jar would not send them back, so a small jar of our own does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
import struct
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

CLI_CLIENT = "mandate-cli"
"""The realm's public client for the CLI and the tests (code + PKCE, and the password grant)."""
LOOPBACK_REDIRECT = "http://127.0.0.1/callback"
"""Never served: the code is read from the ``Location`` header."""
PASSWORD = "demo"
_FORM_ACTION = re.compile(r'<form[^>]*\baction="([^"]+)"', re.S)


def otp_secret(user: str) -> bytes:
    """The TOTP key the realm file seeds for ``user`` (Keycloak keys HMAC with the secret's UTF-8 bytes)."""
    return f"mandate-demo-totp-{user}".encode()


def totp(secret: bytes, *, at: float | None = None, step: int = 30, digits: int = 6) -> str:
    """RFC 6238 TOTP with HMAC-SHA1 (RFC 4226 dynamic truncation): the realm's OTP policy."""
    counter = int((time.time() if at is None else at) // step)
    mac = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF) % 10**digits
    return f"{code:0{digits}d}"


class Jar:
    """Cookies by name, sent back on every request (Keycloak's ``Secure`` cookies included)."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{name}={value}" for name, value in self.cookies.items())} if self.cookies else {}

    def keep(self, response: httpx.Response) -> httpx.Response:
        for line in response.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if re.search(r";\s*Max-Age=0\b", line, re.IGNORECASE) or not value:
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value
        return response


class LoginRefused(AssertionError):
    """Raised when Keycloak's login page does not let the user through (the page is in the message)."""


def browser_login(
    issuer: str,
    user: str,
    *,
    otp: bool | None = None,
    acr_values: str | None = None,
    max_age: int | None = None,
    otp_code: str | None = None,
    client_id: str = CLI_CLIENT,
    scope: str = "openid",
) -> dict[str, Any]:
    """Sign ``user`` in through Keycloak's login pages; returns the token response.

    Args:
        issuer: The realm's issuer URL.
        user: A demo user (password ``demo``).
        otp: ``True`` asks for MFA (``acr_values=urn:mandate:acr:mfa``) unless ``acr_values`` is given;
            the one-time code is entered whenever Keycloak asks for it.
        acr_values: The ``acr_values`` of the authorization request (RFC 9470's challenge goes here).
        max_age: The ``max_age`` of the authorization request.
        otp_code: A code to type instead of the right one (to see a wrong code refused).
        client_id: The public client to sign in with.
        scope: Requested scope.

    Raises:
        LoginRefused: A page other than the expected one came back.
    """
    if otp and acr_values is None:
        acr_values = "urn:mandate:acr:mfa"
    verifier = secrets.token_urlsafe(48)
    params = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": LOOPBACK_REDIRECT,
        "scope": scope,
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    if acr_values:
        params["acr_values"] = acr_values
    if max_age is not None:
        params["max_age"] = str(max_age)
    jar = Jar()
    with httpx.Client(timeout=60, follow_redirects=False) as http:
        authorization = f"{issuer}/protocol/openid-connect/auth?{urlencode(params)}"
        location = login_pages(http, jar, authorization, user, otp_code=otp_code)
        query = parse_qs(urlsplit(location).query)
        if not location.startswith(LOOPBACK_REDIRECT) or "code" not in query:
            raise LoginRefused(f"Keycloak sent {user} elsewhere: {location}")
        assert query["state"] == [params["state"]]
        tokens = http.post(
            f"{issuer}/protocol/openid-connect/token",
            data={
                "grant_type": "authorization_code",
                "code": query["code"][0],
                "redirect_uri": LOOPBACK_REDIRECT,
                "code_verifier": verifier,
                "client_id": client_id,
            },
        )
    tokens.raise_for_status()
    return dict(tokens.json())


def login_pages(http: httpx.Client, jar: Jar, authorization_url: str, user: str, *, otp_code: str | None = None) -> str:
    """Go through Keycloak's login pages from an authorization request; returns where Keycloak redirects.

    Types the password, and the one-time code if Keycloak asks for one (the right one unless
    ``otp_code`` is given).

    Raises:
        LoginRefused: Keycloak answered with a page instead of the redirect (a wrong code, …).
    """
    page = jar.keep(http.get(authorization_url, headers=jar.header()))
    answer = jar.keep(
        http.post(
            _action(page), data={"username": user, "password": PASSWORD, "credentialId": ""}, headers=jar.header()
        )
    )
    if answer.status_code == 200 and 'name="otp"' in answer.text:
        code = otp_code or totp(otp_secret(user))
        answer = jar.keep(http.post(_action(answer), data={"otp": code}, headers=jar.header()))
    if answer.status_code != 302 or "location" not in answer.headers:
        raise LoginRefused(f"Keycloak did not sign {user} in ({answer.status_code}):\n{answer.text[:3000]}")
    return str(answer.headers["location"])


def password_grant(issuer: str, user: str, *, otp: bool = False, client_id: str = CLI_CLIENT) -> httpx.Response:
    """The resource owner password grant (allowed for the CLI client only), with ``totp`` when asked."""
    form = {"grant_type": "password", "client_id": client_id, "username": user, "password": PASSWORD, "scope": "openid"}
    if otp:
        form["totp"] = totp(otp_secret(user))
    return httpx.post(f"{issuer}/protocol/openid-connect/token", data=form, timeout=60)


def exchange(
    issuer: str, subject_token: str, *, client_id: str, client_secret: str, audience: str | None, scope: str
) -> httpx.Response:
    """RFC 8693 standard token exchange at Keycloak, as an agent client (what the broker sends)."""
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": subject_token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "scope": scope,
    }
    if audience is not None:
        form["audience"] = audience
    return httpx.post(f"{issuer}/protocol/openid-connect/token", data=form, auth=(client_id, client_secret), timeout=60)


def _action(page: httpx.Response) -> str:
    found = _FORM_ACTION.search(page.text)
    if page.status_code != 200 or found is None:
        raise LoginRefused(f"no login form ({page.status_code}):\n{page.text[:3000]}")
    return html.unescape(found.group(1))
