"""The built-in graphs are a project like any other: loaded from ``mandate/graphs/langgraph.json`` and
its ``mandate.yaml`` through the same loader, and named nowhere else in the server."""

from __future__ import annotations

import ast
from pathlib import Path

from langgraph.graph import StateGraph

from mandate.graphs import BUILT_IN_PROJECT
from mandate.graphs.tools import CreateTicketArgs, SendPaymentArgs
from mandate.runtime.project import load_project
from mandate.tools import ApprovalPolicy

PACKAGE = Path(__file__).resolve().parents[2] / "mandate"
URLS = {"MANDATE_TICKETS_API_URL": "https://tickets.test/t", "MANDATE_PAYMENTS_API_URL": "https://pay.test/p"}


def test_the_built_in_graphs_load_through_the_project_loader() -> None:
    project = load_project(BUILT_IN_PROJECT, settings=URLS)
    assert set(project.graphs) == {"mandate", "supervisor"}
    assert all(isinstance(factory(), StateGraph) for factory in project.graphs.values())
    assert set(project.descriptions) == {"mandate", "supervisor"}
    tools = {spec.name: spec for spec in project.tool_specs()}
    assert tools["create_ticket"].audience == URLS["MANDATE_TICKETS_API_URL"]
    assert tools["create_ticket"].args_schema is CreateTicketArgs
    assert tools["create_ticket"].approval is ApprovalPolicy.USER_CONSENT
    payment = tools["send_payment"]
    assert (payment.args_schema, payment.audience, payment.approval) == (SendPaymentArgs, URLS["MANDATE_PAYMENTS_API_URL"], ApprovalPolicy.APPROVER)
    assert payment.step_up is not None and payment.step_up.acr == "urn:mandate:acr:mfa"
    assert dict(payment.editable) == {"amount": "decrease", "reference": "any"}


def test_mandates_settings_win_over_the_environment_in_mandate_yaml(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MANDATE_TICKETS_API_URL", "https://stale.test/from-env")
    project = load_project(BUILT_IN_PROJECT, settings=URLS)
    assert {s.name: s.audience for s in project.tool_specs()}["create_ticket"] == URLS["MANDATE_TICKETS_API_URL"]


def test_an_arguments_schema_normalises_before_anyone_decides() -> None:
    [ticket] = [s for s in load_project(BUILT_IN_PROJECT, settings=URLS).tool_specs() if s.name == "create_ticket"]
    assert ticket.validate_args({"title": "VPN"}) == {"title": "VPN", "description": "", "priority": "normal"}


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def test_no_room_of_the_server_special_cases_the_built_in_graphs() -> None:
    """The run engine, the API and the CLI reach the built-in graphs only as the default project's path."""
    reached = {
        (str(path.relative_to(PACKAGE)), name)
        for room in ("api", "runtime", "cli")
        for path in (PACKAGE / room).rglob("*.py")
        for name in _imports_of(path)
        if name.startswith("mandate.graphs")
    }
    assert reached == {("runtime/services.py", "mandate.graphs.BUILT_IN_PROJECT")}
