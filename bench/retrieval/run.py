"""The benchmark run: arms A, B and C on synthetic corpora, users at f = 50 % … 0.1 %.

Prints the table and writes it to ``bench/results/retrieval.md`` (and ``.json``). Starts its own
embedded Postgres and OpenFGA in a temporary directory unless ``--database-url`` and
``--fga-api-url`` are given (it then creates, and drops, one database and one store per size).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from opentelemetry import trace
from tqdm import tqdm

from bench.retrieval.arms import ALL_ARMS, ARMS, Answer, Floors, MandateArm, measure_floors
from bench.retrieval.corpus import CHUNKS_PER_DOCUMENT, BenchUser, Corpus, build_corpus, build_users
from bench.retrieval.report import CellStats, summarize, write_results
from bench.retrieval.store import open_store, running_stack
from mandate.retrieval import SearchTuning

FRACTIONS = (0.5, 0.1, 0.01, 0.001)
DEFAULT_SIZES = (10_000, 100_000)
QUICK_SIZES = (2_000,)
MILLION = 1_000_000
WARMUP_QUESTIONS = 5


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m bench.retrieval``."""
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one 2,000-chunk corpus, 20 questions per cell")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="corpus sizes in chunks (multiples of 1,000)")
    parser.add_argument("--queries", type=int, default=None, help="questions per cell (default 200, quick 20)")
    parser.add_argument("-k", type=int, default=10, help="chunks per answer")
    parser.add_argument(
        "--one-million", action="store_true",
        help="one 1,000,000-chunk corpus, 100 questions per cell (not in CI: about an hour on two cores; writes retrieval-1m.*)",
    )
    parser.add_argument(
        "--arms", nargs="+", default=None, choices=[arm.name for arm in ALL_ARMS], metavar="ARM",
        help=f"arms to run (default: {', '.join(repr(a.name) for a in ARMS)}; also {', '.join(repr(a.name) for a in ALL_ARMS if a not in ARMS)})",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where to write the table")
    parser.add_argument(
        "--name", default=None,
        help="file name of the results, without suffix (default: retrieval; retrieval-quick with --quick, so a smoke "
        "run never overwrites the committed full results)",
    )
    parser.add_argument(
        "--tuning", type=Path, default=None,
        help="JSON object of SearchTuning fields for arm C, read once each corpus is loaded (for sweeps; default: the "
        "retriever's defaults)",
    )
    parser.add_argument("--database-url", default="", help="use this Postgres (needs CREATEDB) instead of an embedded one")
    parser.add_argument("--fga-api-url", default="", help="use this OpenFGA instead of an embedded one")
    return parser.parse_args(argv)


def results_name(args: argparse.Namespace) -> str:
    """The results' file name: a smoke run never overwrites the committed full results."""
    return str(args.name or ("retrieval-quick" if args.quick else "retrieval-1m" if args.one_million else "retrieval"))


def _truths(corpus: Corpus, user: BenchUser, k: int) -> tuple[list[list[int]], list[float]]:
    """Exact authorized kNN per question, and how long the numpy scan took each time."""
    rows = np.array([d * CHUNKS_PER_DOCUMENT + i for d in sorted(user.documents) for i in range(CHUNKS_PER_DOCUMENT)])
    authorized = corpus.vectors[rows]
    truths, seconds = [], []
    for question in corpus.questions:
        started = time.perf_counter()
        similarity = authorized @ question
        top = np.argpartition(-similarity, k - 1)[:k] if len(rows) > k else np.arange(len(rows))
        ranked = top[np.argsort(-similarity[top])]
        seconds.append(time.perf_counter() - started)
        truths.append(rows[ranked].tolist())
    return truths, seconds


def selected_arms(args: argparse.Namespace) -> tuple[type, ...]:
    """The arm classes to run, in table order."""
    if not args.arms:
        return ARMS
    return tuple(arm for arm in ALL_ARMS if arm.name in args.arms)


def _tuning(path: Path | None) -> SearchTuning:
    """The knobs of arm C: the retriever's defaults, overridden by the fields in ``path`` if given."""
    fields = json.loads(path.read_text()) if path is not None else {}
    return replace(SearchTuning(), **fields)


async def _run_size(
    chunks: int, *, questions: int, k: int, database_url: str, fga_api_url: str, arm_types: tuple[type, ...] = ARMS,
    tuning_path: Path | None = None, notes: list[str] | None = None,
) -> tuple[list[CellStats], Floors, dict[str, float]]:
    corpus = build_corpus(chunks, questions=questions)
    users = build_users(corpus, FRACTIONS)
    async with open_store(
        corpus, users, database_url=database_url, fga_api_url=fga_api_url, tracer=trace.get_tracer("bench")
    ) as store:
        MandateArm.tuning = _tuning(tuning_path)
        if notes is not None:
            notes.append(f"{chunks:,} chunks: arm C ran with {MandateArm.tuning}.")
        arms = [arm(store, corpus) for arm in arm_types]
        largest = max(users, key=lambda u: len(u.documents))
        for arm in arms:
            for question in range(min(WARMUP_QUESTIONS, questions)):
                await arm.answer(question, largest, k)
        floors = await measure_floors(store, corpus, largest, repeats=50)
        stats = []
        with tqdm(total=len(users) * questions * len(arms), desc=f"{chunks:,} chunks", unit="q") as bar:
            for user in users:
                truths, numpy_seconds = _truths(corpus, user, k)
                readable = frozenset(d * CHUNKS_PER_DOCUMENT + i for d in user.documents for i in range(CHUNKS_PER_DOCUMENT))
                answers: dict[str, list[Answer]] = {arm.name: [] for arm in arms}
                for question in range(questions):
                    for arm in arms:
                        answers[arm.name].append(await arm.answer(question, user, k))
                        bar.update()
                stats += [
                    summarize(chunks=chunks, user=user.name, arm=name, answers=got, truths=truths, readable=readable,
                              numpy_seconds=numpy_seconds, k=k)
                    for name, got in answers.items()
                ]
        return stats, floors, store.load_seconds


async def run(args: argparse.Namespace) -> int:
    """Run every size, print the table and write it under ``args.out``."""
    sizes = args.sizes or (QUICK_SIZES if args.quick else (MILLION,) if args.one_million else DEFAULT_SIZES)
    questions = args.queries or (20 if args.quick else 100 if args.one_million else 200)
    all_stats: list[CellStats] = []
    floors: dict[int, Floors] = {}
    notes = [
        f"Run {time.strftime('%Y-%m-%d %H:%M')} on {_machine()}; "
        f"k={args.k}, {questions} questions per cell, every arm answers every question in turn.",
    ]
    with running_stack(database_url=args.database_url, fga_api_url=args.fga_api_url) as (database_url, fga_api_url):
        for chunks in sizes:
            stats, floor, load = await _run_size(
                chunks, questions=questions, k=args.k, database_url=database_url, fga_api_url=fga_api_url,
                arm_types=selected_arms(args), tuning_path=args.tuning, notes=notes,
            )
            all_stats += stats
            floors[chunks] = floor
            notes.append(
                f"{chunks:,} chunks loaded in " + ", ".join(f"{step} {s:.0f} s" for step, s in load.items())
                + f"; load average after its queries {', '.join(f'{x:.1f}' for x in os.getloadavg())}."
            )
    path = write_results(args.out, results_name(args), all_stats, floors, notes)
    print(path.read_text())
    print(f"Written to {path}.")
    return 0


def _machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.machine()}, {os.cpu_count()} CPUs (load average {load} at start), Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.retrieval``."""
    return asyncio.run(run(parse_arguments(argv)))
