"""A team's own ``create_agent`` graph, used by ``python -m bench.peers`` to compare servers.

It is an ordinary LangChain agent (a model node and a tools node, in a loop) answering currency
questions with two tool calls in sequence: ``lookup_rate``, then ``convert_currency`` with the rate
it found, then a final answer (three model calls, two tool calls, a checkpoint per step).

Two factories build the same agent:

- :func:`make_graph`: what Mandate serves, with :class:`~mandate.sdk.MandateGate` on every tool call
  (OpenFGA grants for the user and the agent, the ledger, a write-ahead audit record, the check
  again at the effect) and ``context_schema=GraphContext``.
- :func:`make_plain_graph`: the same agent without Mandate's middleware, for the servers that cannot
  give it Mandate's context (``langgraph dev``, aegra) and for the in-process floor.
"""

from __future__ import annotations

import os
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool

RATES = {("EUR", "USD"): 1.1, ("USD", "EUR"): 0.91, ("EUR", "GBP"): 0.85}
SYSTEM_PROMPT = "You convert amounts between currencies. Look the rate up first, then convert; never guess a rate."


@tool
def lookup_rate(base: str, quote: str) -> str:
    """The exchange rate from ``base`` to ``quote`` (ISO 4217 codes)."""
    return f"{RATES[(base.upper(), quote.upper())]}"


@tool
def convert_currency(amount: float, rate: float) -> str:
    """Convert ``amount`` at ``rate``."""
    return f"{amount * rate:.2f}"


def _model() -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=os.environ.get("BENCH_AGENT_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("OPENAI_BASE_URL") or None,
        temperature=0,
    )


def make_graph():  # noqa: ANN201  (a LangGraph graph factory)
    """The agent under Mandate's gate, acting as ``agent:bench``."""
    from mandate.sdk import GraphContext, MandateGate

    return create_agent(
        _model(),
        tools=[lookup_rate, convert_currency],
        system_prompt=SYSTEM_PROMPT,
        middleware=[MandateGate(agent="bench")],
        context_schema=GraphContext,
    )


def make_plain_graph():  # noqa: ANN201
    """The same agent with no controls (what ``langgraph dev``, aegra and the floor run)."""
    return create_agent(_model(), tools=[lookup_rate, convert_currency], system_prompt=SYSTEM_PROMPT)
