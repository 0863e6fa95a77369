"""Embeddings providers behind LangChain's ``Embeddings`` interface, all 384-dimensional.

The default is offline and *lexical* (feature hashing): texts are close when they share words, not
meanings. It needs no model and no network, so the dev stack and the tests are deterministic;
production configures a semantic model with :func:`build_embeddings`: ``openai`` (any
OpenAI-compatible endpoint, asked for 384 dimensions) or ``sentence-transformers`` (a local model,
an optional install). Chunks and questions must be embedded by the same provider and model.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Literal

from langchain_core.embeddings import Embeddings

from mandate.retrieval.errors import RetrievalError

__all__ = ["EmbeddingsProvider", "LexicalEmbeddings", "build_embeddings"]

DEFAULT_DIMENSIONS = 384
"""The width of ``mandate.chunks.embedding``; every provider must produce it."""
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"
DEFAULT_LOCAL_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EmbeddingsProvider = Literal["lexical", "openai", "sentence-transformers"]
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are as at be by for from has have how i in is it its me my of on or our please the this "
    "to was we what which who will with you your latest summarize summarise tell about".split()
)


def _stem(word: str) -> str:
    """A deliberately crude stemmer so that "terms" meets "term" and "payments" meets "payment"."""
    for suffix in ("ings", "ing", "ies", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


class LexicalEmbeddings(Embeddings):
    """Signed feature hashing of stemmed words, weighted 1 + log(tf), L2-normalised.

    The async methods are LangChain's, which hash in a worker thread: a question as long as the
    service accepts is milliseconds of pure-Python work that would otherwise hold the event loop.
    """

    def __init__(self, *, dimensions: int = DEFAULT_DIMENSIONS) -> None:
        self.dimensions = dimensions

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed each text."""
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        """Embed a query exactly like a document (the space is symmetric)."""
        return self._embed(text)

    def _embed(self, text: str) -> list[float]:
        counts: dict[str, int] = {}
        for word in _WORD.findall(text.lower()):
            if word not in _STOPWORDS:
                stem = _stem(word)
                counts[stem] = counts.get(stem, 0) + 1
        vector = [0.0] * self.dimensions
        for term, count in counts.items():
            digest = hashlib.blake2b(term.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dimensions
            sign = 1.0 if digest[4] & 1 else -1.0
            vector[index] += sign * (1.0 + math.log(count))
        norm = math.sqrt(sum(v * v for v in vector))
        return [v / norm for v in vector] if norm else vector


class SentenceTransformerEmbeddings(Embeddings):
    """A local sentence-transformers model (optional install: ``pip install sentence-transformers``)."""

    def __init__(self, *, model: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RetrievalError("The sentence-transformers provider needs `pip install sentence-transformers`.") from exc
        self._model = SentenceTransformer(model)
        if self._model.get_sentence_embedding_dimension() != DEFAULT_DIMENSIONS:
            raise RetrievalError(f"Model {model!r} is not {DEFAULT_DIMENSIONS}-dimensional.")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed each text (normalised)."""
        return [list(map(float, v)) for v in self._model.encode(texts, normalize_embeddings=True)]

    def embed_query(self, text: str) -> list[float]:
        """Embed a question like a document."""
        return self.embed_documents([text])[0]


def build_embeddings(
    provider: EmbeddingsProvider = "lexical", *, model: str = "", base_url: str = "", api_key: str = ""
) -> Embeddings:
    """The embeddings provider the settings name.

    Args:
        provider: ``lexical`` (offline default), ``openai`` or ``sentence-transformers``.
        model: Model name; empty picks the provider's default.
        base_url: OpenAI-compatible endpoint (``openai`` only); empty means OpenAI itself.
        api_key: API key (``openai`` only).

    Raises:
        RetrievalError: The provider is unknown or its optional package is missing.
    """
    if provider == "lexical":
        return LexicalEmbeddings()
    if provider == "openai":
        from langchain_openai import OpenAIEmbeddings
        from pydantic import SecretStr

        return OpenAIEmbeddings(
            model=model or DEFAULT_OPENAI_MODEL,
            dimensions=DEFAULT_DIMENSIONS,
            base_url=base_url or None,
            api_key=SecretStr(api_key) if api_key else None,
            check_embedding_ctx_length=False,
            max_retries=1,
        )
    if provider == "sentence-transformers":
        return SentenceTransformerEmbeddings(model=model or DEFAULT_LOCAL_MODEL)
    raise RetrievalError(f"Unknown embeddings provider {provider!r}.")
