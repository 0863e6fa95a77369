"""The built-in project's tools, as its ``mandate.yaml`` declares them, for tests that need a registry."""

from __future__ import annotations

from mandate.graphs import BUILT_IN_PROJECT
from mandate.runtime.project import load_project
from mandate.tools import ToolRegistry


def built_in_tools(*, tickets_api_url: str = "http://t", payments_api_url: str = "http://p") -> ToolRegistry:
    """The registry Mandate builds for the built-in graphs, with these API URLs."""
    urls = {"MANDATE_TICKETS_API_URL": tickets_api_url, "MANDATE_PAYMENTS_API_URL": payments_api_url}
    return ToolRegistry(load_project(BUILT_IN_PROJECT, settings=urls).tool_specs())
