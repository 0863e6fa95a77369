"""``/ui/oidc``: the approver page's production sign-in, OIDC authorization code flow with PKCE.

The page is an OIDC relying party of one configured issuer (``ui_oidc_issuer``, which must also be a
trusted issuer of the API). Sign-in:

1. ``GET /ui/oidc/login`` makes a fresh ``state``, ``nonce`` and PKCE verifier (S256), seals them
   into a short-lived cookie (AES-256-GCM under a key derived from the vault secret; HttpOnly,
   SameSite=Lax so that it comes back with the issuer's redirect, path ``/ui/oidc``) and sends the
   browser to the issuer's authorization endpoint, asking for ``ui_acr_values`` (and, with
   ``?step_up=1``, for a fresh login: ``max_age=300``, MFA).
2. ``GET /ui/oidc/callback`` refuses a missing or expired cookie, a ``state`` that differs from the
   sealed one and an ``iss`` (RFC 9207) of another issuer; exchanges the code with the verifier
   (client authenticated by its secret); verifies the ID token (signature by the issuer's JWKS with
   the issuer's pinned algorithms, ``iss``, ``aud``, ``azp``, ``exp``, ``iat``, the sealed ``nonce``,
   ``at_hash``, ``auth_time`` when ``max_age`` was asked) and the access token exactly as every API
   request is verified (allow-list, audience, tenant, revocation); both must name the same subject.
   Then it starts the same server-side session as the dev sign-in (``services.sessions``: the cookie
   holds an opaque id, the access token is sealed in the vault, expiry and revocation as there).
   The ID token is sealed in the vault too, beside the session, only as the logout hint.
3. Sign-out (``POST /ui/oidc/sign-out``, CSRF token of the session as on the queue page) revokes the
   session row, discards both sealed tokens, clears the cookie and continues at the issuer's
   ``end_session_endpoint`` (RP-initiated logout, with ``id_token_hint``), which comes back to
   ``/ui/oidc/signed-out``.

Pages that continue elsewhere do so with a ``<meta http-equiv="refresh">``, not a redirect: the page's
``form-action 'self'`` policy would block a form post that redirects to the issuer, and a session
cookie (SameSite=Strict) set at the end of a redirect chain that began at the issuer would not be
sent with the next request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from mandate.auth import ACR_LEVELS, Principal, TokenError
from mandate.errors import AppError
from mandate.api.deps import ServicesDep
from mandate.api.routes.ui import SECURITY_HEADERS, SESSION_COOKIE, _csrf, _csrf_ok, _session, _set_cookie
from mandate.runtime.services import Services
from mandate.runtime.sessions import DISCARD_SESSION_TOKEN, issued_at
from mandate.runtime.settings import IssuerSettings

__all__ = ["PENDING_COOKIE", "router"]

router = APIRouter(prefix="/ui/oidc", tags=["ui"], include_in_schema=False)

PENDING_COOKIE = "mandate_ui_oidc"
"""The sealed ``state``, ``nonce`` and PKCE verifier of a sign-in in progress (path ``/ui/oidc``)."""
PENDING_SECONDS = 600
"""A sign-in must come back from the issuer within this time."""
STEP_UP_MAX_AGE = 300
"""``max_age`` asked by ``?step_up=1``: the payment policy's freshness (MFA within 5 minutes)."""
CLOCK_SKEW_SECONDS = 60
"""Tolerance for ``iat`` in the future and for ``auth_time`` against ``max_age``."""
ID_TOKEN_VAULT_PREFIX = "ui-oidc-id:"
"""Pseudo-thread of a session's sealed ID token (beside ``ui-session:<key>``, the access token)."""
_PENDING_KEY_LABEL = b"mandate/ui/oidc/pending"
_ISSUER_TIMEOUT = 10.0


class _SignInError(Exception):
    """Raised when a sign-in cannot go on; ``code`` is shown, never a third party's message."""

    def __init__(self, code: str, message: str, *, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True, kw_only=True, slots=True)
class _Client:
    """The page as an OIDC client of its issuer, from the settings."""

    issuer: IssuerSettings
    """The trusted issuer it signs in with (its algorithms are the ID token's too)."""
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    post_logout_uri: str
    scope: str
    acr_values: str


@dataclass(frozen=True, kw_only=True, slots=True)
class _Provider:
    """The endpoints of the issuer's discovery document that the page uses."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class _Pending:
    """A sign-in in progress, as sealed in its cookie."""

    state: str
    nonce: str
    verifier: str = field(repr=False)
    max_age: int | None
    expires_at: float


def _client(services: Services) -> _Client:
    settings = services.settings
    if not (settings.ui_oidc_issuer and settings.ui_client_id and settings.ui_client_secret.get_secret_value()):
        raise _SignInError("oidc_not_configured", "Sign-in with an identity provider is not set up here.", status=404)
    trusted = next((i for i in settings.oidc_issuers if i.issuer == settings.ui_oidc_issuer), None)
    if trusted is None:
        raise _SignInError(
            "oidc_not_configured", "The sign-in issuer is not a trusted issuer of this service.", status=404
        )
    return _Client(
        issuer=trusted,
        client_id=settings.ui_client_id,
        client_secret=settings.ui_client_secret.get_secret_value(),
        redirect_uri=f"{settings.public_url}/ui/oidc/callback",
        post_logout_uri=f"{settings.public_url}/ui/oidc/signed-out",
        scope=settings.ui_oidc_scope
        if "openid" in settings.ui_oidc_scope.split()
        else f"openid {settings.ui_oidc_scope}",
        acr_values=settings.ui_acr_values,
    )


async def _get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        answer = await http.get(url, timeout=_ISSUER_TIMEOUT)
        answer.raise_for_status()
        document = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise _SignInError("issuer_unavailable", "The identity provider did not answer.", status=503) from exc
    if not isinstance(document, dict):
        raise _SignInError(
            "issuer_unavailable", "The identity provider answered with something unexpected.", status=503
        )
    return document


async def _provider(services: Services, client: _Client) -> _Provider:
    """The issuer's endpoints by discovery (OIDC Discovery 4); the document must name the issuer itself."""
    issuer = client.issuer.issuer
    document = await _get_json(services.http, f"{issuer.rstrip('/')}/.well-known/openid-configuration")
    endpoints = {name: document.get(name) for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")}
    if document.get("issuer") != issuer or not all(isinstance(value, str) for value in endpoints.values()):
        raise _SignInError("issuer_unavailable", "The identity provider's discovery document is unusable.", status=503)
    end_session = document.get("end_session_endpoint")
    return _Provider(
        authorization_endpoint=str(endpoints["authorization_endpoint"]),
        token_endpoint=str(endpoints["token_endpoint"]),
        jwks_uri=str(endpoints["jwks_uri"]),
        end_session_endpoint=end_session if isinstance(end_session, str) else None,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _pending_key(services: Services) -> bytes:
    return hmac.new(
        services.settings.vault_key.get_secret_value().encode(), _PENDING_KEY_LABEL, hashlib.sha256
    ).digest()


def _seal(services: Services, pending: _Pending) -> str:
    body = json.dumps(
        {"s": pending.state, "n": pending.nonce, "v": pending.verifier, "m": pending.max_age, "e": pending.expires_at}
    ).encode()
    iv = secrets.token_bytes(12)
    return _b64(iv + AESGCM(_pending_key(services)).encrypt(iv, body, _PENDING_KEY_LABEL))


def _unseal(services: Services, cookie: str | None, *, now: float) -> _Pending:
    expired = _SignInError(
        "sign_in_expired", "This sign-in expired or was not started here; please start again.", status=400
    )
    if not cookie or len(cookie) > 2048:
        raise expired
    try:
        raw = _unb64(cookie)
        body = json.loads(AESGCM(_pending_key(services)).decrypt(raw[:12], raw[12:], _PENDING_KEY_LABEL))
        pending = _Pending(
            state=body["s"], nonce=body["n"], verifier=body["v"], max_age=body["m"], expires_at=body["e"]
        )
    except (ValueError, KeyError, TypeError, InvalidTag) as exc:
        raise expired from exc
    if now >= pending.expires_at:
        raise expired
    return pending


def _page(title: str, body: str, *, status: int = 200, refresh_to: str | None = None) -> Response:
    """A minimal page with the approver page's security headers; ``refresh_to`` continues there at once."""
    refresh = f'<meta http-equiv="refresh" content="0;url={html.escape(refresh_to)}">' if refresh_to else ""
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{refresh}'
        f"<title>{html.escape(title)} · Mandate approvals</title></head>"
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return Response(document, status_code=status, media_type="text/html", headers=SECURITY_HEADERS)


def _error_page(exc: _SignInError | AppError) -> Response:
    """The failure's stable code and our own message (never a third party's), and a way to start again."""
    status = exc.status if isinstance(exc, _SignInError) else 401
    body = (
        f'<p role="alert" id="sign-in-error"><span class="code">{html.escape(exc.code)}</span>: '
        f"{html.escape(exc.message)}</p>"
        '<p><a href="/ui/oidc/login" id="sign-in-again">Sign in again</a></p>'
    )
    return _page("Sign-in failed", body, status=status)


def _set_pending(response: Response, request: Request, services: Services, value: str, max_age: int) -> None:
    secure = request.url.scheme == "https" or services.settings.public_url.startswith("https://")
    # Lax, not Strict: it must come back with the issuer's redirect, a cross-site top-level GET.
    response.set_cookie(
        PENDING_COOKIE, value, max_age=max_age, path="/ui/oidc", httponly=True, samesite="lax", secure=secure
    )


@router.get("/login")
async def login(request: Request, services: ServicesDep, step_up: Annotated[bool, Query()] = False) -> Response:
    """Start a sign-in: seal state, nonce and PKCE verifier in a cookie, go to the issuer's login page."""
    try:
        client = _client(services)
        provider = await _provider(services, client)
    except _SignInError as exc:
        return _error_page(exc)
    now = time.time()
    max_age = STEP_UP_MAX_AGE if step_up else None
    pending = _Pending(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        verifier=secrets.token_urlsafe(64),
        max_age=max_age,
        expires_at=now + PENDING_SECONDS,
    )
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "scope": client.scope,
        "state": pending.state,
        "nonce": pending.nonce,
        "code_challenge": _b64(hashlib.sha256(pending.verifier.encode()).digest()),
        "code_challenge_method": "S256",
    }
    acr_values = ACR_LEVELS[-1] if step_up else client.acr_values
    if acr_values:
        params["acr_values"] = acr_values
    if max_age is not None:
        params["max_age"] = str(max_age)
    separator = "&" if "?" in provider.authorization_endpoint else "?"
    response = RedirectResponse(
        f"{provider.authorization_endpoint}{separator}{urlencode(params)}", status_code=303, headers=SECURITY_HEADERS
    )
    _set_pending(response, request, services, _seal(services, pending), PENDING_SECONDS)
    return response


async def _redeem(
    services: Services, client: _Client, provider: _Provider, *, code: str, verifier: str
) -> dict[str, Any]:
    """Exchange the code (with the PKCE verifier) at the token endpoint, as the confidential client."""
    # RFC 6749 2.3.1: client id and secret are form-encoded before they are joined for Basic auth.
    basic = base64.b64encode(f"{quote(client.client_id, safe='')}:{quote(client.client_secret, safe='')}".encode())
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": client.redirect_uri,
        "code_verifier": verifier,
    }
    try:
        answer = await services.http.post(
            provider.token_endpoint,
            data=form,
            headers={"Authorization": f"Basic {basic.decode()}", "Accept": "application/json"},
            timeout=_ISSUER_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        raise _SignInError("issuer_unavailable", "The identity provider did not answer.", status=503) from exc
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        code_shown = error[:64] if isinstance(error, str) and error else "token_request_failed"
        raise _SignInError(code_shown, "The identity provider refused to complete the sign-in.", status=401)
    if not isinstance(body.get("access_token"), str) or not isinstance(body.get("id_token"), str):
        raise _SignInError(
            "token_request_failed", "The identity provider returned no ID token or access token.", status=401
        )
    return body


def _at_hash(access_token: str, alg: str) -> str:
    """OIDC Core 3.1.3.6: the left half of the access token's hash, with the hash of the signing algorithm."""
    bits = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}.get(alg[-3:], hashlib.sha256)
    digest = bits(access_token.encode("ascii")).digest()
    return _b64(digest[: len(digest) // 2])


async def _verified_id_token(
    services: Services,
    client: _Client,
    provider: _Provider,
    id_token: str,
    *,
    pending: _Pending,
    access_token: str,
    now: float,
) -> dict[str, Any]:
    """The ID token's claims, after every check OIDC Core 3.1.3.7 asks of a confidential client.

    Raises:
        _SignInError: ``invalid_id_token`` (never saying which check failed to the browser).
    """
    invalid = _SignInError("invalid_id_token", "The identity provider's ID token was not acceptable.", status=401)
    jwks = await _get_json(services.http, provider.jwks_uri)
    try:
        listed = jwks.get("keys")
        signing = (
            [k for k in listed if isinstance(k, dict) and k.get("use", "sig") == "sig"]
            if isinstance(listed, list)
            else []
        )
        keys = KeySet.import_key_set({"keys": signing})
        token = jwt.decode(id_token, keys, algorithms=list(client.issuer.algorithms))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise invalid from exc
    claims = dict(token.claims)
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    exp, iat = claims.get("exp"), claims.get("iat")
    checks = (
        claims.get("iss") == client.issuer.issuer,
        client.client_id in audiences,
        claims.get("azp", client.client_id) == client.client_id and (len(audiences) == 1 or "azp" in claims),
        isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp > now,
        isinstance(iat, (int, float)) and not isinstance(iat, bool) and iat <= now + CLOCK_SKEW_SECONDS,
        isinstance(claims.get("nonce"), str) and hmac.compare_digest(claims["nonce"].encode(), pending.nonce.encode()),
        isinstance(claims.get("sub"), str) and bool(claims["sub"]),
        "at_hash" not in claims or claims["at_hash"] == _at_hash(access_token, str(token.header.get("alg", ""))),
    )
    if not all(checks):
        raise invalid
    if pending.max_age is not None:
        auth_time = claims.get("auth_time")
        if not isinstance(auth_time, (int, float)) or now - auth_time > pending.max_age + CLOCK_SKEW_SECONDS:
            raise invalid
    return claims


def _vault_thread(session_id: str) -> str:
    """The ID token's pseudo-thread: keyed like the session row (SHA-256 of the id), never the id itself."""
    return ID_TOKEN_VAULT_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


@router.get("/callback")
async def callback(
    request: Request,
    services: ServicesDep,
    code: Annotated[str, Query(max_length=4096)] = "",
    state: Annotated[str, Query(max_length=512)] = "",
    iss: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """The issuer's redirect: check state (and ``iss``), redeem the code, verify both tokens, start the session."""
    now = time.time()
    try:
        client = _client(services)
        pending = _unseal(services, request.cookies.get(PENDING_COOKIE), now=now)
        if not state or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise _SignInError("state_mismatch", "This answer does not belong to the sign-in started here.", status=400)
        if iss is not None and iss != client.issuer.issuer:  # RFC 9207: a mix-up with another issuer
            raise _SignInError("issuer_mismatch", "This answer comes from another identity provider.", status=400)
        if error is not None:
            shown = "".join(ch for ch in error if ch.isalnum() or ch in "_-")[:64] or "access_denied"
            raise _SignInError(shown, "The identity provider did not sign you in.", status=401)
        if not code:
            raise _SignInError("invalid_request", "The identity provider sent no authorization code.", status=400)
        provider = await _provider(services, client)
        tokens = await _redeem(services, client, provider, code=code, verifier=pending.verifier)
        access_token, id_token = str(tokens["access_token"]), str(tokens["id_token"])
        claims = await _verified_id_token(
            services, client, provider, id_token, pending=pending, access_token=access_token, now=now
        )
        principal = await services.verifier.verify(access_token)
        await services.sessions.check_not_revoked(principal, issued_at=issued_at(access_token))
        if principal.issuer != client.issuer.issuer or principal.subject != claims["sub"]:
            raise _SignInError(
                "invalid_id_token", "The ID token and the access token name different people.", status=401
            )
    except _SignInError as exc:
        response = _error_page(exc)
        response.delete_cookie(PENDING_COOKIE, path="/ui/oidc")
        return response
    except TokenError as exc:
        response = _error_page(exc)
        response.delete_cookie(PENDING_COOKIE, path="/ui/oidc")
        return response
    return await _start_session(request, services, principal, access_token=access_token, id_token=id_token)


async def _start_session(
    request: Request, services: Services, principal: Principal, *, access_token: str, id_token: str
) -> Response:
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await _end(services, previous)  # signing in as someone else leaves no live session behind
    started = await services.sessions.start(principal, access_token)
    await services.vault.put(
        issuer=principal.issuer,
        subject=principal.subject,
        thread_id=_vault_thread(started.session_id),
        token=id_token,
        expires_at=started.expires_at,
    )
    body = '<p>Signed in. <a href="/ui" id="continue">Continue to your approvals</a>.</p>'
    response = _page("Signed in", body, refresh_to="/ui")
    _set_cookie(
        response,
        request,
        services,
        SESSION_COOKIE,
        started.session_id,
        max_age=max(0, int(started.expires_at - time.time())),
    )
    response.delete_cookie(PENDING_COOKIE, path="/ui/oidc")
    return response


async def _end(services: Services, session_id: str) -> str | None:
    """End the session of ``session_id`` and discard its sealed tokens; returns its ID token if it was live."""
    live = await services.sessions.resume(session_id)
    id_token = None
    if live is not None:
        thread_id = _vault_thread(session_id)
        id_token = await services.vault.get(
            issuer=live.issuer, subject=live.subject, thread_id=thread_id, now=time.time()
        )
        async with services.pool.connection() as conn:
            await conn.execute(
                DISCARD_SESSION_TOKEN, {"issuer": live.issuer, "subject": live.subject, "thread_id": thread_id}
            )
    await services.sessions.end(session_id)
    return id_token


@router.get("/sign-out")
async def sign_out_page(request: Request, services: ServicesDep) -> Response:
    """Ask before signing out (a link cannot sign anybody out: the form carries the session's CSRF token)."""
    session = await _session(request, services)
    if session is None:
        return RedirectResponse("/ui", status_code=303, headers=SECURITY_HEADERS)
    csrf = _csrf(services, "session", session.session_id)
    body = (
        '<form method="post" action="/ui/oidc/sign-out">'
        f'<input type="hidden" name="csrf" value="{html.escape(csrf)}">'
        "<p>Sign out of Mandate's approver page and of your identity provider?</p>"
        '<button type="submit" id="confirm-sign-out">Sign out</button></form>'
    )
    return _page("Sign out", body)


@router.post("/sign-out")
async def sign_out(
    request: Request, services: ServicesDep, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """Revoke the session and its sealed tokens, clear the cookie, then RP-initiated logout at the issuer."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id and not _csrf_ok(csrf, _csrf(services, "session", session_id)):
        return _page(
            "Sign out", '<p role="alert">The form carried no valid CSRF token; nothing was done.</p>', status=403
        )
    id_token = await _end(services, session_id) if session_id else None
    target = "/ui/oidc/signed-out"
    try:
        client = _client(services)
        provider = await _provider(services, client)
    except _SignInError:
        provider = None
    if provider is not None and provider.end_session_endpoint:
        params = {"client_id": client.client_id, "post_logout_redirect_uri": client.post_logout_uri}
        if id_token:
            params["id_token_hint"] = id_token
        separator = "&" if "?" in provider.end_session_endpoint else "?"
        target = f"{provider.end_session_endpoint}{separator}{urlencode(params)}"
    body = f'<p>Signed out of Mandate. <a href="{html.escape(target)}" id="continue">Continue</a>.</p>'
    response = _page("Signing out", body, refresh_to=target)
    _set_cookie(response, request, services, SESSION_COOKIE, "", max_age=0)
    return response


@router.get("/signed-out")
async def signed_out() -> Response:
    """Where the issuer sends the browser back after logout."""
    body = '<p id="signed-out">You are signed out. <a href="/ui/oidc/login" id="sign-in">Sign in again</a>.</p>'
    return _page("Signed out", body)
