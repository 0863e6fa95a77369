"""The tool executor: every approved call passes the whole gate, in order, at the moment it runs.

Order (each step fail-closed): registry lookup → arguments bound to the approved hash → the
requester's token (this call's, or the vault's when someone else resumed the run) and its scopes →
OpenFGA (the user may use the tool AND the agent may invoke it) → the call ledger (a decision by
an allowed person for exactly these arguments, step-up evidence for them, not expired, not run
before) → write-ahead audit record → token exchange → downstream call with an idempotency key
per tool call, so a crash and resume never doubles an effect. Graph state only says which calls
to try; none of it is trusted as a decision.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt
from opentelemetry import trace

from mandate.audit import AuditUnavailableError, redact
from mandate.auth import ACR_LEVELS, AuthError, AuthorizationUnavailableError, DelegatedToken, Principal, Relationship, acr_at_least
from mandate.auth import vocabulary as fga
from mandate.gate import CallRecord, ReauthenticateRequest, execution_refusal
from mandate.contract.state import GraphContext, MandateState, ProposedCall, ToolOutcome
from mandate.nodes._outcomes import audit_call, outcome, party, requester_of, spec_of
from mandate.nodes.planner import Node
from mandate.tools import ApprovalPolicy, ToolError, ToolSpec, args_hash, call_downstream

__all__ = ["Invoke", "execute_call", "make_tool_executor", "usable_token"]

_NoToken = Literal["token_not_held", "token_expired", "token_too_weak"]
REAUTHENTICATE_DESCRIPTIONS: dict[_NoToken, str] = {
    "token_not_held": (
        "This action is made with a token delegated from your sign-in, and this server does not keep sign-ins "
        "(under `langgraph dev` no token reaches LangGraph's run store). Run it through Mandate's own server; "
        "resuming this thread here asks again."
    ),
    "token_expired": (
        "Your sign-in, kept for this thread while the action waited for a decision, has expired or can no "
        "longer be used. Sign in again and resume this thread with the new token."
    ),
    "token_too_weak": (
        "This action must be delegated from a sign-in at level {acr}, and the sign-in this run has is weaker. "
        "Sign in again with your second factor and resume this thread with the new token."
    ),
}
"""The pause's description, by reason: each says why no sign-in is usable and what to do."""


class _Refused(Exception):
    """A gate step said no; carries the outcome to report."""

    def __init__(self, status: str, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


def _required_acr(ctx: GraphContext, calls: list[ProposedCall]) -> str | None:
    """The strongest authentication level any of ``calls`` needs of the token to delegate."""
    levels = [spec.step_up.acr for call in calls if (spec := spec_of(ctx, call)) and spec.step_up]
    return max(levels, key=ACR_LEVELS.index) if levels else None


async def _requester_token(ctx: GraphContext, state: MandateState, *, acr: str | None) -> tuple[str, Principal] | _NoToken:
    """The requester's own token and who it speaks for: this call's if they made it, else the vault's.

    Otherwise why there is none (not held by this server, expired, weaker than ``acr``): the
    requester signs in again.

    Raises:
        AuthError: A vaulted token no longer verifies (it is re-verified, never trusted).
    """
    requester = requester_of(state)
    if ctx.caller.same_subject(requester) and ctx.subject_token:
        token, holder = ctx.subject_token, ctx.caller
    else:
        vaulted = await ctx.vault.get(
            issuer=requester["issuer"], subject=requester["subject"], thread_id=ctx.thread_id, now=ctx.clock()
        )
        if vaulted is None:
            # The requester without a token of theirs: not held by this server, unless their own sign-in
            # expired (a queued run that waited longer than the token lived).
            held_here = ctx.caller.same_subject(requester) and ctx.caller.expires_at > ctx.clock()
            return "token_not_held" if held_here else "token_expired"
        token, holder = vaulted, await ctx.verifier.verify(vaulted)
    if acr is not None and not acr_at_least(holder.acr, acr):
        return "token_too_weak"
    return token, holder


async def _ledger_record(ctx: GraphContext, state: MandateState, call: ProposedCall, spec: ToolSpec, *, agent: str) -> CallRecord:
    """The ledger row of exactly these arguments; an ungated call gets one now (to run it once)."""
    record = await ctx.ledger.get(ctx.thread_id, call["id"], call["args_hash"])
    if record is not None or spec.approval is not ApprovalPolicy.NONE or spec.step_up is not None:
        if record is None:
            raise _Refused("denied", "approval_missing")
        return record
    requester = requester_of(state)
    return await ctx.ledger.open(
        call, thread_id=ctx.thread_id, tenant=requester["tenant"], policy=str(spec.approval), agent=agent,
        requester=party(requester), ttl=spec.approval_ttl, now=ctx.clock(),
    )


async def _gate(
    ctx: GraphContext, state: MandateState, call: ProposedCall, holder: Principal, *, agent: str
) -> tuple[ToolSpec, dict[str, Any], CallRecord]:
    """Registry, arguments, token scopes, OpenFGA, the ledger: raise :class:`_Refused` on any no."""
    try:
        spec = ctx.tools.get(call["name"])
        args = spec.validate_args(call["args"])
    except ToolError as exc:
        raise _Refused("denied" if exc.code == "unknown_tool" else "failed", exc.code) from exc
    if args_hash(spec.name, args) != call["args_hash"]:
        raise _Refused("denied", "args_changed_after_approval")
    if not set(spec.scopes) <= holder.scopes:
        raise _Refused("denied", "insufficient_scope")
    requester = requester_of(state)
    try:
        user_may, agent_may = await ctx.authz.batch_check(
            [
                Relationship(Principal.user_id_of(requester), spec.relation, spec.resource),
                Relationship(fga.agent(agent), fga.INVOKER, spec.resource),
            ],
            strong=True,
        )
        if not user_may:
            raise _Refused("denied", "user_not_allowed")
        if not agent_may:
            raise _Refused("denied", "agent_not_allowed")
        record = await _ledger_record(ctx, state, call, spec, agent=agent)
        refusal = await execution_refusal(
            ctx.ledger, ctx.authz, spec, record, requester=party(requester), token_principal=holder, now=ctx.clock()
        )
    except AuthorizationUnavailableError:
        raise  # not a decision: see _execute
    except AuthError as exc:
        raise _Refused("denied", exc.code) from exc
    if refusal:
        raise _Refused("denied" if refusal != "rejected" else "declined", refusal)
    return spec, args, record


Invoke = Callable[[ToolSpec, dict[str, Any], DelegatedToken | None, str], Awaitable[dict[str, Any]]]
"""Runs a call once it passed the gate: (tool, arguments, delegated token if the tool has an API,
idempotency key) → the tool's result. Raises :class:`ToolError` if the tool failed."""


async def execute_call(
    ctx: GraphContext, state: MandateState, call: ProposedCall, holder: Principal, token: str, *, agent: str, invoke: Invoke
) -> ToolOutcome:
    """Pass ``call`` through the whole gate at the moment it runs, then run it with ``invoke``."""
    requester = requester_of(state)
    try:
        spec, args, record = await _gate(ctx, state, call, holder, agent=agent)
    except _Refused as refusal:
        await audit_call(ctx, state, call, "tool.denied", refusal.code, agent=agent)
        return outcome(call, refusal.status, refusal.code)
    except AuthorizationUnavailableError as exc:
        # OpenFGA could not decide: nothing runs, and the run stops here (503) instead of ending
        # the call for good, so that it can be continued once OpenFGA answers again.
        await audit_call(ctx, state, call, "tool.denied", exc.code, agent=agent)
        raise
    if await ctx.ledger.start_execution(record) == "done":
        await audit_call(ctx, state, call, "tool.denied", "already_executed", agent=agent)
        return outcome(call, "denied", "already_executed")
    approvers = [ctx.pseudonym(p) for p in (record.decided_by,) if p is not None]
    try:
        started = await audit_call(
            ctx, state, call, "tool.started", "allowed", agent=agent, audience=spec.audience, scopes=list(spec.scopes),
            decided_by=approvers, attempt=record.attempts + 1,
        )
    except AuditUnavailableError as exc:
        return outcome(call, "failed", exc.code)  # no durable record, no tool run
    span = trace.get_current_span()
    span.set_attribute("mandate.audit.record_id", started)
    span.set_attribute("mandate.actor_chain", [ctx.brokers[agent].actor, *ctx.caller.actor_chain])
    try:
        delegated = None
        if spec.audience is not None:
            delegated = await ctx.brokers[agent].exchange(
                token, issuer=requester["issuer"], subject=requester["subject"], audience=spec.audience,
                scopes=spec.scopes,
            )
        result = await invoke(spec, args, delegated, f"{ctx.thread_id}:{call['id']}")
    except (AuthError, ToolError) as exc:
        await ctx.ledger.finish_execution(record, outcome={"status": "failed", "code": exc.code}, now=ctx.clock())
        await audit_call(ctx, state, call, "tool.failed", exc.code, agent=agent, started=started)
        return outcome(call, "failed", exc.code)
    safe = {k: v for k, v in result.items() if k in ("id", "status")}
    reference = {"id": str(result["id"])} if "id" in result else {}
    await ctx.ledger.finish_execution(record, outcome={"status": "succeeded", "code": "ok", **reference}, now=ctx.clock())
    await audit_call(ctx, state, call, "tool.succeeded", "ok", agent=agent, started=started, **safe)
    return outcome(call, "succeeded", "ok", safe)


async def usable_token(ctx: GraphContext, state: MandateState, calls: list[ProposedCall]) -> tuple[str, Principal]:
    """The requester's token to delegate for ``calls``, and who it speaks for.

    Pauses with kind ``reauthenticate`` while there is none (not held here, expired while the
    calls waited, weaker than they need) and looks again on resume.

    Raises:
        AuthError: A vaulted token no longer verifies.
    """
    acr = _required_acr(ctx, calls)
    usable = await _requester_token(ctx, state, acr=acr)
    while isinstance(usable, str):
        request = ReauthenticateRequest(
            kind="reauthenticate", tool_call_ids=[c["id"] for c in calls], reason=usable,
            description=REAUTHENTICATE_DESCRIPTIONS[usable].format(acr=acr),
        )
        if acr:
            request["acr_values"] = acr
        interrupt(request)
        usable = await _requester_token(ctx, state, acr=acr)
    return usable


def _api_call(ctx: GraphContext) -> Invoke:
    """Run a call by POSTing it to its tool's API with the delegated token."""

    async def invoke(spec: ToolSpec, args: dict[str, Any], token: DelegatedToken | None, key: str) -> dict[str, Any]:
        if token is None:
            raise ToolError(f"Tool {spec.name} has no API to call.")
        return await call_downstream(ctx.downstream, spec, args=args, token=token, idempotency_key=key)

    return invoke


def make_tool_executor(*, agent: str) -> Node:
    """The executor node acting as ``agent``: its OpenFGA grants and its OAuth client (the ``act``)."""

    async def tool_executor(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
        """Run each approved call through the gate; report what became of each."""
        ctx = runtime.context
        approved = state.get("approved", [])
        outcomes = list(state.get("outcomes", []))
        if not approved:
            return {"outcomes": outcomes}
        try:
            token, holder = await usable_token(ctx, state, approved)
        except AuthError as exc:
            for call in approved:
                await audit_call(ctx, state, call, "tool.denied", exc.code, agent=agent)
                outcomes.append(outcome(call, "denied", exc.code))
            return {"outcomes": outcomes, "approved": []}
        for call in approved:
            with ctx.tracer.start_as_current_span(f"execute_tool {call['name']}") as span:
                span.set_attribute("gen_ai.operation.name", "execute_tool")
                span.set_attribute("gen_ai.agent.id", agent)
                span.set_attribute("gen_ai.tool.name", call["name"])
                span.set_attribute("gen_ai.tool.call.id", call["id"])
                span.set_attribute("gen_ai.conversation.id", ctx.thread_id)
                if ctx.trace_content:
                    span.set_attribute("gen_ai.tool.call.arguments", redact(json.dumps(call["args"], sort_keys=True)))
                result = await execute_call(ctx, state, call, holder, token, agent=agent, invoke=_api_call(ctx))
                span.set_attribute("mandate.tool.status", result["status"])
                span.set_attribute("mandate.tool.code", result["code"])
            outcomes.append(result)
        return {"outcomes": outcomes, "approved": []}

    return tool_executor
