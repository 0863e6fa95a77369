"""Bookkeeping of repeated denials: the first of a kind is written at once, repeats are only counted.

A denial costs its caller nothing, so without this any member of a tenant could flood the
tenant's hash-chained trail (one durable row per denied request). A *kind* is (tenant, actor,
event, decision, tool, agent). The first denial of a kind is written immediately and opens a
window; repeats of that kind inside the window are counted. When the window closes (the
background sweep, the kind's next denial, or the log's close) its count becomes one summary
record and, as long as there were repeats, a new window opens, so a continuing flood costs one
summary per window. A window without repeats just ends; the next denial of the kind is a first
again, written in full.

Memory is bounded: at most ``max_kinds`` kinds are tracked. When that is full, denials of
untracked kinds share one window per tenant (its first written in full, the rest summarised with
counts per event); at most ``max_kinds`` tenants share so. A denial that fits nowhere is written
on its own. Counts are never dropped: a summary that could not be written is merged back.

This module only counts; :class:`~mandate.audit.log.AuditLog` writes.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import takewhile
from typing import Any

__all__ = ["Admission", "DenialCoalescer", "DenialKind", "Summary"]


class Admission(enum.Enum):
    """What the log must do with one denial."""

    FIRST = "first"
    """The first of its kind: write it now (it opened its kind's window)."""
    FIRST_OF_TENANT = "first_of_tenant"
    """The first in its tenant's shared window (no room to track its kind): write it now."""
    COUNTED = "counted"
    """A repeat, counted in an open window: nothing to write now."""
    ALONE = "alone"
    """No room to track it at all: write it now, on its own (never dropped)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DenialKind:
    """What makes two denials repeats of one another."""

    tenant: str
    event: str
    actor: str
    """Pseudonym of the principal who was denied."""
    decision: str | None
    tool: str | None
    agent: str | None
    """The acting agent: a denial of the same call to another agent is another kind."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Summary:
    """The count of one closed window, to be written as one record."""

    tenant: str
    kind: DenialKind | None
    """The kind counted; ``None`` for a tenant's shared window (kinds beyond the memory cap)."""
    repeated: int
    """Denials counted in the window (a denial written in full is never counted as well)."""
    first_at: datetime
    """When the first counted denial happened."""
    last_at: datetime
    """When the last counted denial happened."""
    events: dict[str, int] = field(default_factory=dict)
    """A shared window's count per event (the event vocabulary is ours, so this stays small)."""


@dataclass(kw_only=True, slots=True)
class _Window:
    """An open window: mutable, since it counts."""

    tenant: str
    kind: DenialKind | None
    ends_at: datetime
    repeated: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    events: Counter[str] = field(default_factory=Counter)

    def count(self, event: str, now: datetime) -> None:
        self.repeated += 1
        self.first_at = now if self.first_at is None else min(self.first_at, now)
        self.last_at = now if self.last_at is None else max(self.last_at, now)
        if self.kind is None:
            self.events[event] += 1

    def merge(self, summary: Summary) -> None:
        self.repeated += summary.repeated
        self.first_at = summary.first_at if self.first_at is None else min(self.first_at, summary.first_at)
        self.last_at = summary.last_at if self.last_at is None else max(self.last_at, summary.last_at)
        self.events.update(summary.events)

    def summary(self) -> Summary:
        assert self.first_at is not None and self.last_at is not None
        return Summary(
            tenant=self.tenant, kind=self.kind, repeated=self.repeated, first_at=self.first_at,
            last_at=self.last_at, events=dict(self.events),
        )


class DenialCoalescer:
    """Counts denials per kind in windows of ``window``, tracking at most ``max_kinds`` kinds.

    Not thread-safe; every method is synchronous, so it is consistent within one event loop.
    """

    def __init__(self, *, window: timedelta, max_kinds: int) -> None:
        """Count in windows of ``window``; track at most ``max_kinds`` kinds and as many tenants.

        Raises:
            ValueError: ``window`` is not positive or ``max_kinds`` is below 1.
        """
        if window <= timedelta(0) or max_kinds < 1:
            raise ValueError("The denial window must be positive and at least one kind tracked.")
        self.window = window
        self._max = max_kinds
        # Insertion order is closing order: every window lasts ``window`` and a reopened one moves
        # to the end, so the due windows are always at the front.
        self._kinds: dict[DenialKind, _Window] = {}
        self._tenants: dict[str, _Window] = {}

    def __len__(self) -> int:
        """Open windows (kinds and shared tenant windows)."""
        return len(self._kinds) + len(self._tenants)

    def admit(self, kind: DenialKind, now: datetime) -> tuple[Admission, list[Summary]]:
        """Account for one denial of ``kind`` at ``now``.

        Returns:
            What to do with the denial, and the summaries of windows this closed (its own kind's,
            or, when the table was full, the due ones reclaimed): write them too.
        """
        summaries = self._close_if_due(self._kinds, kind, now)
        if (window := self._kinds.get(kind)) is not None:
            window.count(kind.event, now)
            return Admission.COUNTED, summaries
        if len(self._kinds) >= self._max:
            summaries += self.due(now)
        if len(self._kinds) < self._max:
            self._kinds[kind] = _Window(tenant=kind.tenant, kind=kind, ends_at=now + self.window)
            return Admission.FIRST, summaries
        summaries += self._close_if_due(self._tenants, kind.tenant, now)
        if (window := self._tenants.get(kind.tenant)) is not None:
            window.count(kind.event, now)
            return Admission.COUNTED, summaries
        if len(self._tenants) < self._max:
            self._tenants[kind.tenant] = _Window(tenant=kind.tenant, kind=None, ends_at=now + self.window)
            return Admission.FIRST_OF_TENANT, summaries
        return Admission.ALONE, summaries

    def abandon(self, kind: DenialKind, admission: Admission) -> None:
        """The first denial ``admit`` asked for was not written: the kind's next denial is a first again.

        A window that counted repeats meanwhile stays open, so their count is still summarised.
        """
        if admission not in (Admission.FIRST, Admission.FIRST_OF_TENANT):
            return
        table, key = self._place(kind if admission is Admission.FIRST else None, kind.tenant)
        window = table.get(key)
        if window is not None and not window.repeated:
            del table[key]

    def due(self, now: datetime) -> list[Summary]:
        """Close every window that has ended by ``now``; returns the summaries to write."""
        summaries: list[Summary] = []
        tables: tuple[dict[Any, _Window], ...] = (self._kinds, self._tenants)
        for table in tables:
            ended = [key for key, _ in takewhile(lambda item: item[1].ends_at <= now, table.items())]
            for key in ended:
                summaries += self._close(table, key, now)
        return summaries

    def drain(self) -> list[Summary]:
        """Close every window now (shutdown); returns the summaries to write."""
        windows = [*self._kinds.values(), *self._tenants.values()]
        self._kinds.clear()
        self._tenants.clear()
        return [window.summary() for window in windows if window.repeated]

    def next_close(self) -> datetime | None:
        """When the earliest open window ends, or ``None`` if none is open."""
        fronts = [next(iter(table.values())).ends_at for table in (self._kinds, self._tenants) if table]
        return min(fronts, default=None)

    def restore(self, summary: Summary, now: datetime) -> None:
        """Merge back a summary that was not written, so its count is summarised later.

        A closed kind with repeats keeps a reopened window, so this usually merges into it; the
        cap can be passed only by the summaries of one flush, and only while the store is down.
        """
        table, key = self._place(summary.kind, summary.tenant)
        window = table.get(key)
        if window is None:
            window = table[key] = _Window(tenant=summary.tenant, kind=summary.kind, ends_at=now + self.window)
        window.merge(summary)

    def _place(self, kind: DenialKind | None, tenant: str) -> tuple[dict[Any, _Window], Hashable]:
        """The table and key of ``kind``'s window, or of ``tenant``'s shared one if ``kind`` is ``None``."""
        return (self._tenants, tenant) if kind is None else (self._kinds, kind)

    def _close_if_due(self, table: dict[Any, _Window], key: Hashable, now: datetime) -> list[Summary]:
        window = table.get(key)
        return self._close(table, key, now) if window is not None and window.ends_at <= now else []

    def _close(self, table: dict[Any, _Window], key: Hashable, now: datetime) -> list[Summary]:
        window = table.pop(key)
        if not window.repeated:
            return []  # a quiet window just ends: the kind's next denial is a first again
        # The flood may go on: keep watching the kind, so it costs one summary per window.
        table[key] = _Window(tenant=window.tenant, kind=window.kind, ends_at=now + self.window)
        return [window.summary()]
