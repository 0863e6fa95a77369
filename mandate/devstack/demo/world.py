"""The demo world seeded by the dev stack (README walk-through and tests use it).

acme: alice (finance), dave (engineering), bob (management, approver, auditor, assistant admin). globex: carol.
"""

from __future__ import annotations

from pathlib import Path

from mandate.auth import Authorizer, Relationship
from mandate.auth import vocabulary as fga
from mandate.retrieval import DocumentSpec, Ingestor
from mandate.runtime.settings import DEV_ISSUER_KEY

__all__ = ["DEMO_DOCUMENTS", "DEMO_RELATIONSHIPS", "seed_demo_world"]

_DOCS = Path(__file__).parent / "documents"

def _user(name: str) -> str:
    return fga.user(DEV_ISSUER_KEY, name)


DEMO_RELATIONSHIPS: tuple[Relationship, ...] = (
    Relationship(_user("alice"), fga.MEMBER, fga.tenant("acme")),
    Relationship(_user("dave"), fga.MEMBER, fga.tenant("acme")),
    Relationship(_user("bob"), fga.MEMBER, fga.tenant("acme")),
    Relationship(_user("bob"), fga.APPROVER, fga.tenant("acme")),
    Relationship(_user("bob"), fga.AUDITOR, fga.tenant("acme")),
    Relationship(_user("bob"), fga.ASSISTANT_ADMIN, fga.tenant("acme")),
    Relationship(_user("carol"), fga.MEMBER, fga.tenant("globex")),
    Relationship(_user("alice"), fga.MEMBER, fga.group("acme-finance")),
    Relationship(_user("dave"), fga.MEMBER, fga.group("acme-engineering")),
    Relationship(_user("bob"), fga.MEMBER, fga.group("acme-management")),
    Relationship(_user("carol"), fga.MEMBER, fga.group("globex-staff")),
    Relationship(fga.tenant("acme"), fga.TENANT, fga.folder("acme-contracts")),
    Relationship(fga.group_members("acme-finance"), fga.VIEWER, fga.folder("acme-contracts")),
    Relationship(fga.group_members("acme-legal"), fga.VIEWER, fga.folder("acme-contracts")),
    Relationship(fga.tenant("acme"), fga.TENANT, fga.folder("acme-engineering")),
    Relationship(fga.group_members("acme-engineering"), fga.VIEWER, fga.folder("acme-engineering")),
    Relationship(fga.tenant("globex"), fga.TENANT, fga.folder("globex-contracts")),
    Relationship(fga.group_members("globex-staff"), fga.VIEWER, fga.folder("globex-contracts")),
    Relationship(fga.agent("retriever"), fga.READER_AGENT, fga.tenant("acme")),
    Relationship(fga.agent("retriever"), fga.READER_AGENT, fga.tenant("globex")),
    # The supervisor's agents: the researcher reads contracts and engineering, not payroll; the
    # operations agent may open tickets but not send payments.
    Relationship(fga.agent("researcher"), fga.READER_AGENT, fga.folder("acme-contracts")),
    Relationship(fga.agent("researcher"), fga.READER_AGENT, fga.folder("acme-engineering")),
    Relationship(fga.agent("researcher"), fga.READER_AGENT, fga.folder("globex-contracts")),
    Relationship(fga.agent("operations"), fga.INVOKER, fga.tool("create_ticket")),
    Relationship(fga.agent("executor"), fga.INVOKER, fga.tool("create_ticket")),
    Relationship(fga.tenant_members("acme"), fga.CAN_USE, fga.tool("create_ticket")),
    Relationship(fga.tenant_members("globex"), fga.CAN_USE, fga.tool("create_ticket")),
    Relationship(fga.agent("executor"), fga.INVOKER, fga.tool("send_payment")),
    Relationship(fga.group_members("acme-finance"), fga.CAN_USE, fga.tool("send_payment")),
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
    _doc("acme-payroll", "acme", "ACME Payroll Summary", viewers=(_user("bob"),)),
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
