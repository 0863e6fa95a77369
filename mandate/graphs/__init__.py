"""The built-in graphs: a project like any other (``langgraph.json`` and ``mandate.yaml`` in this folder),
assembled from the public SDK and the built-in nodes, and served when no other project is named."""

from __future__ import annotations

from pathlib import Path as _Path

from mandate.graphs.builder import single, supervisor

__all__ = ["BUILT_IN_PROJECT", "single", "supervisor"]

BUILT_IN_PROJECT = _Path(__file__).resolve().parent / "langgraph.json"
"""The built-in project's ``langgraph.json``: what Mandate serves when ``MANDATE_PROJECT`` is not set."""
