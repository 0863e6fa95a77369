"""The offline embedder: lexical feature hashing behind LangChain's ``Embeddings`` interface.

It is *lexical*: texts are close when they share words, not meanings. It needs no model and no
network, so the dev stack and the tests are deterministic; production configures a semantic model.
"""

from __future__ import annotations

import hashlib
import math
import re

from langchain_core.embeddings import Embeddings

__all__ = ["LexicalEmbeddings"]

DEFAULT_DIMENSIONS = 384
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
    """Signed feature hashing of stemmed words, weighted 1 + log(tf), L2-normalised."""

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
