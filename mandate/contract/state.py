"""The contract between Mandate and graph code: the state schema, the typed runtime context, and the
model services the built-in nodes use. Nodes, graphs and graph authors import it; it imports none of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

import httpx
from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from opentelemetry import trace
from typing_extensions import TypedDict

from mandate.audit import AuditSink
from mandate.auth import Authorizer, Principal, PrincipalState, TokenBroker, TokenVault, TokenVerifier
from mandate.gate import CallLedger, Party, ProposedCall
from mandate.contract.errors import PrincipalImmutableError
from mandate.retrieval import Retriever
from mandate.tools import ToolRegistry

__all__ = [
        "ContextChunk",
    "GraphContext",
    "MandateState",
    "Plan",
    "Planner",
    "ProposedCall",
    "Responder",
    "ReviewError",
    "ToolOutcome",
    "write_once",
]



def write_once(current: PrincipalState | None, new: PrincipalState | None) -> PrincipalState | None:
    """Reducer for the principal: it may be set once; any different value fails the run."""
    if new is None:
        return current
    if current is not None and dict(current) != dict(new):
        raise PrincipalImmutableError("The principal of a thread cannot be changed.")
    return new


class ToolOutcome(TypedDict):
    """What became of one proposed call."""

    call_id: str
    name: str
    status: Literal["succeeded", "declined", "denied", "failed"]
    code: str
    """Stable reason (``ok``, ``rejected_by_user``, ``authz_denied``, ``authz_unavailable`` …)."""
    detail: dict[str, Any]
    """Safe facts for the answer (a ticket id); never a token."""


class ReviewError(TypedDict):
    """Why the last answer to a review was refused; the question is asked again with it."""

    code: str
    field: str | None


class ContextChunk(TypedDict):
    """A chunk authorized for (user, agent) at retrieval time."""

    doc_id: str
    title: str
    chunk_index: int
    content: str
    similarity: float


class MandateState(TypedDict, total=False):
    """State of one thread. The principal is the requester, set once."""

    principal: Annotated[PrincipalState | None, write_once]
    messages: Annotated[list[AnyMessage], add_messages]
    question: str | None
    proposed: list[ProposedCall]
    approved: list[ProposedCall]
    """The calls as decided (edited arguments included), for the executor; the ledger still rules."""
    outcomes: list[ToolOutcome]
    context: list[ContextChunk]
    review_error: ReviewError | None
    gate_pending: bool
    """A gate step just happened (an answer was taken or refused): step-up and consent run again."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """What to do for one user message."""

    question: str | None = None
    """Text to search the documents for, if any."""
    calls: tuple[tuple[str, dict[str, Any]], ...] = field(default=())
    """Proposed (tool name, arguments), not yet authorized."""


class Planner(Protocol):
    """Turns a user message into a :class:`Plan`."""

    async def plan(self, text: str, *, tools: ToolRegistry) -> Plan: ...


class Responder(Protocol):
    """Writes the answer to a question from authorized context."""

    async def answer(self, question: str, context: list[ContextChunk]) -> str: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class GraphContext:
    """Services and the current caller, passed as ``context=`` on every invoke; never checkpointed."""

    caller: Principal
    """The verified principal of *this* call (the requester, or whoever resumes)."""
    subject_token: str = field(repr=False)
    """This call's raw access token, only to exchange it; never copied into state."""
    thread_id: str
    authz: Authorizer
    retriever: Retriever
    tools: ToolRegistry
    brokers: Mapping[str, TokenBroker]
    """Token brokers by agent id; the acting agent exchanges as its own OAuth client."""
    vault: TokenVault
    ledger: CallLedger
    """The gate's authority: decisions, step-up evidence, expiry and single execution per call."""
    verifier: TokenVerifier
    """Re-verifies a token taken from the vault before it is used."""
    downstream: httpx.AsyncClient
    audit: AuditSink
    planner: Planner
    responder: Responder
    pseudonymize: Callable[[str, str], str]
    tracer: trace.Tracer
    clock: Callable[[], float]
    run_id: str | None = None
    """The server's run that carries this call; answers to reviews are taken only in the run that
    delivered them (see :func:`mandate.gate.answer_of_run`)."""
    trace_content: bool = False
    """Whether spans may carry (redacted) user messages and tool arguments; off by default."""

    def pseudonym(self, principal: Principal | PrincipalState | Party) -> str:
        """The pseudonymous id of ``principal`` (for audit rows and spans)."""
        if isinstance(principal, (Principal, Party)):
            return self.pseudonymize(principal.issuer, principal.subject)
        return self.pseudonymize(principal["issuer"], principal["subject"])
