"""The benchmark's code path on a tiny corpus: every arm answers, figures are written, no timing asserted."""

from __future__ import annotations

import json
from pathlib import Path

from bench.retrieval.run import parse_arguments, results_name, run, selected_arms
from mandate.runtime.settings import Settings


async def test_bench_quick_run_writes_every_arm_and_mandate_neither_leaks_nor_misses(
    stack_settings: Settings, tmp_path: Path
) -> None:
    argv = [
        "--sizes", "1000", "--queries", "4", "--out", str(tmp_path), "--name", "smoke",
        "--database-url", stack_settings.database_url, "--fga-api-url", stack_settings.fga_api_url,
        "--arms", "ANN floor", "anchor", "A post-filter", "B ListObjects", "C Mandate",
    ]
    assert await run(parse_arguments(argv)) == 0
    cells = json.loads((tmp_path / "smoke.json").read_text())["cells"]
    assert {(c["user"], c["arm"]) for c in cells} == {
        (f"{kind}-{f}", arm)
        for kind in ("random", "correlated")
        for f in ("50%", "10%", "1%", "0.1%")
        for arm in ("ANN floor", "anchor", "A post-filter", "B ListObjects", "C Mandate")
    }
    for arm in ("C Mandate", "anchor"):
        exact = [c for c in cells if c["arm"] == arm]
        assert all(c["leaks"] == 0 and c["recall_mean"] == 1.0 and c["short_share"] == 0 for c in exact), arm
    floor = [c for c in cells if c["arm"] == "ANN floor" and c["user"] == "random-1%"]
    assert floor[0]["leaks"] > 0  # the floor authorizes nothing, and the report says so
    post_filter = [c for c in cells if c["arm"] == "A post-filter" and c["user"] == "random-1%"]
    assert post_filter[0]["recall_mean"] < 1.0
    table = (tmp_path / "smoke.md").read_text()
    assert "| random-50% | C Mandate |" in table and "p50 / anchor" in table and "p50 / ANN floor" in table
    assert "ReadChanges" in table


def test_bench_quick_run_does_not_overwrite_the_committed_results() -> None:
    assert results_name(parse_arguments(["--quick"])) == "retrieval-quick"
    assert results_name(parse_arguments([])) == "retrieval"
    assert results_name(parse_arguments(["--quick", "--name", "mine"])) == "mine"
    assert results_name(parse_arguments(["--one-million"])) == "retrieval-1m"


def test_bench_default_arms_are_the_floor_the_anchor_and_mandate() -> None:
    assert [arm.name for arm in selected_arms(parse_arguments([]))] == ["ANN floor", "anchor", "C Mandate"]
    chosen = selected_arms(parse_arguments(["--arms", "C Mandate", "A post-filter"]))
    assert [arm.name for arm in chosen] == ["A post-filter", "C Mandate"]
