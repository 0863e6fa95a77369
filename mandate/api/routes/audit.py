"""``/audit``: the audit trail of the caller's tenant, for principals OpenFGA allows as ``auditor``.

Actors are pseudonyms in storage; here, and only here, they are resolved to (issuer, subject)
through the pseudonym directory, unless the person was erased. A directory entry is shown only if
it recomputes to the pseudonym (the keyed HMAC), so a tampered entry cannot pin an action on
someone else. Every read is itself recorded (``audit.read``, allowed or denied) in the tenant's chain.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from mandate.audit import (
    AuditEvent,
    AuditForbiddenError,
    AuditQuery,
    AuditRecord,
    open_tool_calls,
    search_records,
    thread_timeline,
)
from mandate.auth import Principal, Relationship
from mandate.auth import vocabulary as fga
from mandate.api.deps import CurrentPrincipal, ServicesDep
from mandate.api.schemas import AuditOpenCalls, AuditPage, AuditTimeline
from mandate.runtime.services import Services

__all__ = ["record_read", "require_auditor", "router"]

router = APIRouter(prefix="/audit", tags=["audit"])

PSEUDONYM_PREFIX = "psn_"
_UNFILTERED = ("tenant", "limit")


async def record_read(services: Services, principal: Principal, decision: str, **detail: Any) -> None:
    """Record a read of the trail: every allowed one on its own, denied ones coalesced per person.

    A denied read costs its caller nothing, so one row each would let any member flood the chain:
    the first is written at once, repeats are counted into summaries (``AuditLog.record_denial``).
    """
    pseudonym = services.pseudonymize(principal.issuer, principal.subject)
    services.audit.remember_subject(pseudonym=pseudonym, issuer=principal.issuer, subject=principal.subject)
    event = AuditEvent(tenant=principal.tenant, event="audit.read", actor=pseudonym, decision=decision, detail=detail)
    if decision == "denied":
        await services.audit.record_denial(event)
    else:
        await services.audit.record(event)


async def require_auditor(principal: Principal, services: Services) -> None:
    """Refuse ``principal`` unless OpenFGA allows them as ``auditor`` of their tenant.

    Raises:
        AuditForbiddenError: They are not (the attempt is recorded; repeats are counted, not each written).
        AuthorizationUnavailableError: OpenFGA could not decide (a denial).
    """
    question = Relationship(principal.user_id, fga.AUDITOR, fga.tenant(principal.tenant))
    if not await services.authz.check(question, strong=True):
        await record_read(services, principal, "denied")
        raise AuditForbiddenError("Only auditors of this tenant may read its audit trail.")


async def auditor(principal: CurrentPrincipal, services: ServicesDep) -> Principal:
    """The caller, if they are an auditor of their tenant (see :func:`require_auditor`)."""
    await require_auditor(principal, services)
    return principal


Auditor = Annotated[Principal, Depends(auditor)]


def _resolved(services: Services, record: AuditRecord) -> dict[str, Any]:
    """``record`` with ``actor_identity``: who the pseudonym stands for, if known and genuine."""
    body = record.to_json()
    issuer, subject = record.actor_issuer, record.actor_subject
    genuine = issuer is not None and subject is not None and services.pseudonymize(issuer, subject) == record.actor
    body["actor_identity"] = {"issuer": issuer, "subject": subject} if genuine else None
    return body


def _page(services: Services, records: list[AuditRecord]) -> list[dict[str, Any]]:
    return [_resolved(services, record) for record in records]


@router.get("", response_model=AuditPage, response_model_exclude_unset=True)
async def list_records(
    principal: Auditor,
    services: ServicesDep,
    thread_id: str | None = None,
    user: Annotated[str | None, Query(description="a pseudonym (psn_…) or a subject at `issuer`")] = None,
    issuer: Annotated[str | None, Query(description="issuer of `user`; defaults to the caller's")] = None,
    agent: str | None = None,
    tool: str | None = None,
    event: str | None = None,
    decision: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: Annotated[int | None, Query(ge=1, description="`next_cursor` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Records of the caller's tenant, newest first, filtered; actors resolved."""
    actor = None
    if user is not None:
        actor = user if user.startswith(PSEUDONYM_PREFIX) else services.pseudonymize(issuer or principal.issuer, user)
    query = AuditQuery(
        tenant=principal.tenant, thread_id=thread_id, actor=actor, agent=agent, tool=tool, event=event,
        decision=decision, since=since, until=until, before_seq=cursor, limit=limit,
    )
    filters = [f.name for f in fields(query) if f.name not in _UNFILTERED and getattr(query, f.name) is not None]
    await record_read(services, principal, "allowed", view="search", filters=filters)
    records = await search_records(services.pool, query)
    next_cursor = records[-1].seq if len(records) == limit else None
    return {"records": _page(services, records), "next_cursor": next_cursor}


@router.get("/threads/{thread_id}/timeline", response_model=AuditTimeline, response_model_exclude_unset=True)
async def timeline(thread_id: str, principal: Auditor, services: ServicesDep) -> dict[str, Any]:
    """Who did what on one thread of the caller's tenant, in order; open tool calls flagged."""
    await record_read(services, principal, "allowed", view="timeline", thread_id=thread_id)
    records = await thread_timeline(services.pool, tenant=principal.tenant, thread_id=thread_id)
    open_calls = sum(record.open for record in records)
    return {"thread_id": thread_id, "entries": _page(services, records), "open_tool_calls": open_calls}


@router.get("/open", response_model=AuditOpenCalls, response_model_exclude_unset=True)
async def open_calls(
    principal: Auditor,
    services: ServicesDep,
    older_than: Annotated[int, Query(ge=0, description="seconds since the call started")] = 60,
) -> dict[str, Any]:
    """Tool calls that started and never finished (a crash between start and end leaves one)."""
    await record_read(services, principal, "allowed", view="open")
    started_before = datetime.now(UTC) - timedelta(seconds=older_than)
    records = await open_tool_calls(services.pool, tenant=principal.tenant, started_before=started_before)
    return {"records": _page(services, records)}

