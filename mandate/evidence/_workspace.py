"""Copies of the source tree that tests run in, so a mutation never touches the working tree."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from mandate.evidence.errors import EvidenceRunError

__all__ = ["copy_tree", "tree_files"]

SKIPPED_PARTS = frozenset({"node_modules", "__pycache__", ".git"})
"""Path parts never copied: installed JavaScript packages and caches are no source."""
LINKED = (".tools",)
"""Linked into each copy, not copied: the OpenFGA binary the test fixtures start (``.tools/bin``)."""
GIT_TIMEOUT_S = 60


def tree_files(repo: Path) -> list[str]:
    """The files of the tree as git sees it: tracked and untracked ones, without ignored ones.

    Uncommitted edits and new files count (the tree is tested as it is); files git ignores
    (``.venv``, ``.data``, caches) and the parts in :data:`SKIPPED_PARTS` do not.

    Raises:
        EvidenceRunError: ``repo`` is not a git work tree.
    """
    try:
        listed = subprocess.run(  # noqa: S603 - fixed git invocation
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
            cwd=repo, capture_output=True, check=True, timeout=GIT_TIMEOUT_S,
        ).stdout.decode()
    except (OSError, subprocess.SubprocessError) as exc:
        raise EvidenceRunError(f"cannot list the files of {repo} with git ({type(exc).__name__})") from exc
    files = []
    for name in dict.fromkeys(part for part in listed.split("\0") if part):
        path = repo / name
        if SKIPPED_PARTS.isdisjoint(Path(name).parts) and path.is_file():
            files.append(name)
    return files


def copy_tree(repo: Path, destination: Path, files: list[str]) -> Path:
    """Copy ``files`` of ``repo`` to ``destination`` (keeping times) and link :data:`LINKED`.

    Returns:
        ``destination``.
    """
    for name in files:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, target)
    for name in LINKED:
        if (repo / name).exists() and not (destination / name).exists():
            os.symlink((repo / name).resolve(), destination / name)
    return destination
