"""Mandate's gate for LangChain's ``create_agent``: every tool call the model makes passes it.

Add ``MandateGate(agent="assistant")`` to ``middleware=``; the gate finds Mandate's runtime context
through :func:`~mandate.sdk.graph_context` (under ``mandate serve`` and under ``langgraph dev``).
For each tool call, in order, each step fail-closed and audited:

1. registry lookup (a tool without a policy is denied) and its argument schema;
2. OpenFGA: the requester may use the tool AND the agent may invoke it (planning-time denial);
3. step-up (RFC 9470): a pause of kind ``step_up`` until the requester's token is strong and fresh
   enough, bound in the call ledger to exactly these arguments;
4. consent or four-eyes approval: a pause in LangChain's human-in-the-loop shape (the approval
   queue and HITL front ends answer it), decided on the ledger for exactly these arguments;
5. at the effect: the whole gate again on the ledger, a write-ahead audit record, the token
   exchange, then the tool runs once with :func:`~mandate.sdk.delegated_credentials` set.

Refusals come back to the model as a ``ToolMessage`` with ``status="error"`` and a stable code.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ExtendedModelResponse, ModelCallResult
from langchain_core.messages import ToolMessage
from langgraph.errors import GraphBubbleUp
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command
from typing_extensions import NotRequired

from mandate.audit import redact
from mandate.auth import AuthError, DelegatedToken, Principal, PrincipalState, Relationship
from mandate.auth import vocabulary as fga
from mandate.contract import GraphContext, MandateContextMissingError, MandateState, ProposedCall, write_once
from mandate.nodes.consent import SETTLED, ask_once, open_decision
from mandate.nodes.step_up import require_step_up
from mandate.nodes._outcomes import as_call, audit_denial
from mandate.nodes.tool_executor import execute_call, usable_token
from mandate.sdk.context import graph_context
from mandate.sdk.credentials import CallCredentials, running_with
from mandate.tools import ApprovalPolicy, ToolError, ToolSpec, args_hash

__all__ = ["GatedAgentState", "MandateGate"]

Handler = Callable[[ToolCallRequest], Awaitable[ToolMessage | Command]]
ModelHandler = Callable[[ModelRequest], Awaitable[ModelResponse]]


class GatedAgentState(AgentState):
    """The agent's state plus the requester, set once by the first run of the thread."""

    principal: NotRequired[Annotated[PrincipalState | None, write_once]]


def _refusal(call: dict[str, Any], status: str, code: str) -> ToolMessage:
    return ToolMessage(
        content=json.dumps({"status": status, "code": code}), name=call["name"], tool_call_id=call["id"], status="error"
    )


class MandateGate(AgentMiddleware[GatedAgentState, GraphContext]):
    """Puts every tool call of a ``create_agent`` agent through Mandate's gate, acting as ``agent``."""

    state_schema = GatedAgentState

    def __init__(self, *, agent: str) -> None:
        super().__init__()
        self.agent = fga.agent(agent)
        """The acting agent's OpenFGA id (``agent:<name>``): its grants and its OAuth client."""

    async def awrap_model_call(self, request: ModelRequest, handler: ModelHandler) -> ModelCallResult:
        """Refuse to run without Mandate's context; record the requester on the thread's first run.

        Done inside the model node rather than as a ``before_agent`` hook: a hook is a node of its
        own, and every run would pay a superstep for it (a checkpoint, its writes, a streamed event)
        although Mandate's server sets the requester itself. The model node comes before any tool
        call, so the requester is on record (through the same write-once channel) before the gate
        is asked about one.
        """
        context = await graph_context(request.runtime)
        response = await handler(request)
        if request.state.get("principal"):
            return response
        update: dict[str, Any] = {"principal": context.caller.to_state()}
        if isinstance(response, ExtendedModelResponse):  # an inner middleware's update comes along
            inner = response.command.update if response.command is not None else None
            return ExtendedModelResponse(model_response=response.model_response, command=Command(update={**(inner or {}), **update}))
        return ExtendedModelResponse(model_response=response, command=Command(update=update))

    async def awrap_tool_call(self, request: ToolCallRequest, handler: Handler) -> ToolMessage | Command:
        """Gate the call; run it only when every condition holds at the moment it runs."""
        call = request.tool_call
        try:
            ctx = await graph_context(request.runtime)
        except MandateContextMissingError:
            return _refusal(call, "denied", "mandate_context_missing")
        state: MandateState = request.state  # type: ignore[assignment]
        with ctx.tracer.start_as_current_span(f"execute_tool {call['name']}") as span:
            span.set_attribute("gen_ai.operation.name", "execute_tool")
            span.set_attribute("gen_ai.agent.id", self.agent)
            span.set_attribute("gen_ai.tool.name", call["name"])
            span.set_attribute("gen_ai.tool.call.id", str(call["id"]))
            span.set_attribute("gen_ai.conversation.id", ctx.thread_id)
            if ctx.trace_content:
                span.set_attribute("gen_ai.tool.call.arguments", redact(json.dumps(call["args"], sort_keys=True)))
            message = await self._gated(ctx, state, request, handler)
            span.set_attribute("mandate.tool.status", "succeeded" if message.status != "error" else "refused")
            return message

    async def _gated(self, ctx: GraphContext, state: MandateState, request: ToolCallRequest, handler: Handler) -> ToolMessage:
        call = request.tool_call
        if state.get("principal") is None:  # only a graph invoked outside Mandate's server gets here
            return _refusal(call, "denied", "requester_unknown")
        try:
            spec = ctx.tools.get(call["name"])
            args = spec.validate_args(call["args"])
        except ToolError as exc:
            unknown = ProposedCall(id=str(call["id"]), name=call["name"], args={}, args_hash="")
            await audit_denial(ctx, state, unknown, exc.code, agent=self.agent, stage="planning")
            return _refusal(call, "denied", exc.code)
        proposed = ProposedCall(id=str(call["id"]), name=spec.name, args=args, args_hash=args_hash(spec.name, args))
        refusal = await self._grant_refusal(ctx, state, spec)
        if refusal:
            await audit_denial(ctx, state, proposed, refusal, agent=self.agent, stage="planning")
            return _refusal(call, "denied", refusal)
        await require_step_up(ctx, state, proposed, spec, agent=self.agent)
        decided = await self._decision(ctx, state, proposed, spec)
        if isinstance(decided, str):
            return _refusal(call, "declined", decided)
        try:
            token, holder = await usable_token(ctx, state, [decided])
        except AuthError as exc:
            return _refusal(call, "denied", exc.code)
        result: dict[str, ToolMessage] = {}

        async def invoke(spec: ToolSpec, args: dict[str, Any], delegated: DelegatedToken | None, key: str) -> dict[str, Any]:
            run = request.override(tool_call={**call, "args": args})
            with running_with(CallCredentials(token=delegated, idempotency_key=key)):
                try:
                    message = await handler(run)
                except (AuthError, ToolError, GraphBubbleUp):
                    raise
                except Exception as exc:  # the tool's own failure, reported without its text
                    raise ToolError(f"{spec.name} failed.", code="tool_failed") from exc
            if not isinstance(message, ToolMessage) or message.status == "error":
                raise ToolError(f"{spec.name} failed.", code="tool_failed")
            result["message"] = message
            return {}

        outcome = await execute_call(ctx, state, decided, holder, token, agent=self.agent, invoke=invoke)
        if outcome["status"] == "succeeded":
            return result["message"]
        return _refusal(call, outcome["status"], outcome["code"])

    async def _grant_refusal(self, ctx: GraphContext, state: MandateState, spec: ToolSpec) -> str | None:
        """Why the requester or this agent may not use ``spec`` at all, or ``None``."""
        requester = state["principal"]
        assert requester is not None  # checked by _gated
        try:
            user_may, agent_may = await ctx.authz.batch_check(
                [
                    Relationship(Principal.user_id_of(requester), spec.relation, spec.resource),
                    Relationship(self.agent, fga.INVOKER, spec.resource),
                ]
            )
        except AuthError as exc:
            return exc.code
        return None if user_may and agent_may else "user_not_allowed" if not user_may else "agent_not_allowed"

    async def _decision(self, ctx: GraphContext, state: MandateState, proposed: ProposedCall, spec: ToolSpec) -> ProposedCall | str:
        """The call as decided (an edit included), or why it will not run; pauses until it is decided."""
        if spec.approval is ApprovalPolicy.NONE:
            return proposed
        error = None
        while True:
            record = await open_decision(ctx, state, proposed, spec, agent=self.agent)
            if record.status in SETTLED:
                break
            error = await ask_once(ctx, state, record, spec, error, agent=self.agent)
            # An edit is a new call: its arguments need the requester's step-up again.
            await require_step_up(ctx, state, proposed, spec, agent=self.agent)
        if record.status != "approved":
            return {"rejected": "rejected", "expired": "approval_expired"}.get(record.status, "closed")
        return as_call(record)
