"""``python -m bench.costs`` still finds every control it measures: each one is called in a bench run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CALLED_IN_EVERY_BENCH_RUN = (
    "token verification", "revocation check", "token vault", "OpenFGA batch checks", "call ledger", "audit writes",
    "checkpoint writes", "of which lease checks", "run event log",
)  # fmt: skip
"""The controls a bench-agent run goes through (it retrieves nothing and exchanges no token)."""


def test_costs_bench_measures_every_control_of_a_bench_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.costs", "--runs", "2", "--flows", "bench"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {
        cells[0]: cells[1:]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("|---")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    for control in CALLED_IN_EVERY_BENCH_RUN:
        calls, milliseconds = (float(value) for value in rows[control])
        assert calls >= 1 and milliseconds > 0, f"{control}: {calls} calls, {milliseconds} ms per run"
    assert float(rows["run p50 (client, runs.wait)"][-1]) > 0
