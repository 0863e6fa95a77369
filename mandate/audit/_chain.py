"""The chain format ``mandate.audit.v1``, recomputed in Python, independently of the database.

A record's hash is ``sha256(prev_hash || F("mandate.audit.v1") || F(tenant) || F(seq) || F(id) ||
F(recorded_at) || F(thread_id) || F(event) || F(actor) || F(agent) || F(tool) || F(tool_call_id) ||
F(decision) || F(detail) || F(trace_id) || F(span_id))`` where ``F(None) = "-"`` and
``F(text) = "<utf-8 byte length>:<text>"`` (unambiguous without separators), ``recorded_at`` is
UTC with microseconds (``2026-01-31T12:00:00.000000Z``) and ``detail`` is Postgres' canonical
``jsonb`` text. The first record of a tenant links to 32 zero bytes. ``mandate.audit_append``
in ``queries.py`` computes the same inside the database.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

FORMAT = "mandate.audit.v1"
CHECKPOINT_FORMAT = "mandate.audit.checkpoint.v1"
GENESIS = bytes(32)
"""The ``prev_hash`` of a tenant's first record."""


def field(value: str | None) -> bytes:
    """The length-prefixed encoding of one field (``-`` for null)."""
    if value is None:
        return b"-"
    data = value.encode()
    return f"{len(data)}:".encode() + data


def timestamp_text(moment: datetime) -> str:
    """``moment`` in UTC with microseconds, as the chain encodes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(row: Mapping[str, Any]) -> bytes:
    """The hash ``row`` must carry, from its ``prev_hash`` and content.

    Args:
        row: A record as read by ``queries.CHAIN_RECORDS`` (``detail_text`` is the jsonb text).
    """
    parts = [
        FORMAT,
        row["tenant"],
        str(row["seq"]),
        str(row["id"]),
        timestamp_text(row["recorded_at"]),
        row["thread_id"],
        row["event"],
        row["actor"],
        row["agent"],
        row["tool"],
        row["tool_call_id"],
        row["decision"],
        row["detail_text"],
        row["trace_id"],
        row["span_id"],
    ]
    return hashlib.sha256(bytes(row["prev_hash"]) + b"".join(field(p) for p in parts)).digest()


def checkpoint_message(*, tenant: str, seq: int, chain_hash: bytes, signed_at: datetime) -> bytes:
    """The bytes a checkpoint signature covers: the tenant's chain head at ``seq``."""
    parts = [CHECKPOINT_FORMAT, tenant, str(seq), chain_hash.hex(), timestamp_text(signed_at)]
    return b"".join(field(p) for p in parts)
