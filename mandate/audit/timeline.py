"""A run as an auditor reads it: the audit records of a thread or a time range as timeline entries.

Each entry is one durable record, named as a step of the run (step-up asked, approval decided,
gate passed, tool succeeded …), with the people involved resolved from their pseudonyms, the facts
that matter to an auditor (delegated token audience and scope, outcome, decider), its trace id, and
the verification status of the record in its tenant's hash chain. This module knows no HTTP: the
approver page's auditor view (``/ui/audit``) renders what :func:`build_timeline` returns, and only
for auditors of the tenant, because it resolves pseudonyms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mandate._db import Pool
from mandate.audit import queries
from mandate.audit.query import AuditQuery, AuditRecord, search_records, thread_timeline
from mandate.audit.verify import ChainReport, verify_chains

__all__ = ["MAX_ENTRIES", "ChainStatus", "Person", "Timeline", "TimelineEntry", "build_timeline"]

MAX_ENTRIES = 500
"""Most records one timeline shows (a time range shows the newest of them)."""

ChainStatus = Literal["sealed", "chained", "unverified"]
"""``sealed``: intact and covered by a signed checkpoint; ``chained``: intact, newer than the last
checkpoint; ``unverified``: at or after the first problem of the tenant's chain."""

_DECISION_WORDS = {"approve": "approved", "edit": "edited", "reject": "rejected", "respond": "answered"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Person:
    """Someone named in a record: their pseudonym and, when it is genuine and known, who it stands for."""

    pseudonym: str
    issuer: str | None = None
    subject: str | None = None

    @property
    def resolved(self) -> bool:
        """Whether the pseudonym was resolved to an identity (it is unknown after an erasure)."""
        return self.subject is not None


@dataclass(frozen=True, kw_only=True, slots=True)
class TimelineEntry:
    """One audit record as a step of the run."""

    record: AuditRecord
    step: str
    """What happened, in words (``Approval decided: approved``)."""
    gate: bool
    """Whether the step is a gate (grant, step-up, consent or approval) rather than the tool's own outcome."""
    actor: Person
    """Whoever made the call that caused the record (the requester, or an approver resuming the run)."""
    requester: Person | None
    """On whose behalf it happened."""
    deciders: tuple[Person, ...]
    """Who decided the call that ran (``tool.started``)."""
    facts: tuple[tuple[str, str], ...]
    """Further facts as (label, value): token audience and scope, outcome, step-up level …"""
    chain: ChainStatus


@dataclass(frozen=True, kw_only=True, slots=True)
class Timeline:
    """The entries of a thread or a time range of one tenant, oldest first, with the chain's verification."""

    tenant: str
    thread_id: str | None
    since: datetime | None
    until: datetime | None
    entries: tuple[TimelineEntry, ...]
    truncated: bool
    """More records matched than :data:`MAX_ENTRIES`; the oldest of them are left out."""
    report: ChainReport | None
    """The verification of the tenant's whole chain (``None``: the tenant has no records)."""

    @property
    def requester(self) -> Person | None:
        """Who asked: the requester named by the first entry that names one."""
        return next((entry.requester for entry in self.entries if entry.requester is not None), None)


async def build_timeline(
    pool: Pool,
    *,
    tenant: str,
    keys: Sequence[Ed25519PublicKey],
    pseudonymize: Callable[[str, str], str],
    thread_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Timeline:
    """The timeline of ``thread_id``, or of every record of ``tenant`` in [``since``, ``until``).

    The tenant's chain is verified after the records are read, so every entry shown is covered by
    the verification.

    Args:
        pool: The database holding the audit trail.
        tenant: The auditor's tenant; nothing of another tenant is read.
        keys: Public keys trusted to have signed checkpoints.
        pseudonymize: The keyed HMAC; a directory entry is shown only if it recomputes to its pseudonym.
        thread_id: One thread (then ``since``/``until`` are ignored).
        since: Inclusive lower bound on the record time.
        until: Exclusive upper bound on the record time.
    """
    if thread_id is not None:
        records = await thread_timeline(pool, tenant=tenant, thread_id=thread_id)
        truncated = len(records) > MAX_ENTRIES
        records = records[-MAX_ENTRIES:]
        since = until = None
    else:
        query = AuditQuery(tenant=tenant, since=since, until=until, limit=MAX_ENTRIES + 1)
        newest_first = await search_records(pool, query)
        truncated = len(newest_first) > MAX_ENTRIES
        records = list(reversed(newest_first[:MAX_ENTRIES]))
    reports = await verify_chains(pool, keys=keys, tenant=tenant)
    report = reports[0] if reports else None
    people = await _people(pool, records, pseudonymize)
    entries = tuple(_entry(record, people, report) for record in records)
    return Timeline(
        tenant=tenant, thread_id=thread_id, since=since, until=until, entries=entries, truncated=truncated,
        report=report,
    )


def _named(record: AuditRecord) -> Iterable[str]:
    """Every pseudonym a record names: its actor, the requester, the deciders."""
    yield record.actor
    requester = record.detail.get("requester")
    if isinstance(requester, str):
        yield requester
    deciders = record.detail.get("decided_by")
    if isinstance(deciders, list):
        yield from (d for d in deciders if isinstance(d, str))


async def _people(
    pool: Pool, records: Sequence[AuditRecord], pseudonymize: Callable[[str, str], str]
) -> dict[str, Person]:
    """The people the records name, resolved through the directory where the entry is genuine."""
    pseudonyms = sorted({p for record in records for p in _named(record)})
    async with pool.connection() as conn:
        rows = await (await conn.execute(queries.SUBJECTS, {"pseudonyms": pseudonyms})).fetchall()
    people = {p: Person(pseudonym=p) for p in pseudonyms}
    for row in rows:
        if pseudonymize(row["issuer"], row["subject"]) == row["pseudonym"]:  # a forged entry stays unresolved
            people[row["pseudonym"]] = Person(pseudonym=row["pseudonym"], issuer=row["issuer"], subject=row["subject"])
    return people


def _chain_status(seq: int, report: ChainReport | None) -> ChainStatus:
    if report is None:
        return "unverified"
    problem = report.problem
    if seq <= report.sealed_through:
        return "sealed"
    if problem is not None and (seq >= problem.seq or problem.kind == "rewritten"):
        return "unverified"  # a rewrite may lie anywhere after the last good checkpoint
    return "chained"


def _entry(record: AuditRecord, people: dict[str, Person], report: ChainReport | None) -> TimelineEntry:
    detail = record.detail
    requester = detail.get("requester")
    deciders = detail.get("decided_by") if isinstance(detail.get("decided_by"), list) else []
    step, gate = _step(record)
    return TimelineEntry(
        record=record,
        step=step,
        gate=gate,
        actor=people[record.actor],
        requester=people[requester] if isinstance(requester, str) else None,
        deciders=tuple(people[d] for d in deciders if isinstance(d, str)),
        facts=tuple(_facts(record)),
        chain=_chain_status(record.seq, report),
    )


def _decision_kind(detail: dict[str, Any]) -> str:
    return "Approval" if detail.get("policy") == "approver" else "Consent"


def _step(record: AuditRecord) -> tuple[str, bool]:
    """The record's step in words, and whether it is a gate."""
    decision = record.decision or ""
    detail = record.detail
    match record.event:
        case "step_up.required":
            return "Step-up asked", True
        case "step_up.satisfied":
            return "Step-up satisfied", True
        case "consent.requested":
            return f"{_decision_kind(detail)} asked", True
        case "consent.decided" if detail.get("purpose") == "confirm_edit":
            return f"Requester confirmed the edit: {_DECISION_WORDS.get(decision, decision)}", True
        case "consent.decided":
            return f"{_decision_kind(detail)} decided: {_DECISION_WORDS.get(decision, decision)}", True
        case "consent.refused":
            return f"Decision refused: {decision}", True
        case "consent.expired":
            return "Expired without a decision", True
        case "consent.reason_given":
            return "Requester gave a reason", False
        case "tool.denied":
            return f"Denied: {decision}", True
        case "tool.started":
            return "Gate passed: grant and decision re-checked, tool started", True
        case "tool.succeeded":
            return "Tool succeeded", False
        case "tool.failed":
            return f"Tool failed: {decision}", False
        case "audit.read":
            return f"Audit trail read ({decision})", False
    return record.event, False


def _facts(record: AuditRecord) -> Iterable[tuple[str, str]]:
    """The facts of a record worth a line of their own (never arguments: the records hold none)."""
    detail = record.detail
    if isinstance(acr := detail.get("acr"), str):
        yield "Level of authentication", acr
    if record.event == "tool.started":
        scopes = detail.get("scopes")
        scope = " ".join(str(s) for s in scopes) if isinstance(scopes, list) else ""
        yield "Delegated token", f"audience {detail.get('audience', '?')}, scope {scope or '(none)'}"
        if isinstance(attempt := detail.get("attempt"), int):
            yield "Attempt", str(attempt)
    if record.event == "tool.succeeded" and ("id" in detail or "status" in detail):
        yield "Outcome", " ".join(str(detail[k]) for k in ("status", "id") if k in detail)
    if record.event == "consent.decided":
        yield "Comment given", "yes" if detail.get("comment_given") else "no"
    if isinstance(view := detail.get("view"), str):
        yield "View", view
