"""The reference LangGraph server's OpenAPI document, to check Mandate's answers against it.

The document ships with the installed ``langgraph-api`` package (the server the official SDKs are
written for); it is read as a file, without importing that server.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["NOT_SERVED", "assert_response_shape", "assert_shape", "error_of", "reference_document", "reference_routes"]

_DOCUMENT_URI = "urn:langgraph-api:openapi"


@cache
def reference_document() -> dict[str, Any]:
    """The reference server's OpenAPI document (``site-packages/openapi.json``, beside ``langgraph_api``)."""
    spec = importlib.util.find_spec("langgraph_api")
    assert spec is not None and spec.origin is not None, "langgraph-api is not installed"
    path = Path(spec.origin).parent.parent / "openapi.json"
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def reference_routes() -> set[tuple[str, str]]:
    """Every ``(METHOD, path)`` of the reference API."""
    methods = {"get", "post", "put", "patch", "delete"}
    return {(m.upper(), p) for p, ops in reference_document()["paths"].items() for m in ops if m in methods}


_formats = jsonschema.FormatChecker()


@_formats.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


@_formats.checks("uuid", raises=ValueError)
def _uuid(value: object) -> bool:
    return not isinstance(value, str) or bool(uuid.UUID(value))


def _optional_may_be_null(schema: Any) -> Any:
    """``schema`` with every optional property also allowing ``null``.

    The reference server itself answers ``null`` for optional fields its document types as objects
    or strings (a task's ``error``/``state``, the first checkpoint's ``parent_checkpoint``; see
    ``langgraph_api.state.state_snapshot_to_thread_state``); required fields stay as strict as written.
    """
    if isinstance(schema, list):
        return [_optional_may_be_null(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    relaxed = {k: _optional_may_be_null(v) for k, v in schema.items()}
    properties = relaxed.get("properties")
    if isinstance(properties, dict) and all(isinstance(v, dict) for v in properties.values()):
        required = set(relaxed.get("required", ()))
        relaxed["properties"] = {
            name: prop if name in required else {"anyOf": [prop, {"type": "null"}]} for name, prop in properties.items()
        }
    return relaxed


@cache
def _registry() -> Registry:
    document = {**reference_document(), "components": _optional_may_be_null(reference_document()["components"])}
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource(_DOCUMENT_URI, resource)


def _validate(instance: Any, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(
        {"$id": "urn:check", **schema}, registry=_registry(), format_checker=_formats
    )
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    assert not errors, "; ".join(f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5])


def assert_shape(instance: Any, component: str) -> None:
    """``instance`` is valid against ``#/components/schemas/<component>`` of the reference document."""
    assert component in reference_document()["components"]["schemas"], component
    _validate(instance, {"$ref": f"{_DOCUMENT_URI}#/components/schemas/{component}"})


def assert_response_shape(instance: Any, method: str, path: str, status: str = "200") -> None:
    """``instance`` is valid against the reference's JSON answer of ``METHOD path`` with ``status``."""
    operation = reference_document()["paths"][path][method.lower()]
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    _validate(instance, _rebase(_optional_may_be_null(schema)))


def _rebase(schema: Any) -> Any:
    """``schema`` with its local ``#/components/…`` references pointed at the reference document."""
    if isinstance(schema, dict):
        return {k: (f"{_DOCUMENT_URI}{v}" if k == "$ref" and isinstance(v, str) and v.startswith("#") else _rebase(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebase(v) for v in schema]
    return schema


def error_of(exc: BaseException) -> tuple[int, str]:
    """``(status, code)`` of an SDK error: typed (``APIStatusError``) or the plain ``httpx`` one ``runs.wait`` raises."""
    import httpx

    assert isinstance(exc, httpx.HTTPStatusError), repr(exc)
    code = getattr(exc, "code", None) or exc.response.json().get("code")
    return exc.response.status_code, str(code)


NOT_SERVED: dict[tuple[str, str], tuple[int, str]] = {
    ("GET", "/threads/{thread_id}/storage"): (404, "not_found"),
    ("POST", "/threads/{thread_id}/copy"): (501, "not_implemented"),
    ("GET", "/threads/{thread_id}/stream"): (501, "not_implemented"),
    ("POST", "/threads/{thread_id}/stream/events"): (501, "not_implemented"),
    ("POST", "/threads/{thread_id}/commands"): (501, "not_implemented"),
    ("POST", "/threads/{thread_id}/runs/crons"): (405, "method_not_allowed"),  # the path of a run named "crons"
    ("POST", "/runs/crons"): (404, "not_found"),
    ("POST", "/runs/crons/search"): (404, "not_found"),
    ("POST", "/runs/crons/count"): (404, "not_found"),
    ("GET", "/runs/crons/{cron_id}"): (404, "not_found"),
    ("PATCH", "/runs/crons/{cron_id}"): (404, "not_found"),
    ("DELETE", "/runs/crons/{cron_id}"): (404, "not_found"),
    ("PUT", "/store/items"): (404, "not_found"),
    ("DELETE", "/store/items"): (404, "not_found"),
    ("GET", "/store/items"): (404, "not_found"),
    ("POST", "/store/items/search"): (404, "not_found"),
    ("POST", "/store/namespaces"): (404, "not_found"),
    ("POST", "/a2a/{assistant_id}"): (404, "not_found"),
    ("POST", "/mcp/"): (404, "not_found"),
    ("GET", "/mcp/"): (404, "not_found"),
    ("DELETE", "/mcp/"): (404, "not_found"),
    ("GET", "/metrics"): (404, "not_found"),
}
"""Routes of the reference API Mandate does not serve (yet), and how each answers (README's API table)."""
