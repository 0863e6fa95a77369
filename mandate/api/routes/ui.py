"""``/ui``: the approver page: sign in, see the approval queue, approve, edit or reject.

Server-rendered (Jinja2, autoescaped), no JavaScript. Sessions are server-side
(``service.sessions``): the HttpOnly, SameSite=Strict cookie scoped to ``/ui`` holds only an
opaque random id; the access token stays sealed in the vault and is re-verified, and checked
against the revocation list, on every request, exactly like a bearer token. Signing out revokes
the session row, so a copied cookie stops working at once. Every POST form carries a CSRF token:
a keyed HMAC of the cookie it protects (the session id, or before sign-in a random login nonce).
Decisions go through the JSON route's own ``decide()``, so the page and the API share one path.

The queue shows each call (action, arguments with money formatted in its currency, requester,
the requester's reason if they gave one, agent, risk, expiry) and, after a decision, its outcome;
never the requester's conversation. A count and a filter (by action, by requester: plain GET
parameters, kept across decisions) help with a long queue.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader
from pydantic import ValidationError

from mandate.auth import Principal, StepUpRequiredError, StepUpRequirement, TokenError, step_up_satisfied
from mandate.auth.dev_issuer import DEV_CLI_CLIENT_ID
from mandate.errors import AppError
from mandate.api.deps import Runs, ServicesDep
from mandate.api.errors import status_of
from mandate.api.routes.approvals import ApprovalPublic, DecisionCreate, DecisionResult, decide, list_approvals
from mandate.runtime.services import Services
from mandate.runtime.sessions import issued_at
from mandate.tools import ApprovalPolicy, ToolError

__all__ = ["SESSION_COOKIE", "router"]

router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)

SESSION_COOKIE = "mandate_ui"
"""Holds the opaque id of the server-side session (HttpOnly, SameSite=Strict, path ``/ui``)."""
LOGIN_COOKIE = "mandate_ui_login"
"""Holds a random nonce that the sign-in form's CSRF token is bound to."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
CSRF_REFUSED = {"ok": False, "code": "csrf_failed", "message": "The form carried no valid CSRF token; nothing was done."}
STATUS_TEXT = {"approved": "Approved", "edited": "Approved with edits", "rejected": "Rejected"}
WAITING_TEXT = {
    "step_up": "the requester to sign in again with a second factor",
    "consent": "the requester to agree to the edited arguments",
    "reauthenticate": "the requester to sign in again (the call needs their own valid sign-in to run)",
}
"""What the run waits for after a decision, in words (by interrupt kind)."""
MINOR_UNITS = {
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"), 0
    ),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
"""ISO 4217 currencies whose minor unit is not 1/100."""
FILTERS = ("action", "requester")
"""GET parameters that narrow the queue shown (display only: what may be decided is unchanged)."""

_templates = Jinja2Templates(env=Environment(loader=PackageLoader("mandate.api", "templates"), autoescape=True))


def _csrf(services: Services, purpose: str, value: str) -> str:
    """The CSRF token for ``value`` (a cookie), keyed by a label-derived sub-key of the vault secret."""
    key = hmac.new(services.settings.vault_key.get_secret_value().encode(), b"mandate/ui/csrf", hashlib.sha256)
    return hmac.new(key.digest(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _csrf_ok(sent: object, expected: str) -> bool:
    return isinstance(sent, str) and hmac.compare_digest(sent.encode(), expected.encode())


def _secure(request: Request, services: Services) -> bool:
    return request.url.scheme == "https" or services.settings.public_url.startswith("https://")


def _set_cookie(response: Response, request: Request, services: Services, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/ui", httponly=True, samesite="strict", secure=_secure(request, services)
    )


def _render(request: Request, template: str, context: dict[str, Any], *, status: int = 200) -> Response:
    return _templates.TemplateResponse(request, template, context, status_code=status, headers=SECURITY_HEADERS)


@dataclass(frozen=True, kw_only=True, slots=True)
class _SignedIn:
    """The live session of a request: its cookie's id, the unsealed token and its principal."""

    session_id: str = field(repr=False)
    token: str = field(repr=False)
    principal: Principal


async def _session(request: Request, services: Services) -> _SignedIn | None:
    """The cookie's live session, its token verified and not revoked now; ``None`` otherwise.

    A session whose token no longer verifies or was revoked by an operator is ended server-side.
    """
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    live = await services.sessions.resume(session_id)
    if live is None:
        return None
    try:
        principal = await services.verifier.verify(live.token)
        await services.sessions.check_not_revoked(principal, issued_at=issued_at(live.token))
    except TokenError:
        await services.sessions.end(session_id)
        return None
    return _SignedIn(session_id=session_id, token=live.token, principal=principal)


def _failure(exc: AppError) -> tuple[dict[str, Any], int]:
    """What the page shows for an error, and the HTTP status the JSON API would answer."""
    outcome: dict[str, Any] = {"ok": False, "code": exc.code, "message": exc.message}
    if isinstance(exc, StepUpRequiredError):
        outcome["hint"] = (
            f"Sign out and sign in again with your second factor: approving or editing this action needs "
            f"acr {exc.acr_values}, authenticated at most {exc.max_age} seconds ago. Rejecting it does not."
        )
    return outcome, status_of(exc)


def _success(result: DecisionResult) -> dict[str, Any]:
    """What the page shows for a decision: the call's outcome, never the requester's conversation."""
    approval, call = result.approval, result.approval.outcome
    return {
        "ok": True,
        "status": STATUS_TEXT.get(approval.status, approval.status),
        "action": approval.action,
        "result": f"{approval.action}: {call.status}" + (f" ({call.id})" if call.id else "") if call else "",
        "waiting": WAITING_TEXT.get(result.waiting_for or "", result.waiting_for),
    }


def _money(amount: object, currency: object) -> str | None:
    """``amount`` in ``currency`` as an approver reads it (``250.00 EUR``), or ``None`` if it is not money.

    Digits are grouped with narrow no-break spaces (no locale's decimal comma is implied) and the
    currency's minor unit is shown; an amount finer than that unit is shown exactly, never rounded.
    """
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not isinstance(currency, str):
        return None
    if len(currency) != 3 or not currency.isascii() or not currency.isupper():
        return None
    try:
        exact = Decimal(str(amount))
        if not exact.is_finite():
            return None
        shown = exact.quantize(Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2)))
    except InvalidOperation:
        return None
    if shown != exact:
        shown = exact.normalize()
    return f"{shown:,f}".replace(",", "\u202f") + f" {currency}"


def _step_up_note(services: Services, principal: Principal, item: ApprovalPublic, now: float) -> str | None:
    """Why this approver cannot approve ``item`` with their current sign-in (rejecting needs nothing more)."""
    try:
        spec = services.tools.get(item.action)
    except ToolError:
        return None
    need: StepUpRequirement | None = spec.step_up
    if need is None or spec.approval is not ApprovalPolicy.APPROVER or item.purpose != "decide":
        return None
    if step_up_satisfied(principal, need, now=now):
        return None
    age = f"{need.max_age // 60} minutes" if need.max_age % 60 == 0 else f"{need.max_age} seconds"
    return (
        f"Approving or editing needs a sign-in with your second factor (acr {need.acr}) at most "
        f"{age} old; your current sign-in is not. You can reject without it."
    )


def _field(name: str, value: Any, *, currency: Any) -> dict[str, Any]:
    """One argument: its editable form (text, or JSON) and how it is shown (an amount with its currency)."""
    raw = value if isinstance(value, str) else json.dumps(value)
    shown = (_money(value, currency) if name == "amount" else None) or raw
    return {"name": name, "value": raw, "shown": shown, "is_text": isinstance(value, str)}


def _view(item: ApprovalPublic, now: datetime, *, step_up_note: str | None) -> dict[str, Any]:
    """An approval as the page shows it: the API's fields plus readable expiry, money and editable fields."""
    expires = datetime.fromtimestamp(item.expires_at, UTC)
    fields = [_field(name, value, currency=item.args.get("currency")) for name, value in item.args.items()]
    return {
        **item.model_dump(),
        "expires_at": expires.isoformat(),
        "expires_utc": expires.strftime("%Y-%m-%d %H:%M UTC"),
        "expires_in_min": max(0, int((expires - now).total_seconds() // 60)),
        "fields": fields,
        "step_up_note": step_up_note,
    }


def _filter_of(request: Request) -> dict[str, str]:
    """The queue filter from the query string (unknown values simply match nothing)."""
    return {name: value[:200] for name in FILTERS if (value := request.query_params.get(name, "").strip())}


def _choices(items: list[ApprovalPublic], name: str, selected: str | None) -> list[dict[str, Any]]:
    """The values of ``name`` in the whole queue, each with its count, for the filter's select."""
    counts: dict[str, int] = {}
    for item in items:
        value = str(getattr(item, name))
        counts[value] = counts.get(value, 0) + 1
    if selected and selected not in counts:
        counts[selected] = 0  # keep the active filter visible after its last item was decided
    return [{"value": v, "count": counts[v], "selected": v == selected} for v in sorted(counts)]


async def _queue_page(
    request: Request,
    services: Services,
    session: _SignedIn,
    *,
    outcome: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    now = datetime.now(UTC)
    queue = await list_approvals(session.principal, services)
    wanted = _filter_of(request)
    shown = [item for item in queue if all(str(getattr(item, k)) == v for k, v in wanted.items())]
    items = [
        _view(item, now, step_up_note=_step_up_note(services, session.principal, item, now.timestamp())) for item in shown
    ]
    context = {
        "principal": session.principal,
        "items": items,
        "total": len(queue),
        "filter": wanted,
        "filter_query": f"?{urlencode(wanted)}" if wanted else "",
        "actions": _choices(queue, "action", wanted.get("action")),
        "requesters": _choices(queue, "requester", wanted.get("requester")),
        "outcome": outcome,
        "csrf": _csrf(services, "session", session.session_id),
        "oidc_sign_in": bool(services.settings.ui_oidc_issuer),
    }
    return _render(request, "approvals.html", context, status=status)


def _sign_in_page(
    request: Request, services: Services, *, error: dict[str, Any] | None = None, status: int = 200
) -> Response:
    """The sign-in form (dev issuer only), bound to a fresh or existing login nonce; stale sessions are cleared."""
    dev = services.settings.dev_issuer
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
    context = {
        "dev_sign_in": dev,
        "oidc_sign_in": bool(services.settings.ui_oidc_issuer),
        "csrf": _csrf(services, "login", nonce) if dev else "",
        "error": error,
    }
    response = _render(request, "sign_in.html", context, status=status)
    if dev:
        _set_cookie(response, request, services, LOGIN_COOKIE, nonce, max_age=1800)
    if SESSION_COOKIE in request.cookies:
        _set_cookie(response, request, services, SESSION_COOKIE, "", max_age=0)
    return response


def _issuer_error_code(answer: httpx.Response) -> str:
    """The OAuth ``error`` code of a refused token request (never its description or body)."""
    try:
        code = answer.json().get("error")
    except ValueError:
        code = None
    return code[:64] if isinstance(code, str) and code else "sign_in_failed"


def _to_queue() -> Response:
    return RedirectResponse("/ui", status_code=303, headers=SECURITY_HEADERS)


@router.get("")
async def approver_page(request: Request, services: ServicesDep) -> Response:
    """The caller's approval queue, or the sign-in form."""
    session = await _session(request, services)
    if session is None:
        return _sign_in_page(request, services)
    return await _queue_page(request, services, session)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    services: ServicesDep,
    username: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    otp: Annotated[str, Form(max_length=20)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Password grant (plus optional OTP) at the dev issuer; the verified token starts a server-side session."""
    if not services.settings.dev_issuer:
        return _render(request, "sign_in.html", {"dev_sign_in": False, "oidc_sign_in": False, "error": None}, status=404)
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not _csrf_ok(csrf, _csrf(services, "login", nonce)):
        return _sign_in_page(request, services, error=CSRF_REFUSED, status=403)
    form = {"grant_type": "password", "client_id": DEV_CLI_CLIENT_ID, "username": username, "password": password}
    if otp:
        form["otp"] = otp
    try:
        answer = await services.http.post(f"{services.settings.dev_issuer_url}/token", data=form)
    except httpx.HTTPError:
        error = {"code": "issuer_unavailable", "message": "The issuer did not answer."}
        return _sign_in_page(request, services, error=error, status=503)
    if answer.status_code != 200:
        error = {"code": _issuer_error_code(answer), "message": "Wrong user name, password or one-time code."}
        return _sign_in_page(request, services, error=error, status=401)
    token = str(answer.json()["access_token"])
    try:
        principal = await services.verifier.verify(token)
        await services.sessions.check_not_revoked(principal, issued_at=issued_at(token))
    except TokenError as exc:
        return _sign_in_page(request, services, error={"code": exc.code, "message": exc.message}, status=401)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await services.sessions.end(previous)  # signing in as someone else leaves no live session behind
    started = await services.sessions.start(principal, token)
    response = _to_queue()
    max_age = max(0, int(started.expires_at - time.time()))
    _set_cookie(response, request, services, SESSION_COOKIE, started.session_id, max_age=max_age)
    _set_cookie(response, request, services, LOGIN_COOKIE, "", max_age=0)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, services: ServicesDep, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """Revoke the session server-side and clear its cookie (a forged sign-out, without its CSRF token, is refused)."""
    session = await _session(request, services)
    if session is not None:
        if not _csrf_ok(csrf, _csrf(services, "session", session.session_id)):
            return await _queue_page(request, services, session, outcome=CSRF_REFUSED, status=403)
        await services.sessions.end(session.session_id)
    response = _to_queue()
    _set_cookie(response, request, services, SESSION_COOKIE, "", max_age=0)
    return response


def _edited_args(original: dict[str, Any], form: Any) -> dict[str, Any]:
    """The edit form's values, typed like the original arguments (text stays text, the rest is JSON)."""
    edited: dict[str, Any] = {}
    for name, value in original.items():
        raw = form.get(f"arg:{name}")
        if not isinstance(raw, str):
            edited[name] = value
        elif isinstance(value, str):
            edited[name] = raw
        else:
            try:
                edited[name] = json.loads(raw)
            except ValueError:
                edited[name] = raw  # the tool's schema refuses it: the page shows decision_refused
    return edited


@router.post("/approvals/{approval_id}/decision")
async def decide_on_page(approval_id: str, request: Request, services: ServicesDep, runs: Runs) -> Response:
    """Approve, edit or reject through the JSON API's ``decide()``; the page shows the outcome or the error."""
    session = await _session(request, services)
    if session is None:
        error = {"code": "signed_out", "message": "You are not signed in (the session ended: signed out, expired or revoked). Sign in, then decide again."}
        return _sign_in_page(request, services, error=error, status=401)
    principal = session.principal
    form = await request.form()
    if not _csrf_ok(form.get("csrf"), _csrf(services, "session", session.session_id)):
        return await _queue_page(request, services, session, outcome=CSRF_REFUSED, status=403)
    kind = form.get("type")
    try:
        args = None
        if kind == "edit":
            args = _edited_args((await services.ledger.get_in_tenant(principal, approval_id)).args, form)
        body = DecisionCreate.model_validate({"type": kind, "args": args, "comment": form.get("comment") or ""})
        decided = await decide(
            approval_id, body, principal=principal, token=session.token, services=services, runs=runs
        )
        outcome, status = _success(decided), 200
    except ValidationError:
        outcome, status = {"ok": False, "code": "invalid_request", "message": "The decision form is invalid."}, 422
    except AppError as exc:
        outcome, status = _failure(exc)
    return await _queue_page(request, services, session, outcome=outcome, status=status)
