"""Every figure of the performance work in one run, then each result beside its target.

``python -m bench`` runs, one after another (each on its own embedded stack, so none measures
another's leftovers):

1. ``bench.startup``: ``make dev`` until ready, first and later starts (target: ready in 10 s);
2. ``bench.studio``: per-run latency under ``langgraph dev``, first run and later runs;
3. ``bench.peers``: the bench agent on Mandate, ``langgraph dev``, aegra and the in-process floor
   (goals: 3x the best peer's throughput, p50 within 1.5x the floor);
4. ``bench.costs``: what each control costs a run;
5. ``bench.retrieval``: authorized retrieval at 100k chunks (targets: p50 20 ms, p99 60 ms, recall
   0.99, no leak), written to ``bench/results/retrieval.md``.

Each part prints its own full output as it runs; the summary at the end repeats the lines that state
a part's result against its target. ``--quick`` shrinks every part (a smoke run, figures not
comparable). A full run takes about 10 minutes on two cores. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, kw_only=True, slots=True)
class Part:
    """One benchmark of the run: its module, its arguments (full and quick), and its result lines."""

    name: str
    module: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    results: re.Pattern[str]
    """The lines of its output that state its result, repeated in the summary."""


PARTS = (
    Part(name="startup", module="bench.startup", full=("--starts", "3"), quick=("--starts", "1"),
         results=re.compile(r"^(first start|second start)")),
    Part(name="studio", module="bench.studio", full=("--runs", "6"), quick=("--runs", "2"),
         results=re.compile(r"^first run")),
    Part(name="peers", module="bench.peers", full=(),
         quick=("--sequential", "5", "--runs", "8", "--concurrency", "8", "--warmup", "1"),
         results=re.compile(r"^(\||throughput @|seq p50)")),
    Part(name="costs", module="bench.costs", full=(), quick=("--runs", "3"), results=re.compile(r"^\|")),
    Part(name="retrieval", module="bench.retrieval", full=("--sizes", "100000"), quick=("--quick",),
         results=re.compile(r"^C Mandate at")),
)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``python -m bench``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=[p.name for p in PARTS], choices=[p.name for p in PARTS],
                        metavar="PART", help=f"which parts to run, always in this order: {', '.join(p.name for p in PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of each part (a few minutes; figures not comparable)")
    return parser.parse_args(argv)


def run_part(part: Part, *, quick: bool) -> tuple[int, list[str]]:
    """Run one part, echoing its output as it comes; its exit code and its result lines."""
    command = [sys.executable, "-m", part.module, *(part.quick if quick else part.full)]
    print(f"\n== {part.name}: {' '.join(command[1:])}", flush=True)
    results = []
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            if part.results.match(line):
                results.append(line.rstrip("\n"))
    return process.returncode, results


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts, then print every part's result lines together."""
    args = parse_arguments(argv)
    chosen = [p for p in PARTS if p.name in args.parts]
    began = time.perf_counter()
    outcomes = [(part, *run_part(part, quick=args.quick)) for part in chosen]
    print(f"\n== summary ({time.perf_counter() - began:.0f} s{', quick: figures not comparable' if args.quick else ''})")
    for part, code, results in outcomes:
        print(f"\n{part.name}" + ("" if code == 0 else f" (exited with {code})") + ":")
        for line in results or ["(no result line: see its output above)"]:
            print(f"  {line}")
    return 0 if all(code == 0 for _, code, _ in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
