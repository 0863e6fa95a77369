"""The gate's decisions: who may decide a call, and whether a call may run now.

Both read only the ledger, the tool's policy, OpenFGA and the verified principal of the token
about to be used; never graph state. :func:`execution_refusal` is what makes the gate hold at
the effect: however the graph was wired or its state reached, a call runs only if every
condition of its policy is on record for exactly its arguments.
"""

from __future__ import annotations

from mandate.auth import Authorizer, Principal, Relationship, acr_at_least
from mandate.auth import vocabulary as fga
from mandate.gate.ledger import CallLedger, CallRecord, Party
from mandate.tools import ApprovalPolicy, ToolSpec, decision_refusal

__all__ = ["decider_refusal", "execution_refusal", "is_tenant_approver", "party_of"]


def party_of(principal: Principal) -> Party:
    """The ledger's name for a verified principal."""
    return Party(issuer=principal.issuer, subject=principal.subject, user_id=principal.user_id)


async def is_tenant_approver(authz: Authorizer, person: Party, tenant: str) -> bool:
    """Whether OpenFGA says ``person`` approves for ``tenant`` (an error propagates: fail closed)."""
    return await authz.check(Relationship(person.user_id, fga.APPROVER, fga.tenant(tenant)), strong=True)


def decider_refusal(record: CallRecord, spec: ToolSpec, *, decider: Party, is_approver: bool) -> str | None:
    """Why ``decider`` may not decide ``record``, or ``None`` if they may.

    A row that waits for the requester's agreement to someone else's edit is theirs alone;
    otherwise the tool's policy says who decides.
    """
    is_requester = decider.same_person(record.requester)
    if record.needs_requester:
        return None if is_requester else "consent_requires_requester"
    return decision_refusal(spec, is_requester=is_requester, is_tenant_approver=is_approver)


async def _approved_by_approver(authz: Authorizer, spec: ToolSpec, record: CallRecord, person: Party | None) -> bool:
    if person is None or (spec.approver_distinct and person.same_person(record.requester)):
        return False
    return await is_tenant_approver(authz, person, record.tenant)


async def _decision_refusal(ledger: CallLedger, authz: Authorizer, spec: ToolSpec, record: CallRecord) -> str | None:
    if record.status == "rejected":
        return "rejected"
    if record.status != "approved" or record.decided_by is None:
        return "approval_missing"
    if spec.approval is ApprovalPolicy.USER_CONSENT:
        return None if record.decided_by.same_person(record.requester) else "approval_missing"
    if not record.needs_requester:
        return None if await _approved_by_approver(authz, spec, record, record.decided_by) else "approver_not_allowed"
    # The requester agreed to an approver's edit: that approver's edit is the approval.
    if not record.decided_by.same_person(record.requester) or record.edited_from is None:
        return "approval_missing"
    parent = await ledger.get(record.thread_id, record.tool_call_id, record.edited_from)
    if parent is None or parent.status != "edited" or parent.edited_to != record.args_hash:
        return "approval_missing"
    return None if await _approved_by_approver(authz, spec, parent, parent.decided_by) else "approver_not_allowed"


async def execution_refusal(
    ledger: CallLedger,
    authz: Authorizer,
    spec: ToolSpec,
    record: CallRecord | None,
    *,
    requester: Party,
    token_principal: Principal,
    now: float,
) -> str | None:
    """Why the call of ``record`` may not run now, or ``None`` if every condition holds.

    Args:
        ledger: Where parent rows of edits are read.
        authz: OpenFGA, to re-check that the decider is still an approver.
        spec: The tool's policy.
        record: The ledger row of exactly the arguments about to run.
        requester: On whose behalf the call runs.
        token_principal: The verified principal of the token about to be exchanged.
        now: Epoch seconds.

    Raises:
        AuthorizationUnavailableError: OpenFGA could not decide (the caller denies).
    """
    gated = spec.approval is not ApprovalPolicy.NONE or spec.step_up is not None
    if record is None:
        return "approval_missing" if gated else None
    if not record.requester.same_person(requester) or token_principal.subject != requester.subject:
        return "requester_mismatch"
    if gated and now >= record.expires_at:
        return "approval_expired"
    if spec.approval is not ApprovalPolicy.NONE:
        refusal = await _decision_refusal(ledger, authz, spec, record)
        if refusal:
            return refusal
    if spec.step_up is not None:
        evidence = record.step_up
        if evidence is None or not acr_at_least(evidence.acr, spec.step_up.acr):
            return "step_up_missing"
        if evidence.checked_at - evidence.auth_time > spec.step_up.max_age:
            return "step_up_missing"
        if not acr_at_least(token_principal.acr, spec.step_up.acr):
            return "step_up_token_too_weak"  # the token to delegate must itself carry the stronger login
    return None
