"""The synthetic corpus and its permissions: clustered 384-d vectors with text, users at chosen f.

Vectors: topics (1,000 chunks each, 100 documents of 10 chunks) whose centres share a common
direction and a super-topic, like real embedding spaces; each topic varies in its own 24-d
subspace (documents, then chunks) with a little isotropic noise. Questions are drawn the same way
from random topics, so most land near content a given user may not read.

Permissions, in the Mandate OpenFGA model: every document lies in its topic's folder. A *random*
user at fraction f belongs to a group granted directly on a random f of the documents. A
*correlated* user at f reads whole topics (a group that views their folders) and, for what is
left, documents of one more topic granted to another group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mandate.auth import Relationship

__all__ = ["AGENT", "TENANT", "BenchUser", "Corpus", "build_corpus", "build_users"]

DIM = 384
CHUNKS_PER_TOPIC = 1000
CHUNKS_PER_DOCUMENT = 10
LATENT = 24
TENANT = "bench"
AGENT = "agent:retriever"
_WORDS_PER_CHUNK = 110
_BLOCK = 20_000


@dataclass(frozen=True, kw_only=True, slots=True)
class Corpus:
    """Chunks (row ``i`` is chunk ``i % 10`` of document ``i // 10``) and questions."""

    vectors: np.ndarray
    """``(chunks, 384)`` float32, unit length."""
    questions: np.ndarray
    """``(questions, 384)`` float32, unit length."""
    document_topic: np.ndarray
    """Topic of each document."""
    vocabulary: np.ndarray
    """Words the chunk texts are drawn from, by topic."""

    @property
    def documents(self) -> int:
        """How many documents."""
        return len(self.document_topic)

    @property
    def topics(self) -> int:
        """How many topics (one folder each)."""
        return int(self.document_topic.max()) + 1

    def doc_id(self, document: int) -> str:
        """The stored id of a document."""
        return f"d{document:06d}"

    def text(self, row: int) -> str:
        """Deterministic pseudo-text of one chunk, in its topic's words."""
        rng = np.random.default_rng(row)
        words = self.vocabulary[self.document_topic[row // CHUNKS_PER_DOCUMENT]]
        return " ".join(words[rng.integers(0, len(words), _WORDS_PER_CHUNK)])


@dataclass(frozen=True, kw_only=True, slots=True)
class BenchUser:
    """A user of one cell: who they are, what they may read, and the tuples that say so."""

    name: str
    """``random-10%`` or ``correlated-10%`` style label."""
    fraction: float
    correlated: bool
    documents: frozenset[int]
    """Documents the user may read (the ground truth)."""
    tuples: tuple[Relationship, ...]
    document_grants: dict[int, str]
    """Extra ``viewer`` users written on single documents (document → group userset)."""

    @property
    def fga_user(self) -> str:
        """The OpenFGA user (``user:random-10pct``)."""
        return f"user:{self.name.replace('%', 'pct')}"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _sample(
    rng: np.random.Generator, topics: np.ndarray, centres: np.ndarray, bases: np.ndarray, doc_z: np.ndarray
) -> np.ndarray:
    """Points of ``topics``; the random draws are made whole, the arithmetic in blocks (1M chunks fit in memory)."""
    noise = rng.standard_normal((len(topics), LATENT)) * 0.08
    isotropic = rng.standard_normal((len(topics), DIM)) * 0.02
    out = np.empty((len(topics), DIM), dtype=np.float32)
    for start in range(0, len(topics), _BLOCK):
        block = slice(start, start + _BLOCK)
        points = centres[topics[block]] + np.einsum("ndl,nl->nd", bases[topics[block]], doc_z[block] + noise[block])
        out[block] = _unit(points + isotropic[block])
    return out


def build_corpus(chunks: int, *, questions: int, seed: int = 0) -> Corpus:
    """A corpus of ``chunks`` chunks (a multiple of 1,000) and ``questions`` questions."""
    rng = np.random.default_rng(seed)
    topics = max(1, chunks // CHUNKS_PER_TOPIC)
    common = _unit(rng.standard_normal(DIM))
    supers = _unit(rng.standard_normal((max(1, topics // 10), DIM)))
    own = _unit(rng.standard_normal((topics, DIM)))
    centres = _unit(0.5 * common + 0.7 * supers[np.arange(topics) % len(supers)] + 0.7 * own)
    bases = np.linalg.qr(rng.standard_normal((topics, DIM, LATENT)))[0]
    documents = chunks // CHUNKS_PER_DOCUMENT
    document_topic = np.repeat(np.arange(topics), documents // topics)
    doc_z = rng.standard_normal((documents, LATENT)) * 0.18
    row_document = np.repeat(np.arange(documents), CHUNKS_PER_DOCUMENT)
    vectors = _sample(rng, document_topic[row_document], centres, bases, doc_z[row_document])
    question_topics = rng.integers(0, topics, questions)
    question_z = rng.standard_normal((questions, LATENT)) * 0.18
    vocabulary = np.array([[f"t{t}w{w}" for w in range(400)] for t in range(topics)])
    return Corpus(
        vectors=vectors,
        questions=_sample(rng, question_topics, centres, bases, question_z),
        document_topic=document_topic,
        vocabulary=vocabulary,
    )


def build_users(corpus: Corpus, fractions: tuple[float, ...], *, seed: int = 1) -> list[BenchUser]:
    """One random and one correlated user per fraction, with their tuples."""
    rng = np.random.default_rng(seed)
    users = []
    for fraction in fractions:
        count = max(1, round(fraction * corpus.documents))
        label = f"{fraction * 100:g}%"
        chosen = frozenset(int(d) for d in rng.choice(corpus.documents, count, replace=False))
        users.append(_user(f"random-{label}", fraction, correlated=False, documents=chosen, folders=()))
        per_topic = corpus.documents // corpus.topics
        start = int(rng.integers(0, corpus.topics))
        whole, rest = divmod(count, per_topic)
        folders = tuple(f"t{(start + i) % corpus.topics}" for i in range(whole))
        partial_topic = (start + whole) % corpus.topics
        partial = range(partial_topic * per_topic, partial_topic * per_topic + rest)
        covered = {d for d in range(corpus.documents) if f"t{corpus.document_topic[d]}" in folders} | set(partial)
        users.append(_user(f"correlated-{label}", fraction, correlated=True, documents=frozenset(covered), folders=folders,
                           partial=partial))
    return users


def _user(
    name: str, fraction: float, *, correlated: bool, documents: frozenset[int], folders: tuple[str, ...],
    partial: range = range(0),
) -> BenchUser:
    key = name.replace("%", "pct")
    group = f"group:g-{key}"
    tuples = [Relationship(f"user:{key}", "member", group), Relationship(f"user:{key}", "member", f"tenant:{TENANT}")]
    tuples += [Relationship(f"{group}#member", "viewer", f"folder:{folder}") for folder in folders]
    grants = {d: f"{group}#member" for d in (partial if correlated else documents)}
    return BenchUser(name=name, fraction=fraction, correlated=correlated, documents=documents, tuples=tuple(tuples),
                     document_grants=grants)
