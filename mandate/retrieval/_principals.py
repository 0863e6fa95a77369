"""The principal closure of each (user, agent, tenant), kept per process and dropped by the change feed.

An entry is what :func:`~mandate.retrieval._acl.resolve_principals` answered (higher consistency):
the user's tokens (``user:u``, every group ``g#member`` and every folder the user may view), tenant
membership, and the agent's grant. It stays valid until a change may touch it, and the feed
(``_feed``) reports every change before a query runs. Which entries a change ``(U, relation, O)``
touches:

- An entry whose tokens contain ``U``, or whose agent is ``U``. Every token of a closure is derived
  along tuples from the user (``user → group#member → … → folder → child folder``); a tuple that
  adds or removes a token lies on such a path, and the path reaches its user ``U`` without it, so
  ``U`` is already a token of the closure it changes (the user itself for tenant membership).
- Entries of an agent restricted to some documents, on any ``parent``, ``tenant`` or
  ``reader_agent`` change (its list follows folders and tenants of documents).

A resolution that overlaps a change is used for its own query but not kept (the cache's generation
moved). The size of the authorized set (``estimate``) is kept with the entry for ``estimate_ttl_s``:
it only chooses between an exact and an HNSW scan, never what may be read.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from mandate.retrieval._acl import Principals
from mandate.retrieval.directory import TupleChange

__all__ = ["CachedPrincipals", "PrincipalCache"]

MAX_ENTRIES = 10_000
"""Entries kept (least recently used dropped first)."""
ESTIMATE_TTL_S = 30.0
"""How long a measured size of the authorized set is reused."""
CLEAR_ALL_ABOVE = 5_000
"""A batch of more changes than this drops every entry (cheaper than matching each)."""
_AGENT_LIST_RELATIONS = frozenset({"parent", "tenant", "reader_agent"})


@dataclass(kw_only=True, slots=True)
class CachedPrincipals:
    """One (user, agent, tenant)'s closure and, once measured, the size of its authorized set."""

    principals: Principals
    estimate: int | None = None
    estimated_at: float = 0.0


class PrincipalCache:
    """Closures by (user, agent, tenant); :meth:`invalidate` is the change feed's listener."""

    def __init__(self, *, max_entries: int = MAX_ENTRIES, estimate_ttl_s: float = ESTIMATE_TTL_S) -> None:
        self._entries: OrderedDict[tuple[str, str, str], CachedPrincipals] = OrderedDict()
        self._max_entries = max_entries
        self._estimate_ttl_s = estimate_ttl_s
        self.generation = 0
        """Moves with every invalidation; a resolution is kept only if it did not move meanwhile."""

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, user: str, agent: str, tenant: str) -> CachedPrincipals | None:
        """The kept closure, or ``None``."""
        key = (user, agent, tenant)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, user: str, agent: str, tenant: str, principals: Principals, *, generation: int) -> CachedPrincipals:
        """Keep ``principals`` if no change arrived since ``generation`` was read; returns the entry to use."""
        entry = CachedPrincipals(principals=principals)
        if generation == self.generation:
            self._entries[(user, agent, tenant)] = entry
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return entry

    def estimate_fresh(self, entry: CachedPrincipals) -> bool:
        """Whether the entry's size of the authorized set may be reused."""
        return entry.estimate is not None and time.monotonic() - entry.estimated_at < self._estimate_ttl_s

    def set_estimate(self, entry: CachedPrincipals, chunks: int) -> None:
        """Remember the size of the authorized set."""
        entry.estimate, entry.estimated_at = chunks, time.monotonic()

    def invalidate(self, changes: list[TupleChange]) -> None:
        """Drop every entry the changes may touch (see the module docstring)."""
        self.generation += 1
        if len(changes) > CLEAR_ALL_ABOVE:
            self._entries.clear()
            return
        subjects = {c.relationship.user for c in changes}
        agent_lists = any(c.relationship.relation in _AGENT_LIST_RELATIONS for c in changes)
        for key, entry in list(self._entries.items()):
            _, agent, _ = key
            p = entry.principals
            if (
                agent in subjects
                or not subjects.isdisjoint(p.tokens)
                or (agent_lists and p.agent_documents is not None)
            ):
                del self._entries[key]

    def clear(self) -> None:
        """Drop every entry."""
        self.generation += 1
        self._entries.clear()
