"""Each control's tests pass, and each control's mutation makes them fail (slow: one run per mutation).

This is ``mandate controls check --mutations`` in CI, against the session's Postgres and OpenFGA:
every run gets a database and a store of its own there, and a copy of the tree; a mutated copy
differs from the baseline by its mutation only. A mutation that leaves its tests green means the
control is not proven by them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mandate.evidence import Control, EvidenceRun, TestServers, gather_evidence, read_controls
from mandate.runtime.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CONTROLS = read_controls(REPO / "docs" / "controls.md")
PARALLEL = min(2, os.cpu_count() or 1)
"""Mutation runs at a time: one per core, at most two (each run is mostly one Python process)."""


@pytest.fixture(scope="module")
def evidence(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> EvidenceRun:
    """Every control's baseline and mutation runs, once for this module (logs kept under pytest's tmp)."""
    servers = TestServers(database_url=stack_settings.database_url, fga_api_url=stack_settings.fga_api_url)
    return gather_evidence(
        CONTROLS, repo=REPO, servers=servers, mutations=True, parallel=PARALLEL, timeout=600.0,
        workdir=tmp_path_factory.mktemp("evidence"), progress=lambda line: print(line, flush=True),
    )


def test_controls_references_hold_and_tests_are_collected(evidence: EvidenceRun) -> None:
    assert not evidence.problems, "\n".join(str(problem) for problem in evidence.problems)


@pytest.mark.parametrize("control", CONTROLS, ids=lambda control: control.id)
def test_control_tests_pass_and_its_mutation_makes_them_fail(evidence: EvidenceRun, control: Control) -> None:
    assert not evidence.problems, "the table's references are broken; see the first test"
    [result] = [r for r in evidence.controls if r.control.id == control.id]
    failing = {test: status for test, status in result.tests.items() if status != "passed"}
    assert not failing, f"{control.id}: its tests do not pass on the unmutated tree: {failing} ({evidence.logs})"
    for mutation in result.mutations:
        assert mutation.status == "killed", (
            f"{control.id}: mutation {mutation.name} {mutation.status} ({mutation.removes}) {mutation.detail} "
            f"log: {mutation.log}"
        )
