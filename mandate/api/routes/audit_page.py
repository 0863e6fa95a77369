"""``/ui/audit``: the audit timeline page, for auditors of the tenant, beside the approver page.

The same sign-in, server-side session, CSP and headers as the approver page (``routes/ui.py``), no
scripts. Reading is a GET (nothing changes but the ``audit.read`` record it leaves); the only form
that changes something, sign-out, carries the session's CSRF token. Who may look is decided exactly
as for ``GET /audit`` (OpenFGA ``auditor`` of the tenant); anyone else gets a 403 page with nothing
of the trail on it, and their attempt is recorded. The data comes from
:func:`mandate.audit.build_timeline`; this module only parses the filter and renders.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from mandate.api.deps import ServicesDep
from mandate.api.errors import status_of
from mandate.api.routes.audit import record_read, require_auditor
from mandate.api.routes.ui import _csrf, _render, _session, _sign_in_page
from mandate.audit import Timeline, build_timeline
from mandate.errors import AppError

__all__ = ["router"]

router = APIRouter(prefix="/ui", tags=["ui"], include_in_schema=False)

MAX_FILTER_LENGTH = 200
"""Longest thread id or time accepted in the filter."""
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_CHAIN_TEXT = {
    "sealed": "sealed by a signed checkpoint",
    "chained": "intact on the hash chain, not yet sealed",
    "unverified": "not verified: at or after a break in the chain",
}


class _BadFilter(ValueError):
    """Raised when the page's filter cannot be read (the page says which field)."""


def _when(raw: str, name: str) -> datetime | None:
    """A filter time (``YYYY-MM-DDTHH:MM``, UTC, as the form's ``datetime-local`` sends it), or ``None``."""
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise _BadFilter(f"{name}: not a date and time (YYYY-MM-DDTHH:MM, UTC)") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _filter(request: Request) -> dict[str, str]:
    """The filter as sent (thread, or a time range), each value checked for length."""
    wanted = {name: request.query_params.get(name, "").strip() for name in ("thread_id", "since", "until")}
    for name, value in wanted.items():
        if len(value) > MAX_FILTER_LENGTH:
            raise _BadFilter(f"{name}: at most {MAX_FILTER_LENGTH} characters")
    return wanted


def _trace_href(link: str, trace_id: str | None) -> str | None:
    """The trace UI's URL of ``trace_id`` (``MANDATE_TRACE_LINK``), for well-formed ids only."""
    if not link or trace_id is None or not _TRACE_ID.match(trace_id):
        return None
    return link.replace("{trace_id}", trace_id)


def _view(timeline: Timeline, *, trace_link: str) -> dict[str, Any]:
    """What the template shows of a timeline."""
    entries = [
        {
            "entry": entry,
            "record": entry.record,
            "recorded_utc": entry.record.recorded_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "chain_text": _CHAIN_TEXT[entry.chain],
            "trace_href": _trace_href(trace_link, entry.record.trace_id),
        }
        for entry in timeline.entries
    ]
    return {"timeline": timeline, "entries": entries, "report": timeline.report, "requester": timeline.requester}


@router.get("/audit")
async def audit_page(request: Request, services: ServicesDep) -> Response:
    """The timeline of a thread or a time range of the auditor's tenant; the sign-in form if signed out."""
    session = await _session(request, services)
    if session is None:
        return _sign_in_page(request, services)
    principal = session.principal
    context: dict[str, Any] = {
        "principal": principal,
        "csrf": _csrf(services, "session", session.session_id),
        "oidc_sign_in": bool(services.settings.ui_oidc_issuer),
        "filter": {},
        "error": None,
    }
    try:
        await require_auditor(principal, services)
    except AppError as exc:
        context["error"] = {"code": exc.code, "message": exc.message}
        return _render(request, "audit_timeline.html", context, status=status_of(exc))
    try:
        wanted = context["filter"] = _filter(request)
        since, until = _when(wanted["since"], "since"), _when(wanted["until"], "until")
    except _BadFilter as exc:
        context["error"] = {"code": "invalid_request", "message": str(exc)}
        return _render(request, "audit_timeline.html", context, status=422)
    thread_id = wanted["thread_id"] or None
    await record_read(
        services, principal, "allowed", view="timeline_page", thread_id=thread_id,
        filters=[name for name, value in wanted.items() if value],
    )
    timeline = await build_timeline(
        services.pool, tenant=principal.tenant, keys=[services.audit.public_key],
        pseudonymize=services.pseudonymize, thread_id=thread_id, since=since, until=until,
    )
    context.update(_view(timeline, trace_link=services.settings.trace_link))
    return _render(request, "audit_timeline.html", context)
