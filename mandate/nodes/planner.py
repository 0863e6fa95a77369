"""The planner node: the user's last message becomes a question and/or proposed tool calls.

Two planners share one output: the offline planner (deterministic rules for the demo intents)
and the LLM planner (``ChatOpenAI`` with tool calling against any OpenAI-compatible endpoint).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.runtime import Runtime
from opentelemetry import trace

from mandate.audit import redact
from mandate.auth import AuthError, Relationship
from mandate.graphs.state import GraphContext, MandateState, ProposedCall, ToolOutcome
from mandate.nodes._outcomes import audit_call, outcome
from mandate.tools import ToolError, ToolRegistry, args_hash

__all__ = ["LlmPlanner", "Node", "OfflinePlanner", "Plan", "Planner", "make_planner"]

Node = Callable[[MandateState, Runtime[GraphContext]], Awaitable[dict[str, Any]]]
"""A graph node: a function of the state and the typed runtime context."""

PLANNER_SYSTEM_PROMPT = (
    "You are Mandate's planner. Decide which tools serve the user's request. Use search_documents for any "
    "question about documents or company information. Propose other tools only when the user asks for that "
    "action. Never invent arguments the user did not give."
)
SEARCH_TOOL = "search_documents"


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


_TICKET = re.compile(r"\b(open|create|file|raise|submit)\b.*\bticket\b", re.IGNORECASE | re.DOTALL)
_TICKET_TITLE = re.compile(r"\bticket\b\s*(?:about|for|titled|:|-)?\s*(.+)", re.IGNORECASE | re.DOTALL)
_PAYMENT = re.compile(
    r"\b(?:send|pay|transfer|wire)\b.*?(?P<symbol>[€$])?(?P<amount>\d+(?:[.,]\d{1,2})?)\s*(?P<currency>EUR|USD|GBP|CHF)?"
    r".*?\bto\s+(?P<recipient>[^.,;\n]+)",
    re.IGNORECASE | re.DOTALL,
)
_CURRENCY_SYMBOLS = {"€": "EUR", "$": "USD"}


class OfflinePlanner:
    """Deterministic rules for the demo intents: ask about documents, open a ticket, send a payment."""

    async def plan(self, text: str, *, tools: ToolRegistry) -> Plan:
        """The plan for ``text`` (``tools`` is unused: the rules know the demo tools)."""
        if payment := _PAYMENT.search(text):
            currency = (payment["currency"] or _CURRENCY_SYMBOLS.get(payment["symbol"] or "", "EUR")).upper()
            args = {
                "amount": float(payment["amount"].replace(",", ".")),
                "currency": currency,
                "recipient": payment["recipient"].strip(),
            }
            return Plan(calls=(("send_payment", args),))
        if _TICKET.search(text):
            title_match = _TICKET_TITLE.search(text)
            title = (title_match[1] if title_match else text).strip().rstrip(".")[:200] or "New ticket"
            return Plan(calls=(("create_ticket", {"title": title, "description": text.strip()[:4000]}),))
        return Plan(question=text.strip())


class LlmPlanner:
    """Plans with tool calling on an OpenAI-compatible chat model."""

    def __init__(self, model: ChatOpenAI) -> None:
        self._model = model

    async def plan(self, text: str, *, tools: ToolRegistry) -> Plan:
        """Ask the model which tools to call for ``text``; no tool call means "answer from documents"."""
        schemas = [
            {
                "type": "function",
                "function": {
                    "name": spec.name,
                    "description": spec.description,
                    "parameters": spec.args_schema.model_json_schema(),
                },
            }
            for spec in tools
        ]
        messages: list[BaseMessage] = [SystemMessage(PLANNER_SYSTEM_PROMPT), HumanMessage(text)]
        reply = await self._model.bind_tools(schemas).ainvoke(messages)
        assert isinstance(reply, AIMessage)
        question: str | None = None
        calls: list[tuple[str, dict[str, Any]]] = []
        for call in reply.tool_calls:
            if call["name"] == SEARCH_TOOL:
                question = str(call["args"].get("query") or text)
            else:
                calls.append((call["name"], dict(call["args"])))
        if question is None and not calls:
            question = text
        return Plan(question=question, calls=tuple(calls))


def _last_user_text(state: MandateState) -> str:
    for message in reversed(state.get("messages", [])):
        if isinstance(message, HumanMessage):
            return message.text if isinstance(message.text, str) else str(message.content)
    return ""


def _normalised(tools: ToolRegistry, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as the tool's schema normalises them, so consent shows and binds what will run.

    Unknown tools and invalid arguments pass through unchanged: the executor refuses them, audited.
    """
    try:
        return tools.get(name).validate_args(args)
    except ToolError:
        return args


async def _admit(
    ctx: GraphContext, calls: list[ProposedCall], *, executor: str
) -> tuple[list[ProposedCall], list[tuple[ProposedCall, str]]]:
    """Split proposals into admitted ones and those denied before anything happens.

    Unknown tools, and tools the executing agent holds no ``invoker`` grant for, never reach
    step-up or consent. The executor checks everything again before a call runs.
    """
    denied: list[tuple[ProposedCall, str]] = []
    known = []
    for call in calls:
        try:
            known.append((call, ctx.tools.get(call["name"])))
        except ToolError as exc:
            denied.append((call, exc.code))
    try:
        grants = await ctx.authz.batch_check([Relationship(executor, "invoker", spec.resource) for _, spec in known])
    except AuthError as exc:
        return [], denied + [(call, exc.code) for call, _ in known]
    admitted = [call for (call, _), granted in zip(known, grants, strict=True) if granted]
    denied += [(call, "agent_not_allowed") for (call, _), granted in zip(known, grants, strict=True) if not granted]
    return admitted, denied


def make_planner(*, executor: str) -> Node:
    """The planner node for a graph whose tool calls ``executor`` (an OpenFGA agent) makes."""

    async def planner(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
        """Plan the last user message; resets the per-message fields of the state."""
        ctx = runtime.context
        text = _last_user_text(state)
        if ctx.trace_content:
            trace.get_current_span().set_attribute("gen_ai.input.messages", redact(text))
        plan = await ctx.planner.plan(text, tools=ctx.tools)
        calls = []
        for name, raw_args in plan.calls:
            args = _normalised(ctx.tools, name, raw_args)
            calls.append(
                ProposedCall(id=f"call_{uuid.uuid4().hex[:16]}", name=name, args=args, args_hash=args_hash(name, args))
            )
        admitted, denied = await _admit(ctx, calls, executor=executor)
        outcomes: list[ToolOutcome] = []
        for call, code in denied:
            await audit_call(ctx, state, call, "tool.denied", code, agent=executor, stage="planning")
            outcomes.append(outcome(call, "denied", code))
        return {
            "question": plan.question,
            "proposed": admitted,
            "approved": [],
            "outcomes": outcomes,
            "context": [],
            "decisions": [],
            "consent_error": None,
            "consent_pending": False,
        }

    return planner
