"""Files into text for ingestion: plain text, Markdown and PDF, read by LangChain's loaders."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pypdf.errors import PyPdfError

from mandate.retrieval.errors import IngestionError

with warnings.catch_warnings():
    # langchain-community announces its sunset at import; the loaders used here are still maintained.
    warnings.simplefilter("ignore", DeprecationWarning)
    from langchain_community.document_loaders import PyPDFLoader, TextLoader

__all__ = ["SUPPORTED_SUFFIXES", "LoadedFile", "discover_files", "document_id_for", "load_file"]

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown"})
PDF_SUFFIXES = frozenset({".pdf"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | PDF_SUFFIXES
MAX_ID_LENGTH = 256
"""OpenFGA's limit on an object id."""
_SAFE_IN_ID = "/!$&'()*+,;=[]{}^`|~<>\"?"
"""ASCII punctuation kept as it is in a document id; ``#``, ``:``, ``@``, ``%`` and white space are encoded."""
_HEADING = re.compile(r"^#[^\S\n]+([^\n]+)", re.MULTILINE)
"""A level-one heading line; its closing ``#``s are stripped in Python (a pattern doing it backtracked cubically)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LoadedFile:
    """The text of one file, ready to become a :class:`~mandate.retrieval.DocumentSpec`."""

    path: Path
    title: str
    """The first Markdown heading, the PDF's title, or the file name."""
    text: str


def discover_files(paths: Iterable[Path]) -> list[Path]:
    """Files to ingest: each given file as it is, and every supported file under each given directory.

    A given file that is missing or unsupported stays in the list so that :func:`load_file`
    reports it; files under directories are filtered by suffix and sorted.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES))
        else:
            found.append(path)
    return list(dict.fromkeys(found))


def load_file(path: Path) -> LoadedFile:
    """Read one text, Markdown or PDF file.

    Raises:
        IngestionError: The file is missing, of an unsupported type, not UTF-8 text, not a readable
            PDF, or has no text.
    """
    suffix = path.suffix.lower()
    if not path.is_file():
        raise IngestionError(f"{path}: no such file.")
    if suffix not in SUPPORTED_SUFFIXES:
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise IngestionError(f"{path}: unsupported file type {suffix or '(none)'}; use {supported}.")
    if suffix in PDF_SUFFIXES:
        text, title = _load_pdf(path)
    else:
        text, title = _load_text(path)
    if not text.strip():
        raise IngestionError(f"{path}: contains no text.")
    return LoadedFile(path=path, title=title or path.stem, text=text)


def document_id_for(path: Path, *, root: Path, tenant: str) -> str:
    """The document id of a file: ``<tenant>/<its path relative to root>``, one id per file.

    Both paths are resolved first (absolute, ``..`` and symbolic links followed), so a file has the
    same id however it is named: through its directory, alone, relatively or absolutely. Characters
    OpenFGA refuses in an id (white space, ``#``, ``:``, ``@``), ``%`` and non-ASCII characters are
    percent-encoded (UTF-8), so two different paths never share an id.

    Raises:
        IngestionError: The file is not under ``root``, or the id would exceed OpenFGA's 256 characters.
    """
    resolved, base = path.resolve(), root.resolve()
    if not resolved.is_relative_to(base):
        raise IngestionError(
            f"{path}: not under the root {base} that document ids are relative to; pass --root or --doc-id."
        )
    doc_id = f"{tenant}/{quote(resolved.relative_to(base).as_posix(), safe=_SAFE_IN_ID)}"
    if len(doc_id) > MAX_ID_LENGTH:
        raise IngestionError(f"{path}: its document id would be longer than {MAX_ID_LENGTH} characters; pass --doc-id.")
    return doc_id


def _load_text(path: Path) -> tuple[str, str | None]:
    try:
        documents = TextLoader(str(path), encoding="utf-8").load()
    except (RuntimeError, OSError) as exc:
        raise IngestionError(f"{path}: not readable as UTF-8 text.") from exc
    text = "\n".join(d.page_content for d in documents)
    heading = _HEADING.search(text) if path.suffix.lower() in {".md", ".markdown"} else None
    return text, heading.group(1).strip().rstrip("#").strip() or None if heading else None


def _load_pdf(path: Path) -> tuple[str, str | None]:
    try:
        pages = PyPDFLoader(str(path)).load()
    except (PyPdfError, OSError, ValueError, KeyError, TypeError) as exc:
        raise IngestionError(f"{path}: not a readable PDF.") from exc
    title = pages[0].metadata.get("title") if pages else None
    return "\n\n".join(p.page_content for p in pages), str(title) if title else None
