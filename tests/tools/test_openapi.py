"""OpenAPI operations as tools: what is read, what is refused, and how a call is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request

from mandate.auth import DelegatedToken
from mandate.sdk import openapi_tools
from mandate.sdk.credentials import CallCredentials, running_with
from mandate.tools.errors import InvalidToolArgsError, ToolError
from mandate.tools.openapi import read_operations
from tests.utils.servers import serve_in_thread

DOCUMENT = Path(__file__).resolve().parents[2] / "examples" / "research_desk" / "tickets.openapi.yaml"


def test_operations_are_read_with_their_schemas_resolved() -> None:
    operation = read_operations(DOCUMENT)["createTicket"]
    assert (operation.method, operation.path) == ("POST", "/demo/tickets")
    assert operation.body_schema["properties"]["title"]["maxLength"] == 200
    assert "$ref" not in str(operation.body_schema)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("openapi: 3.1.0\npaths:\n  /t/{id}:\n    post: {operationId: x, requestBody: {content: {application/json: {schema: {type: object}}}}}\n", "path or query parameters"),
        ("openapi: 3.1.0\npaths:\n  /t:\n    post: {operationId: x}\n", "no application/json request body"),
        ("openapi: 3.1.0\npaths:\n  /t:\n    post: {operationId: x, requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/Gone'}}}}}\n", "does not exist"),
        ("openapi: 3.1.0\npaths:\n  /t:\n    post: {operationId: x, requestBody: {content: {application/json: {schema: {$ref: 'http://evil/x'}}}}}\n", "unsupported or circular"),
        ("swagger: '2.0'\n", "not an OpenAPI 3 document"),
    ],
)
def test_what_cannot_be_one_gated_json_call_is_refused(tmp_path: Path, document: str, problem: str) -> None:
    path = tmp_path / "api.yaml"
    path.write_text(document)
    with pytest.raises(ToolError, match=problem):
        read_operations(path)


def test_a_tool_for_an_operation_the_document_lacks_is_refused() -> None:
    with pytest.raises(ToolError, match="no operation 'deleteEverything'"):
        openapi_tools(DOCUMENT, {"wipe": "deleteEverything"})


@pytest.fixture
def api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    app = FastAPI()

    @app.api_route("/demo/tickets", methods=["POST", "PUT"])
    async def tickets(request: Request) -> dict[str, str]:
        received.append({"method": request.method, "body": await request.json(), "headers": dict(request.headers)})
        return {"id": "TCK-1"}

    with serve_in_thread(app) as url:
        yield url, received


async def test_a_call_sends_the_validated_body_with_the_delegated_token_and_key(api: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = api
    [tool] = openapi_tools(DOCUMENT, {"file_ticket": "createTicket"})
    token = DelegatedToken(access_token="delegated.jwt.value", audience=f"{url}/demo/tickets", scopes=("tickets:write",), expires_at=0)
    with running_with(CallCredentials(token=token, idempotency_key="thread-1:call-1")):
        answer = await tool.ainvoke({"title": "Printer", "priority": "low"})
        with pytest.raises(InvalidToolArgsError, match="priority"):
            await tool.ainvoke({"title": "Printer", "priority": "urgent"})
    assert answer == {"id": "TCK-1"}
    [call] = received  # the invalid call never reached the API
    assert call["method"] == "POST" and call["body"] == {"title": "Printer", "priority": "low"}
    assert call["headers"]["authorization"] == "Bearer delegated.jwt.value"
    assert call["headers"]["idempotency-key"] == "thread-1:call-1"


async def test_outside_a_gated_call_there_are_no_credentials_and_nothing_is_sent(api: tuple[str, list[dict[str, Any]]]) -> None:
    _, received = api
    [tool] = openapi_tools(DOCUMENT, {"file_ticket": "createTicket"})
    with pytest.raises(ToolError, match="gate"):
        await tool.ainvoke({"title": "Printer"})
    assert received == []
