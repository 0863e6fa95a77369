"""Whether everything the controls table names exists: code, files, tests and mutations.

Code references are imported in this process (``module:qualname``, attributes followed one by
one); tests are matched against the node ids pytest collects; mutations must be registered and
their snippets must still occur exactly once in the enforcing code.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from mandate.evidence.mutations import mutation_named, snippet_problem
from mandate.evidence.table import Control

__all__ = ["Problem", "check_code_reference", "check_references", "check_tests", "matching_tests", "named_test_files"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """A reference of the table that does not hold."""

    control: str
    """Id of the row."""
    reference: str
    """The reference as written in the table."""
    message: str

    def __str__(self) -> str:
        return f"{self.control}: {self.reference}: {self.message}"


def check_code_reference(reference: str, *, repo: Path) -> str | None:
    """Why ``reference`` (``module:qualname`` or a repository file) does not exist, or ``None``."""
    if ":" not in reference:
        path = repo / reference
        if "/" in reference and path.is_file():
            return None
        return "neither module:qualname nor a file of the repository"
    module_name, _, qualname = reference.partition(":")
    try:
        target: object = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is a broken reference
        return f"module {module_name} does not import ({type(exc).__name__}: {exc})"
    for part in qualname.split("."):
        if not part or not hasattr(target, part):
            return f"{module_name} has no {qualname}"
        target = getattr(target, part)
    return None


def check_references(controls: Sequence[Control], *, repo: Path, need_mutations: bool) -> list[Problem]:
    """Problems with the code, files, test files and mutations the table names.

    Whether pytest collects each named test is :func:`check_tests`' question (it needs a collection).

    Args:
        controls: The table.
        repo: The repository root (files and mutation snippets are read there).
        need_mutations: Whether a row without a mutation is a problem.
    """
    problems: list[Problem] = []
    for control in controls:
        for reference in control.enforced_by:
            message = check_code_reference(reference, repo=repo)
            if message:
                problems.append(Problem(control=control.id, reference=reference, message=message))
        for test in control.tests:
            path, separator, _ = test.partition("::")
            if not separator:
                problems.append(Problem(control=control.id, reference=test, message="not a test node id (file::test)"))
            elif not (repo / path).is_file():
                problems.append(Problem(control=control.id, reference=test, message=f"no test file {path}"))
        if need_mutations and not control.mutations:
            problems.append(Problem(control=control.id, reference="mutation", message="no mutation is named"))
        for name in control.mutations:
            mutation = mutation_named(name)
            if mutation is None:
                problems.append(
                    Problem(control=control.id, reference=name, message="no such mutation in mandate/evidence/mutations.py")
                )
                continue
            message = snippet_problem(mutation, repo)
            if message:
                problems.append(Problem(control=control.id, reference=name, message=message))
    return problems


def named_test_files(controls: Sequence[Control]) -> list[str]:
    """The test files the table names, in order, once each."""
    return list(dict.fromkeys(test.partition("::")[0] for control in controls for test in control.tests))


def matching_tests(test: str, collected: Collection[str]) -> list[str]:
    """The collected node ids ``test`` stands for (itself, or all cases of a parametrized test)."""
    return [nodeid for nodeid in collected if nodeid == test or nodeid.startswith(test + "[")]


def check_tests(controls: Sequence[Control], *, repo: Path, collected: Collection[str]) -> list[Problem]:
    """Problems with the tests the table names, given the node ids pytest collected from their files."""
    problems: list[Problem] = []
    for control in controls:
        for test in control.tests:
            path, separator, _ = test.partition("::")
            if not separator:
                problems.append(Problem(control=control.id, reference=test, message="not a test node id (file::test)"))
            elif not (repo / path).is_file():
                problems.append(Problem(control=control.id, reference=test, message=f"no test file {path}"))
            elif not matching_tests(test, collected):
                problems.append(Problem(control=control.id, reference=test, message="pytest collects no such test"))
    return problems
