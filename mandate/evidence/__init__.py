"""Evidence an auditor can run: the controls table, its references, its tests and its mutations.

``docs/controls.md`` names, per control, the code that enforces it, the tests that prove it and
a mutation that removes it. This room reads that table (:func:`read_controls`), checks that every
reference exists (:func:`check_references`), runs the tests on a copy of the tree and each
mutation on a mutated copy (:func:`gather_evidence`), and writes the evidence bundle
(:func:`write_bundle`). ``mandate controls check`` drives it.
"""

from mandate.evidence.bundle import (
    BUNDLE_FORMAT,
    REDACTED,
    chain_summary,
    collect_versions,
    redacted_configuration,
    write_bundle,
)
from mandate.evidence.errors import ControlsTableError, EvidenceError, EvidenceRunError, MutationError
from mandate.evidence.mutations import MUTATIONS, Mutation, apply_mutation, mutation_named, snippet_problem
from mandate.evidence.references import Problem, check_code_reference, check_references, check_tests
from mandate.evidence.runner import ControlResult, EvidenceRun, MutationResult, TestServers, gather_evidence
from mandate.evidence.table import COLUMNS, Control, parse_controls, read_controls

__all__ = [
    "BUNDLE_FORMAT",
    "COLUMNS",
    "MUTATIONS",
    "REDACTED",
    "Control",
    "ControlResult",
    "ControlsTableError",
    "EvidenceError",
    "EvidenceRun",
    "EvidenceRunError",
    "Mutation",
    "MutationError",
    "MutationResult",
    "Problem",
    "TestServers",
    "apply_mutation",
    "chain_summary",
    "check_code_reference",
    "check_references",
    "check_tests",
    "collect_versions",
    "gather_evidence",
    "mutation_named",
    "parse_controls",
    "read_controls",
    "redacted_configuration",
    "snippet_problem",
    "write_bundle",
]
