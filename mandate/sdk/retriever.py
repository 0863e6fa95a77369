"""Authorized retrieval as LangChain pieces: a ``BaseRetriever`` and a ready tool.

Both return only chunks that the thread's requester AND the acting agent may read (OpenFGA decides
every chunk; similarity only ranks). The requester is the principal recorded on the thread, never
whoever happens to resume a run (an approver must not widen what reaches the requester's conversation).
"""

from __future__ import annotations

import json
from typing import Any
from langchain.tools import ToolRuntime
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mandate.auth import Principal, PrincipalState
from mandate.auth import vocabulary as fga
from mandate.contract import ContextChunk, GraphContext, MandateContextMissingError
from mandate.nodes import retrieve_authorized
from mandate.sdk.context import graph_context

__all__ = ["AuthorizedDocuments", "authorized_search"]

MAX_K = 20
"""The most chunks one query may return into a prompt."""


class AuthorizedDocuments(BaseRetriever):
    """A retriever over Mandate's documents for one run: ``AuthorizedDocuments(context=await
    graph_context(runtime), requester=state["principal"], agent="desk").ainvoke(question)``.

    Asynchronous only: the checks are OpenFGA calls on the run's event loop.
    """

    model_config = ConfigDict(frozen=True)
    context: Any = Field(repr=False)
    """The run's :class:`GraphContext` (``runtime.context``); typed loosely for pydantic, checked below."""
    requester: PrincipalState = Field(repr=False)
    agent: str
    """The reading agent's name (``desk``): its ``reader_agent`` grants bound what it may see."""
    k: int = Field(default=4, ge=1, le=MAX_K)

    @field_validator("context")
    @classmethod
    def _mandates_context(cls, context: Any) -> GraphContext:
        if not isinstance(context, GraphContext) or not isinstance(context.caller, Principal):
            raise ValueError("not Mandate's runtime context: use `await graph_context(runtime)` in a graph Mandate serves")
        return context

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        raise NotImplementedError("AuthorizedDocuments is asynchronous: use ainvoke.")

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        chunks = await retrieve_authorized(self.context, self.requester, query, agent=fga.agent(self.agent), k=self.k)
        return [_document(chunk) for chunk in chunks]


def _document(chunk: ContextChunk) -> Document:
    metadata = {"doc_id": chunk["doc_id"], "title": chunk["title"], "chunk_index": chunk["chunk_index"], "similarity": chunk["similarity"]}
    return Document(page_content=chunk["content"], metadata=metadata)


class _SearchArgs(BaseModel):
    # No extra="forbid": LangChain passes the injected ToolRuntime through this schema.
    query: str = Field(min_length=1, max_length=2000)


def authorized_search(*, agent: str, name: str = "search_documents", k: int = 4) -> BaseTool:
    """A tool that searches the documents the requester and ``agent`` may both read.

    Give it a policy in ``mandate.yaml`` like any tool (``sensitivity: read``); under ``MandateGate``
    the call itself is then also checked for user AND agent before it searches.
    """
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}")

    async def search(query: str, runtime: ToolRuntime) -> tuple[str, list[Document]]:
        context = await graph_context(runtime, config=runtime.config)
        requester = runtime.state.get("principal")
        if requester is None:
            raise MandateContextMissingError("authorized_search runs only after the thread's requester is known (MandateGate records it).")
        documents = await AuthorizedDocuments(context=context, requester=requester, agent=agent, k=k).ainvoke(query)
        found = [{"title": d.metadata["title"], "content": d.page_content} for d in documents]
        return json.dumps(found, ensure_ascii=False), documents

    return StructuredTool.from_function(
        coroutine=search,
        name=name,
        description="Search the documents you may read; returns the matching passages with their titles.",
        args_schema=_SearchArgs,
        response_format="content_and_artifact",
    )
