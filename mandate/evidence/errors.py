"""Errors of the evidence room.

    EvidenceError                code=evidence_error
    ├── ControlsTableError       code=controls_table_invalid     (docs/controls.md is not the table it must be)
    ├── MutationError            code=mutation_snippet_mismatch  (a mutation's snippet is not in its file exactly once)
    └── EvidenceRunError         code=evidence_run_failed        (the test launcher could not start or answer)
"""

from __future__ import annotations

from mandate.errors import AppError

__all__ = ["ControlsTableError", "EvidenceError", "EvidenceRunError", "MutationError"]


class EvidenceError(AppError):
    """Raised when the evidence for the controls cannot be gathered."""

    code = "evidence_error"


class ControlsTableError(EvidenceError):
    """Raised when ``docs/controls.md`` has no controls table, or a row of it is malformed."""

    code = "controls_table_invalid"


class MutationError(EvidenceError):
    """Raised when a mutation's original snippet does not occur exactly once in its file.

    The enforcing code changed under the mutation: read the code again and update the snippet
    in ``mandate/evidence/mutations.py``.
    """

    code = "mutation_snippet_mismatch"


class EvidenceRunError(EvidenceError):
    """Raised when the test launcher cannot be started, or stops answering."""

    code = "evidence_run_failed"
