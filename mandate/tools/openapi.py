"""Operations of an OpenAPI 3 document, read as tool shapes: name, method, description, body schema.

Only what a tool call needs is read: an operation's ``operationId``, method, summary and its JSON
request body (``application/json``, ``$ref``s to ``components/schemas`` resolved). Operations with
path or query parameters are refused: the arguments of a gated call are one JSON body, so what an
approver sees is exactly what is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mandate.tools.errors import ToolError

__all__ = ["Operation", "read_operations"]

METHODS = ("post", "put", "patch", "delete")
"""Methods a tool may use: each changes something, so each goes through the gate."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Operation:
    """One operation as a tool shape."""

    operation_id: str
    method: str
    path: str
    description: str
    body_schema: dict[str, Any]
    """The JSON Schema of the request body, with every ``$ref`` resolved."""


def _resolve(node: Any, document: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith("#/components/schemas/") or ref in seen:
                raise ToolError(f"OpenAPI: unsupported or circular reference {ref!r}.")
            target = document.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[1])
            if target is None:
                raise ToolError(f"OpenAPI: {ref!r} does not exist.")
            return _resolve(target, document, (*seen, ref))
        return {key: _resolve(value, document, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(item, document, seen) for item in node]
    return node


def read_operations(path: Path) -> dict[str, Operation]:
    """The document's operations by ``operationId``.

    Raises:
        ToolError: The document cannot be read, or an operation cannot be a tool (the message says which and why).
    """
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ToolError(f"OpenAPI: {path} cannot be read ({type(exc).__name__}).") from exc
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3."):
        raise ToolError(f"OpenAPI: {path} is not an OpenAPI 3 document.")
    operations: dict[str, Operation] = {}
    for route, item in (document.get("paths") or {}).items():
        for method, operation in (item or {}).items():
            if method not in METHODS or not isinstance(operation, dict) or "operationId" not in operation:
                continue
            name = str(operation["operationId"])
            if operation.get("parameters") or item.get("parameters") or "{" in route:
                raise ToolError(f"OpenAPI: {name} has path or query parameters; a tool sends one JSON body.")
            body = (operation.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            if not isinstance(body, dict):
                raise ToolError(f"OpenAPI: {name} has no application/json request body.")
            operations[name] = Operation(
                operation_id=name, method=method.upper(), path=route,
                description=str(operation.get("description") or operation.get("summary") or name),
                body_schema=_resolve(body, document),
            )
    return operations
