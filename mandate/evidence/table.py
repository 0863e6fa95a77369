"""The controls table of ``docs/controls.md``, read into :class:`Control` values.

The table is the one Markdown table whose header is exactly :data:`COLUMNS`. In the last three
columns every reference is written in backticks (several per cell, separated by ``<br>``):

- *enforced by*: ``module:qualname`` (``mandate.auth.verifier:TokenVerifier.verify``), or a
  file of the repository (``docs/record-of-processing.md``) where a document is the control;
- *proved by*: pytest node ids (``tests/auth/test_verifier.py::test_x``; without ``[…]`` a
  parametrized test stands for all its cases);
- *mutation*: names of mutations in :data:`mandate.evidence.mutations.MUTATIONS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mandate.evidence.errors import ControlsTableError

__all__ = ["COLUMNS", "Control", "parse_controls", "read_controls"]

COLUMNS = ("id", "control", "frameworks", "enforced by", "proved by", "mutation")
"""The header of the controls table, in order (matched without regard to case)."""
_REFERENCE = re.compile(r"`([^`]+)`")
_ID = re.compile(r"^[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+$")


@dataclass(frozen=True, kw_only=True, slots=True)
class Control:
    """One row of the controls table."""

    id: str
    """Stable id (``CTL-01``, ``GDPR-32``)."""
    title: str
    """The control as the table states it (Markdown)."""
    frameworks: str
    """Framework references (Markdown), as the table gives them."""
    enforced_by: tuple[str, ...]
    """``module:qualname`` references, or repository files, that enforce the control."""
    tests: tuple[str, ...]
    """Pytest node ids of the tests that prove it."""
    mutations: tuple[str, ...]
    """Names of the mutations that remove it (each must make :attr:`tests` fail)."""


def read_controls(path: Path) -> list[Control]:
    """The controls of the table in the Markdown file at ``path``.

    Raises:
        ControlsTableError: The file is missing, has no controls table, or a row is malformed.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ControlsTableError(f"cannot read the controls table {path}: {exc.strerror or exc}") from exc
    return parse_controls(text, source=str(path))


def parse_controls(text: str, *, source: str = "docs/controls.md") -> list[Control]:
    """The controls of the table in Markdown ``text``.

    Args:
        text: The Markdown document.
        source: How to name the document in error messages.

    Raises:
        ControlsTableError: No table with the header :data:`COLUMNS`, or a malformed row.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _is_header(line)), None)
    if start is None:
        raise ControlsTableError(f"{source} has no table with the columns {' | '.join(COLUMNS)}")
    controls: list[Control] = []
    seen: set[str] = set()
    for number, line in enumerate(lines[start + 2 :], start=start + 3):
        if not line.strip().startswith("|"):
            break
        cells = _cells(line)
        where = f"{source} line {number}"
        if len(cells) != len(COLUMNS):
            raise ControlsTableError(f"{where}: {len(cells)} cells, the table has {len(COLUMNS)} columns")
        control = Control(
            id=cells[0].strip("` *"),
            title=cells[1],
            frameworks=cells[2],
            enforced_by=tuple(_REFERENCE.findall(cells[3])),
            tests=tuple(_REFERENCE.findall(cells[4])),
            mutations=tuple(_REFERENCE.findall(cells[5])),
        )
        if not _ID.match(control.id):
            raise ControlsTableError(f"{where}: {control.id!r} is not an id like CTL-01")
        if control.id in seen:
            raise ControlsTableError(f"{where}: the id {control.id} is used twice")
        if not control.enforced_by or not control.tests:
            raise ControlsTableError(f"{where}: {control.id} names no enforcing code or no test (write them in backticks)")
        seen.add(control.id)
        controls.append(control)
    if not controls:
        raise ControlsTableError(f"{source}: the controls table has no rows")
    return controls


def _is_header(line: str) -> bool:
    return line.strip().startswith("|") and tuple(cell.lower() for cell in _cells(line)) == COLUMNS


def _cells(line: str) -> list[str]:
    """The cells of a table row (``\\|`` is a literal bar)."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return [cell.replace("\\|", "|").strip() for cell in re.split(r"(?<!\\)\|", inner)]
