"""docs/controls.md: every control of the design is a row, and everything a row names exists (fast).

Code references are imported, test node ids are found in their files (pytest's collection is
the slow test's job), and each mutation's snippet occurs exactly once in today's code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mandate.evidence import (
    MUTATIONS,
    ControlsTableError,
    Mutation,
    MutationError,
    apply_mutation,
    check_references,
    parse_controls,
    read_controls,
    snippet_problem,
)

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "docs" / "controls.md"
REQUIRED = {
    "CTL-01": "No anonymous agents",
    "CTL-02": "No static long-lived tool credentials",
    "CTL-03": "No RAG without authorization",
    "CTL-04": "No broad service accounts for user actions",
    "CTL-05": "No unlogged tool execution",
    "CTL-06": "No sensitive data in prompts unless access is verified",
    "GATE-01": "The gate holds at the effect",
    "ISO-01": "Tenant and thread isolation",
    "DORA-01": "ICT logging and traceability",
    "C5-01": "Logging",
    "C5-02": "Identity and access management",
    "GDPR-05": "Minimisation",
    "GDPR-25": "Data protection by design and by default",
    "GDPR-30": "Records of processing",
    "GDPR-32": "Security of processing",
    "GDPR-17": "Erasure",
}
"""The six controls of the design, the gate, isolation, and what the README claims for DORA, C5, GDPR."""
CONTROLS = read_controls(TABLE)


def test_controls_table_has_a_row_for_every_claimed_control() -> None:
    titles = {control.id: control.title for control in CONTROLS}
    missing = {cid: name for cid, name in REQUIRED.items() if cid not in titles or name not in titles[cid]}
    assert not missing, f"docs/controls.md lacks rows for {missing}"


def test_controls_table_code_files_and_mutations_exist() -> None:
    problems = check_references(CONTROLS, repo=REPO, need_mutations=True)
    assert not problems, "\n".join(str(problem) for problem in problems)


@pytest.mark.parametrize("control", CONTROLS, ids=lambda control: control.id)
def test_controls_table_tests_exist_in_their_files(control: object) -> None:
    for test in control.tests:  # type: ignore[attr-defined]
        path, _, name = test.partition("::")
        assert (REPO / path).is_file(), f"{test}: no file {path}"
        *classes, function = name.split("[")[0].split("::")
        defined = _test_functions(REPO / path)
        assert "::".join([*classes, function]) in defined, f"{test}: {path} defines no such test"


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda mutation: mutation.name)
def test_mutation_snippet_occurs_exactly_once(mutation: Mutation) -> None:
    assert snippet_problem(mutation, REPO) is None, snippet_problem(mutation, REPO)
    assert mutation.original != mutation.replacement


def test_every_mutation_is_cited_by_a_control() -> None:
    cited = {name for control in CONTROLS for name in control.mutations}
    assert cited == {mutation.name for mutation in MUTATIONS}


def test_mutation_whose_snippet_changed_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    target = tmp_path / "mandate" / "gate.py"
    target.parent.mkdir()
    mutation = Mutation(name="m", removes="r", path="mandate/gate.py", original="if refused:\n", replacement="if False:\n")
    target.write_text("if denied:\n    stop()\n")
    message = snippet_problem(mutation, tmp_path)
    assert message is not None and "no longer occurs in mandate/gate.py" in message and "mutations.py" in message
    with pytest.raises(MutationError):
        apply_mutation(mutation, tmp_path)
    target.write_text("if refused:\n    stop()\nif refused:\n    stop()\n")
    assert "occurs 2 times" in (snippet_problem(mutation, tmp_path) or "")
    target.write_text("if refused:\n    stop()\n")
    apply_mutation(mutation, tmp_path)
    assert target.read_text() == "if False:\n    stop()\n"


def test_parse_controls_refuses_a_table_that_is_not_the_controls_table() -> None:
    header = "| id | control | frameworks | enforced by | proved by | mutation |\n|---|---|---|---|---|---|\n"
    row = "| CTL-01 | x | y | `m:f` | `tests/t.py::test_a`<br>`tests/t.py::test_b` | `n` |\n"
    [control] = parse_controls(header + row)
    assert control.tests == ("tests/t.py::test_a", "tests/t.py::test_b") and control.mutations == ("n",)
    for text in ("no table here", header, header + row + row, header + "| CTL-01 | x | y | | `t::t` | |\n",
                 header + "| lowercase | x | y | `m:f` | `t::t` | `n` |\n", header + "| CTL-01 | x |\n"):
        with pytest.raises(ControlsTableError):
            parse_controls(text)


def _test_functions(path: Path) -> set[str]:
    """``test_x`` and ``TestClass::test_x`` names defined in a test module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    names = set()
    for node in tree.body:
        if isinstance(node, functions):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{item.name}" for item in node.body if isinstance(item, functions)}
    return names
