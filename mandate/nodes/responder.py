"""The responder node: the answer, grounded only in authorized context and the tool outcomes.

The offline responder is extractive (it quotes the authorized chunks and cites them); the LLM
responder writes the answer with ``ChatOpenAI`` from a prompt built only from that same context.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from mandate.contract.state import ContextChunk, GraphContext, MandateState, ToolOutcome

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI  # annotations only: importing it costs a second at every start

__all__ = ["LlmResponder", "OfflineResponder", "responder_node"]

NOTHING_FOUND = "I found no documents you are allowed to read that answer this."
RESPONDER_SYSTEM_PROMPT = (
    "Answer the user's question using only the context below, and name the documents you used. If the "
    "context does not answer it, say that you found no documents you are allowed to read that answer it."
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_HEADING = re.compile(r"^[^\S\n]*#+ .*$", re.MULTILINE)
"""A Markdown heading line. Its indent stays within the line: an indent that could span lines would be
rescanned from every line start of a run of blank lines, quadratic in the run."""
EXTRACT_CHARS = 700
"""Roughly how much of each of the two best chunks the offline responder quotes."""
_OUTCOME_TEXT = {
    "succeeded": "{name}: done{ref}.",
    "declined": "{name}: declined, so nothing was done.",
    "denied": "{name}: not allowed ({code}), so nothing was done.",
    "failed": "{name}: could not be completed ({code}).",
}




def _sources(context: list[ContextChunk]) -> str:
    titles = list(dict.fromkeys(chunk["title"] for chunk in context))
    return "Sources: " + "; ".join(titles) + "."


class OfflineResponder:
    """Quotes the most relevant sentences of the authorized chunks and cites their documents."""

    async def answer(self, question: str, context: list[ContextChunk]) -> str:
        """An extractive answer, or :data:`NOTHING_FOUND`."""
        if not context:
            return NOTHING_FOUND
        lines = []
        for chunk in context[:2]:
            prose = " ".join(_HEADING.sub(" ", chunk["content"]).split())
            quoted = ""
            for sentence in _SENTENCE.split(prose):
                if quoted and len(quoted) + len(sentence) > EXTRACT_CHARS:
                    break
                quoted = f"{quoted} {sentence}".strip()
            lines.append(f"From {chunk['title']}: {quoted}")
        return "\n\n".join(lines) + "\n\n" + _sources(context)


class LlmResponder:
    """Answers with an OpenAI-compatible chat model from the authorized context only."""

    def __init__(self, model: ChatOpenAI) -> None:
        self._model = model

    async def answer(self, question: str, context: list[ContextChunk]) -> str:
        """The model's answer, or :data:`NOTHING_FOUND` without asking it when there is no context."""
        if not context:
            return NOTHING_FOUND
        blocks = "\n\n".join(f"[{c['title']}]\n{c['content']}" for c in context)
        reply = await self._model.ainvoke(
            [SystemMessage(f"{RESPONDER_SYSTEM_PROMPT}\n\nContext:\n{blocks}"), HumanMessage(question)]
        )
        return f"{reply.text}\n\n{_sources(context)}"


def _outcome_line(outcome: ToolOutcome) -> str:
    ref = f" ({outcome['detail']['id']})" if "id" in outcome["detail"] else ""
    return _OUTCOME_TEXT[outcome["status"]].format(name=outcome["name"], code=outcome["code"], ref=ref)


async def responder_node(state: MandateState, runtime: Runtime[GraphContext]) -> dict[str, Any]:
    """Append the assistant's answer to the conversation."""
    parts = []
    if question := state.get("question"):
        parts.append(await runtime.context.responder.answer(question, state.get("context", [])))
    parts.extend(_outcome_line(outcome) for outcome in state.get("outcomes", []))
    return {"messages": [AIMessage("\n\n".join(parts) or "There was nothing to do.")]}
