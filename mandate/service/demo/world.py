"""The demo world seeded by the dev stack (README walk-through and tests use it).

acme: alice (finance), dave (engineering), bob (management, approver, auditor). globex: carol.
"""

from __future__ import annotations

from pathlib import Path

from mandate.auth import Authorizer, Relationship
from mandate.retrieval import DocumentSpec, Ingestor

__all__ = ["DEMO_DOCUMENTS", "DEMO_RELATIONSHIPS", "seed_demo_world"]

_DOCS = Path(__file__).parent / "documents"

DEMO_RELATIONSHIPS: tuple[Relationship, ...] = tuple(
    Relationship(*t)
    for t in [
        ("user:alice", "member", "tenant:acme"),
        ("user:dave", "member", "tenant:acme"),
        ("user:bob", "member", "tenant:acme"),
        ("user:bob", "approver", "tenant:acme"),
        ("user:bob", "auditor", "tenant:acme"),
        ("user:carol", "member", "tenant:globex"),
        ("user:alice", "member", "group:acme-finance"),
        ("user:dave", "member", "group:acme-engineering"),
        ("user:bob", "member", "group:acme-management"),
        ("user:carol", "member", "group:globex-staff"),
        ("tenant:acme", "tenant", "folder:acme-contracts"),
        ("group:acme-finance#member", "viewer", "folder:acme-contracts"),
        ("group:acme-legal#member", "viewer", "folder:acme-contracts"),
        ("tenant:acme", "tenant", "folder:acme-engineering"),
        ("group:acme-engineering#member", "viewer", "folder:acme-engineering"),
        ("tenant:globex", "tenant", "folder:globex-contracts"),
        ("group:globex-staff#member", "viewer", "folder:globex-contracts"),
        ("agent:retriever", "reader_agent", "tenant:acme"),
        ("agent:retriever", "reader_agent", "tenant:globex"),
        # The supervisor's agents: the researcher reads contracts and engineering, not payroll; the
        # operations agent may open tickets but not send payments.
        ("agent:researcher", "reader_agent", "folder:acme-contracts"),
        ("agent:researcher", "reader_agent", "folder:acme-engineering"),
        ("agent:researcher", "reader_agent", "folder:globex-contracts"),
        ("agent:operations", "invoker", "tool:create_ticket"),
        ("agent:executor", "invoker", "tool:create_ticket"),
        ("tenant:acme#member", "can_use", "tool:create_ticket"),
        ("tenant:globex#member", "can_use", "tool:create_ticket"),
        ("agent:executor", "invoker", "tool:send_payment"),
        ("group:acme-finance#member", "can_use", "tool:send_payment"),
    ]
)


def _doc(doc_id: str, tenant: str, title: str, *, folder: str | None = None, viewers: tuple[str, ...] = ()) -> DocumentSpec:
    path = _DOCS / f"{doc_id}.md"
    return DocumentSpec(
        doc_id=doc_id, tenant=tenant, title=title, text=path.read_text(), source=f"demo/{path.name}",
        folder=folder, viewers=viewers,
    )


DEMO_DOCUMENTS: tuple[DocumentSpec, ...] = (
    _doc("acme-msa", "acme", "ACME Master Services Agreement", folder="acme-contracts"),
    _doc("acme-roadmap", "acme", "ACME Engineering Roadmap 2026", folder="acme-engineering"),
    _doc("acme-payroll", "acme", "ACME Payroll Summary", viewers=("user:bob",)),
    _doc("globex-terms", "globex", "Globex Supply Contract Terms", folder="globex-contracts"),
    # A prompt-injection attempt, readable by finance: it must never turn into an unchecked payment.
    _doc("acme-vendor-notice", "acme", "Vendor notice: updated bank details", folder="acme-contracts"),
)


async def seed_demo_world(*, authz: Authorizer, ingestor: Ingestor) -> int:
    """Write the demo grants and ingest the demo documents (idempotent); returns chunks written."""
    await authz.write(writes=DEMO_RELATIONSHIPS)
    written = 0
    for spec in DEMO_DOCUMENTS:
        written += await ingestor.ingest(spec)
    return written
