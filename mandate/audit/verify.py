"""The verifier: recomputes each tenant's chain in Python and checks its signed checkpoints.

It names the first bad record of a tenant and why:

- ``missing``: a position has no record (deleted), or records before the first one are gone
  without a recorded purge covering them;
- ``inserted``: a record sits between two that link to each other;
- ``out_of_order``: a record does not link to the one before it (moved, or a neighbour deleted
  and the rest renumbered);
- ``altered``: a record's content does not match its own hash (modified, or forged);
- ``rewritten``: the records are self-consistent but differ from a signed checkpoint (someone
  recomputed the hashes; the tampering lies after the previous good checkpoint);
- ``bad_checkpoint``: a checkpoint's signature does not verify with a trusted key;
- ``unsealed``: the checkpoint that must exist at the last multiple of ``checkpoint_every`` is
  gone (deleting checkpoints is how a rewrite would be hidden).

Records after the last checkpoint are reported as unsealed: their integrity rests on the chain
alone until the next checkpoint seals them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from psycopg import AsyncConnection

from mandate._db import Pool
from mandate.audit import queries
from mandate.audit._chain import GENESIS, record_hash
from mandate.audit.log import CHECKPOINT_EVERY
from mandate.audit.signing import Checkpoint

__all__ = ["ChainProblem", "ChainReport", "verify_chains"]

ProblemKind = Literal["missing", "inserted", "out_of_order", "altered", "rewritten", "bad_checkpoint", "unsealed"]

_FETCH = 2_000


@dataclass(frozen=True, kw_only=True, slots=True)
class ChainProblem:
    """The first thing wrong with a tenant's chain."""

    kind: ProblemKind
    seq: int
    """Position of the first bad record (or of the missing one)."""
    record_id: str | None
    """Id of the record found at ``seq``; ``None`` when the record is missing."""
    message: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ChainReport:
    """The result of verifying one tenant's chain."""

    tenant: str
    records: int
    """Records checked (up to the first problem)."""
    first_seq: int | None
    last_seq: int | None
    checkpoints: int
    """Checkpoints whose signature and position were checked."""
    sealed_through: int
    """Position of the last valid checkpoint (0 if none)."""
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        """Whether the chain is intact."""
        return self.problem is None

    @property
    def unsealed(self) -> int:
        """Records after the last valid checkpoint."""
        return max((self.last_seq or 0) - self.sealed_through, 0)


class _Walk:
    """State of one pass over a tenant's records, in chain order."""

    def __init__(self, *, anchors: dict[int, bytes], checkpoints: dict[int, Checkpoint]) -> None:
        self.anchors = anchors
        self.checkpoints = checkpoints
        self.count = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.expected_seq = 0
        self.expected_prev = GENESIS
        self.previous: tuple[bytes, str] | None = None
        """``prev_hash`` and id of the last good record."""
        self.sealed_through = 0
        self.checked = 0

    def start(self, row: dict[str, Any]) -> ChainProblem | None:
        seq = int(row["seq"])
        self.first_seq = self.expected_seq = seq
        if seq == 1:
            return None
        if seq - 1 in self.anchors:
            self.expected_prev = self.anchors[seq - 1]
            return self.seal(seq - 1, self.expected_prev, None)
        return ChainProblem(
            kind="missing", seq=1, record_id=None,
            message=f"records 1..{seq - 1} are missing and no recorded purge covers them",
        )

    def step(self, row: dict[str, Any]) -> ChainProblem | None:
        seq, record_id = int(row["seq"]), str(row["id"])
        if seq > self.expected_seq:
            return ChainProblem(
                kind="missing", seq=self.expected_seq, record_id=None,
                message=f"record {self.expected_seq} is missing (deleted); the next one present is {seq} ({record_id})",
            )
        if seq < self.expected_seq:
            return ChainProblem(
                kind="out_of_order", seq=seq, record_id=record_id,
                message=f"a second record claims position {seq} (inserted)",
            )
        prev_hash = bytes(row["prev_hash"])
        if prev_hash != self.expected_prev:
            if self.previous is not None and prev_hash == self.previous[0]:
                return ChainProblem(
                    kind="inserted", seq=seq - 1, record_id=self.previous[1],
                    message=f"record {seq - 1} was inserted: record {seq} links to the one before it",
                )
            return ChainProblem(
                kind="out_of_order", seq=seq, record_id=record_id,
                message=(
                    f"record {seq} does not follow record {seq - 1} "
                    "(moved, or a record deleted and the rest renumbered)"
                ),
            )
        if record_hash(row) != bytes(row["hash"]):
            return ChainProblem(
                kind="altered", seq=seq, record_id=record_id,
                message=f"record {seq} does not match its hash (modified or forged)",
            )
        self.previous = (prev_hash, record_id)
        self.count += 1
        self.last_seq = seq
        self.expected_seq = seq + 1
        self.expected_prev = bytes(row["hash"])
        return self.seal(seq, bytes(row["hash"]), record_id)

    def seal(self, seq: int, chain_hash: bytes, record_id: str | None) -> ChainProblem | None:
        """Check the checkpoint at ``seq`` (if any) against the chain hash found there."""
        checkpoint = self.checkpoints.get(seq)
        if checkpoint is None:
            return None
        self.checked += 1
        if checkpoint.hash != chain_hash:
            return ChainProblem(
                kind="rewritten", seq=seq, record_id=record_id,
                message=(
                    f"the chain at {seq} differs from its signed checkpoint: records after "
                    f"{self.sealed_through} were rewritten"
                ),
            )
        self.sealed_through = seq
        return None


async def verify_chains(
    pool: Pool,
    *,
    keys: Sequence[Ed25519PublicKey],
    tenant: str | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> list[ChainReport]:
    """Verify the chain of ``tenant``, or of every tenant, and their checkpoints.

    Args:
        pool: The database holding ``mandate.audit_records``.
        keys: Public keys trusted to have signed checkpoints.
        tenant: One tenant, or ``None`` for all.
        checkpoint_every: The sealing interval the writers use.

    Returns:
        One report per tenant, in tenant order. A tenant is known by its records and checkpoints:
        one with neither (an unknown tenant) gets no report, so asking for it returns ``[]``.
    """
    async with pool.connection() as conn:
        tenants = [r["tenant"] for r in await (await conn.execute(queries.TENANTS)).fetchall()]
        if tenant is not None:
            tenants = [t for t in tenants if t == tenant]
        return [await _verify_tenant(conn, t, keys=keys, every=checkpoint_every) for t in tenants]


async def _verify_tenant(
    conn: AsyncConnection[Any], tenant: str, *, keys: Sequence[Ed25519PublicKey], every: int
) -> ChainReport:
    params = {"tenant": tenant}
    anchors = {
        int(r["through_seq"]): bytes(r["through_hash"])
        for r in await (await conn.execute(queries.PURGE_ANCHORS, params)).fetchall()
    }
    checkpoints = {
        int(r["seq"]): Checkpoint(
            tenant=r["tenant"], seq=int(r["seq"]), hash=bytes(r["hash"]), signed_at=r["signed_at"],
            key_id=r["key_id"], signature=bytes(r["signature"]),
        )
        for r in await (await conn.execute(queries.CHECKPOINTS, params)).fetchall()
    }
    walk = _Walk(anchors=anchors, checkpoints=checkpoints)
    problem = _bad_signature(checkpoints, keys)
    if problem is None:
        problem = await _walk_records(conn, tenant, walk)
    if problem is None:
        problem = _check_tail(walk, every=every)
    return ChainReport(
        tenant=tenant, records=walk.count, first_seq=walk.first_seq, last_seq=walk.last_seq,
        checkpoints=walk.checked, sealed_through=walk.sealed_through, problem=problem,
    )


def _bad_signature(checkpoints: dict[int, Checkpoint], keys: Sequence[Ed25519PublicKey]) -> ChainProblem | None:
    for seq in sorted(checkpoints):
        if not checkpoints[seq].verify(keys):
            return ChainProblem(
                kind="bad_checkpoint", seq=seq, record_id=None,
                message=f"the checkpoint at {seq} is not signed by a trusted key (forged or altered)",
            )
    return None


async def _walk_records(conn: AsyncConnection[Any], tenant: str, walk: _Walk) -> ChainProblem | None:
    async with conn.transaction(), conn.cursor(name="mandate_audit_verify") as cursor:
        cursor.itersize = _FETCH
        await cursor.execute(queries.CHAIN_RECORDS, {"tenant": tenant})
        async for row in cursor:
            if walk.first_seq is None and (problem := walk.start(row)) is not None:
                return problem
            if (problem := walk.step(row)) is not None:
                return problem
    return None


def _check_tail(walk: _Walk, *, every: int) -> ChainProblem | None:
    """After the last record: no checkpoint beyond it, and the last due checkpoint present.

    Only the last due checkpoint is required: a rewrite changes every later hash, so hiding it
    means deleting every checkpoint after it, the last due one included.
    """
    head = walk.last_seq or 0
    beyond = [seq for seq in walk.checkpoints if seq > head]
    if beyond:
        return ChainProblem(
            kind="missing", seq=head + 1, record_id=None,
            message=f"records after {head} are missing: a checkpoint seals position {max(beyond)}",
        )
    due = head - head % every
    if due > 0 and due not in walk.checkpoints:
        return ChainProblem(
            kind="unsealed", seq=due, record_id=None,
            message=f"the checkpoint at {due} is missing (deleted checkpoints can hide a rewrite)",
        )
    return None
