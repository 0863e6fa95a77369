"""A tool that is an HTTP API call: its arguments are POSTed to the API its policy names.

The URL is the tool's ``audience`` in ``mandate.yaml`` (the delegated token is bound to it), so the
policy file is the one place that says where the tool acts. Each attempt carries the call's
idempotency key, so a retry or a resumed run never has a second effect.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from langchain_core.tools import BaseTool, StructuredTool
from opentelemetry import propagate
from pydantic import BaseModel

from mandate.sdk.credentials import delegated_credentials
from mandate.tools.errors import DownstreamError, InvalidToolArgsError, ToolError
from mandate.tools.openapi import read_operations

__all__ = ["api_tool", "openapi_tools"]

API_TIMEOUT = 10.0


def _body(name: str, args_schema: type[BaseModel] | dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    if isinstance(args_schema, dict):
        try:
            jsonschema.validate(args, args_schema)
        except jsonschema.ValidationError as exc:
            field = ".".join(str(p) for p in exc.absolute_path) or "args"
            raise InvalidToolArgsError(f"Invalid arguments for {name}: {field}.", fields=(field,)) from None
        return args
    return args_schema.model_validate(args).model_dump(mode="json")


def api_tool(
    *, name: str, description: str, args_schema: type[BaseModel] | dict[str, Any], method: str = "POST"
) -> BaseTool:
    """A LangChain tool that sends its validated arguments to its API with the delegated token.

    ``args_schema`` is a pydantic model or a JSON Schema. Returns the API's JSON answer as the tool's
    result (the model sees it).
    """

    async def call(**args: Any) -> dict[str, Any]:
        credentials = delegated_credentials()
        if credentials.token is None:
            raise DownstreamError(f"Tool {name} has no audience in mandate.yaml, so no API to call.")
        headers = {
            "Authorization": f"Bearer {credentials.token.access_token}",
            "Idempotency-Key": credentials.idempotency_key,
        }
        propagate.inject(headers)  # the API's logs join this run's trace
        body = _body(name, args_schema, args)
        try:
            async with httpx.AsyncClient(timeout=API_TIMEOUT, follow_redirects=False) as client:
                response = await client.request(method, credentials.token.audience, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DownstreamError(f"{name}: the API could not be reached.") from exc
        if response.status_code >= 400:
            raise DownstreamError(f"{name}: the API answered {response.status_code}.")
        answer = response.json()
        return answer if isinstance(answer, dict) else {"result": answer}

    return StructuredTool.from_function(coroutine=call, name=name, description=description, args_schema=args_schema)


def openapi_tools(document: Path, operations: Mapping[str, str]) -> list[BaseTool]:
    """Tools for chosen operations of an OpenAPI 3 document: ``{tool name: operationId}``.

    Each sends its JSON body with the operation's method to the URL its policy names as
    ``audience`` (the operation's server URL and path), so ``mandate.yaml`` says where it acts.

    Raises:
        ToolError: The document cannot be read, or names no such operation, or one cannot be a tool.
    """
    available = read_operations(document)
    tools = []
    for tool_name, operation_id in operations.items():
        operation = available.get(operation_id)
        if operation is None:
            raise ToolError(f"OpenAPI: {document.name} has no operation {operation_id!r} (for tool {tool_name}).")
        tools.append(
            api_tool(name=tool_name, description=operation.description, args_schema=operation.body_schema, method=operation.method)
        )
    return tools
