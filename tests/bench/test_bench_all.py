"""``python -m bench`` runs its parts and repeats each part's result lines in its summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import PARTS, parse_arguments

ROOT = Path(__file__).resolve().parents[2]


def test_bench_runs_a_part_and_repeats_its_result_in_the_summary() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--parts", "startup", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = done.stdout.split("== summary", 1)[1]
    lines = [line.strip() for line in summary.splitlines()]
    assert "startup:" in lines
    assert any(line.startswith("first start") for line in lines)
    [second] = [line for line in lines if line.startswith("second start")]
    assert "10 s target" in second


def test_bench_refuses_an_unknown_part_and_runs_every_part_by_default() -> None:
    assert parse_arguments([]).parts == [p.name for p in PARTS]
    with pytest.raises(SystemExit):
        parse_arguments(["--parts", "everything"])
