"""The planner node: the user's last message becomes a question and/or proposed tool calls.

Two planners share one output: the offline planner (deterministic rules for the demo intents)
and the LLM planner (``ChatOpenAI`` with tool calling against any OpenAI-compatible endpoint).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from opentelemetry import trace

from mandate.audit import redact
from mandate.auth import AuthError, Relationship
from mandate.contract.state import GraphContext, MandateState, Plan, ProposedCall, ToolOutcome
from mandate.nodes._outcomes import audit_denial, outcome
from mandate.tools import ToolError, ToolRegistry, args_hash

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI  # annotations only: importing it costs a second at every start

__all__ = ["LlmPlanner", "Node", "OfflinePlanner", "make_planner"]

Node = Callable[[MandateState, Runtime[GraphContext]], Awaitable[dict[str, Any]]]
"""A graph node: a function of the state and the typed runtime context."""

PLANNER_SYSTEM_PROMPT = (
    "You are Mandate's planner. Decide which tools serve the user's request. Use search_documents for any "
    "question about documents or company information. Propose other tools only when the user asks for that "
    "action. Never invent arguments the user did not give."
)
SEARCH_TOOL = "search_documents"




# Each intent is found by a few forward scans, each anchored where the previous one ended, never by
# one pattern with several unbounded wildcards: ``\b(?:send|pay…)\b.*?(\d+)….*?\bto\s+…`` backtracked
# cubically, so one 4 KB message held the event loop for over 20 s. A thread would not help: ``re``
# holds the GIL while it matches. Each pattern below fails or succeeds in time linear in what it
# reads, and the planner reads the message a constant number of times.
_PAYMENT_VERB = re.compile(r"\b(?:send|pay|transfer|wire)\b", re.IGNORECASE)
_AMOUNT = re.compile(
    r"(?:(?P<grouped>\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?)|(?P<plain>\d+(?:[.,]\d{1,2})?))\s*(?P<currency>EUR|USD|GBP|CHF)?",
    re.IGNORECASE,
)
"""Matches at the first digit it is searched from, without backtracking: all after the digits is optional."""
_RECIPIENT = re.compile(r"\bto\s+(?P<recipient>[^.,;\n]+)", re.IGNORECASE)
"""If it fails after a ``to``, it has backtracked only over the whitespace that follows that ``to``."""
_TICKET_VERB = re.compile(r"\b(?:open|create|file|raise|submit)\b", re.IGNORECASE)
_TICKET = re.compile(r"\bticket\b(?P<lead>\s*(?:about|for|titled|:|-)?)", re.IGNORECASE)
"""A mention of a ticket and the words that lead into its title (``ticket for …``, ``ticket: …``)."""
_CURRENCY_SYMBOLS = {"€": "EUR", "$": "USD"}


def _payment_args(text: str) -> dict[str, Any] | None:
    """The arguments of the payment ``text`` asks for, or None if it asks for none.

    A payment verb, then the first amount after it (its currency code after it, or its symbol
    before it; EUR otherwise), then the first ``to <recipient>`` after the amount.
    """
    verb = _PAYMENT_VERB.search(text)
    amount = _AMOUNT.search(text, verb.end()) if verb else None
    recipient = _RECIPIENT.search(text, amount.end()) if amount else None
    if amount is None or recipient is None:
        return None
    # The verb's closing word boundary puts at least one character between it and the amount.
    currency = amount["currency"] or _CURRENCY_SYMBOLS.get(text[amount.start() - 1], "EUR")
    # "1,000" and "1,000.50" group thousands; a comma before one or two digits is a decimal comma.
    value = amount["grouped"].replace(",", "") if amount["grouped"] else amount["plain"].replace(",", ".")
    return {
        "amount": float(value),
        "currency": currency.upper(),
        "recipient": recipient["recipient"].strip(),
    }


def _ticket_title(text: str) -> str | None:
    """The title of the ticket ``text`` asks to open, or None if it asks for none.

    A ticket verb with a mention of a ticket after it; the title is what follows the first
    mention (and its lead-in words), else the lead-in itself, else the whole message.
    """
    verb = _TICKET_VERB.search(text)
    first = _TICKET.search(text)
    if verb is None or first is None or _TICKET.search(text, verb.end()) is None:
        return None
    if first.end() < len(text):
        title = text[first.end() :]
    elif first.start("lead") < len(text):
        title = text[first.start("lead") :]
    else:
        title = text
    return title.strip().rstrip(".")[:200] or "New ticket"


class OfflinePlanner:
    """Deterministic rules for the demo intents: ask about documents, open a ticket, send a payment.

    Planning reads the message a constant number of times, so it stays cheap on the event loop
    for any message (see the patterns above).
    """

    async def plan(self, text: str, *, tools: ToolRegistry) -> Plan:
        """The plan for ``text`` (``tools`` is unused: the rules know the demo tools)."""
        if (payment := _payment_args(text)) is not None:
            return Plan(calls=(("send_payment", payment),))
        if (title := _ticket_title(text)) is not None:
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
            await audit_denial(ctx, state, call, code, agent=executor, stage="planning")
            outcomes.append(outcome(call, "denied", code))
        return {
            "question": plan.question,
            "proposed": admitted,
            "approved": [],
            "outcomes": outcomes,
            "context": [],
            "review_error": None,
            "gate_pending": False,
        }

    return planner
