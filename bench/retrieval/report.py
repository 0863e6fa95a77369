"""Figures per cell and arm, and the Markdown table they are printed and saved as."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bench.retrieval.arms import Answer, Floors

__all__ = ["CellStats", "render", "summarize", "write_results"]

TARGETS = "arm C at 100k: recall@10 >= 0.99 in every cell, 0 leaks, p50 <= 20 ms, p99 <= 60 ms"


@dataclass(frozen=True, kw_only=True, slots=True)
class CellStats:
    """One arm in one cell (corpus size x user)."""

    chunks: int
    user: str
    arm: str
    queries: int
    recall_mean: float
    recall_p5: float
    short_share: float
    """Share of questions answered with fewer than k chunks (every user may read at least k)."""
    leaks: int
    """Chunks returned that the user may not read."""
    p50_ms: float
    p95_ms: float
    p99_ms: float
    fga_calls: float
    """OpenFGA calls per question (mean)."""
    sql_round_trips: float
    """SQL round trips per question (mean)."""
    paths: str
    """Mandate's search paths and how often each ran."""
    numpy_exact_ms: float
    """Floor: p50 of an exact numpy scan over exactly the user's authorized vectors."""


def summarize(
    *, chunks: int, user: str, arm: str, answers: list[Answer], truths: list[list[int]], readable: frozenset[int],
    numpy_seconds: list[float], k: int,
) -> CellStats:
    """Recall against exact authorized kNN, shortfalls, leaks, latency percentiles and call counts."""
    recalls = [len(set(a.rows) & set(t)) / len(t) for a, t in zip(answers, truths, strict=True)]
    latencies = np.array([a.seconds for a in answers]) * 1000
    paths = Counter(a.path for a in answers if a.path)
    return CellStats(
        chunks=chunks,
        user=user,
        arm=arm,
        queries=len(answers),
        recall_mean=float(np.mean(recalls)),
        recall_p5=float(np.percentile(recalls, 5)),
        short_share=sum(len(a.rows) < k for a in answers) / len(answers),
        leaks=sum(row not in readable for a in answers for row in a.rows),
        p50_ms=float(np.percentile(latencies, 50)),
        p95_ms=float(np.percentile(latencies, 95)),
        p99_ms=float(np.percentile(latencies, 99)),
        fga_calls=float(np.mean([a.fga_calls for a in answers])),
        sql_round_trips=float(np.mean([a.sql_round_trips for a in answers])),
        paths=" ".join(f"{p}:{n}" for p, n in sorted(paths.items())),
        numpy_exact_ms=float(np.median(numpy_seconds)) * 1000,
    )


def render(stats: list[CellStats], floors: dict[int, Floors], notes: list[str]) -> str:
    """The results as Markdown: one table per corpus size, with each arm's ratios to the anchor and the floor."""
    lines = ["# Authorized retrieval benchmark", "", *notes, "", f"Targets: {TARGETS}.", ""]
    for chunks in sorted({s.chunks for s in stats}):
        floor = floors[chunks]
        cells = [s for s in stats if s.chunks == chunks]
        by_cell = {(s.user, s.arm): s for s in cells}
        lines += [
            f"## {chunks:,} chunks",
            "",
            f"Floors (p50): one `SELECT 1` round trip {floor.select_one * 1000:.2f} ms; one higher-consistency "
            f"batch check of 10 {floor.batch_check_10 * 1000:.2f} ms; one ReadChanges finding nothing new "
            f"{floor.read_changes * 1000:.2f} ms; exact numpy scan of the authorized vectors: per cell below.",
            "",
            "| user | arm | recall@10 mean | p5 | <k share | leaks | p50 ms | p95 ms | p99 ms | p50 / anchor "
            "| p99 / anchor | p50 / ANN floor | FGA calls/q | SQL/q | numpy exact ms | paths |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in cells:
            anchor, ann = by_cell.get((s.user, "anchor")), by_cell.get((s.user, "ANN floor"))
            lines.append(
                f"| {s.user} | {s.arm} | {s.recall_mean:.3f} | {s.recall_p5:.2f} | {s.short_share:.0%} | {s.leaks} "
                f"| {s.p50_ms:.1f} | {s.p95_ms:.1f} | {s.p99_ms:.1f} | {_ratio(s.p50_ms, anchor and anchor.p50_ms)} "
                f"| {_ratio(s.p99_ms, anchor and anchor.p99_ms)} | {_ratio(s.p50_ms, ann and ann.p50_ms)} "
                f"| {s.fga_calls:.1f} | {s.sql_round_trips:.1f} | {s.numpy_exact_ms:.2f} | {s.paths} |"
            )
        lines += ["", *_verdict(chunks, [s for s in cells if s.arm == "C Mandate"]), ""]
    lines += [
        "`p50 / anchor` and `p99 / anchor` divide an arm's latency by the anchor's (the retriever before the change "
        "feed) for the same user and questions; `p50 / ANN floor` by an unfiltered, unauthorized HNSW search of the "
        "same data (its leaks and recall are those of a search that authorizes nothing).",
        "",
    ]
    return "\n".join(lines)


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "-"


def _verdict(chunks: int, mandate: list[CellStats]) -> list[str]:
    """Which of arm C's cells meet the targets (judged at every size, targets stated for 100k)."""
    if not mandate:
        return []
    misses = [
        f"{s.user} ({', '.join(m for m, bad in (('recall', s.recall_mean < 0.99), ('leaks', s.leaks > 0), ('p50', s.p50_ms > 20), ('p99', s.p99_ms > 60)) if bad)})"
        for s in mandate
        if s.recall_mean < 0.99 or s.leaks > 0 or s.p50_ms > 20 or s.p99_ms > 60
    ]
    if not misses:
        return [f"C Mandate at {chunks:,} chunks meets every target in all {len(mandate)} cells."]
    return [f"C Mandate at {chunks:,} chunks misses in {len(misses)} of {len(mandate)} cells: " + "; ".join(misses) + "."]


def write_results(directory: Path, name: str, stats: list[CellStats], floors: dict[int, Floors], notes: list[str]) -> Path:
    """Write ``<name>.md`` and ``<name>.json`` under ``directory``; returns the Markdown path."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown = directory / f"{name}.md"
    markdown.write_text(render(stats, floors, notes))
    raw = {"notes": notes, "floors": {str(c): asdict(f) for c, f in floors.items()}, "cells": [asdict(s) for s in stats]}
    (directory / f"{name}.json").write_text(json.dumps(raw, indent=2))
    return markdown
