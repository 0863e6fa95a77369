"""The app's OpenAPI document describes every JSON answer, and no answer has a place for a token.

The document is the one the app serves (``app.openapi()``); the app is built as ``mandate dev``
builds it (dev issuer and demo APIs included), without starting anything. A route that answers a
hand-built dict with no response model shows up here as a free-form object and fails the test.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel

from mandate.api import routes as routes_package
from mandate.api.app import create_app
from mandate.runtime.settings import DevSettings

DEMO_STAND_INS = ("/demo/",)
"""The only operations of the document not under ``mandate.api.routes``: the demo tickets and payments
APIs of the dev stack, stand-ins for downstream services that Mandate calls with delegated tokens
(dev and test only), not Mandate's own API."""

TOKEN_WORDS = frozenset(
    {"token", "tokens", "secret", "secrets", "password", "passwd", "credential", "credentials", "assertion", "jwt", "cookie", "apikey"}
)
"""Words that make a field name token-like (``access_token``, ``client_secret``, ``idToken`` …)."""


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    settings = DevSettings(
        env="test",
        data_dir=tmp_path_factory.mktemp("openapi"),
        tools_dir=Path(".tools").absolute(),
        database_url="postgresql://mandate@127.0.0.1:1/mandate",
        fga_url="http://127.0.0.1:1",
    )
    return create_app(settings, tracer_provider=TracerProvider())


def _mandate_routes() -> dict[tuple[str, str], APIRoute]:
    """Every route of the modules under ``mandate.api.routes``, by ``(METHOD, path)``."""
    found = {}
    for info in pkgutil.iter_modules(routes_package.__path__, f"{routes_package.__name__}."):
        router = getattr(importlib.import_module(info.name), "router", None)
        for route in getattr(router, "routes", ()):
            if isinstance(route, APIRoute):
                found.update({(method, route.path_format): route for method in route.methods})
    return found


def _operations(app: FastAPI) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(METHOD, path, operation)`` for every operation of the app's document."""
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def _component(document: dict[str, Any], ref: str) -> tuple[str, dict[str, Any]]:
    name = ref.rsplit("/", 1)[-1]
    return name, document["components"]["schemas"][name]


def untyped(schema: Any, document: dict[str, Any], seen: frozenset[str] = frozenset()) -> str | None:
    """Why ``schema`` does not describe an answer (``None`` if it does).

    A schema describes an answer when it names its fields (a model), is a primitive, or is a list
    or a map of such. Fields inside a model may be free-form (a graph's state is the graph's own);
    the answer itself may not.
    """
    if not isinstance(schema, dict) or not schema:
        return "no schema"
    if "$ref" in schema:
        name, component = _component(document, schema["$ref"])
        return None if name in seen else untyped(component, document, seen | {name})
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            reasons = [untyped(s, document, seen) for s in schema[key] if s.get("type") != "null"]
            return next((r for r in reasons if r), None)
    kind = schema.get("type")
    if kind == "array":
        return untyped(schema.get("items"), document, seen)
    if kind == "object":
        if schema.get("properties"):
            return None
        extra = schema.get("additionalProperties", True)
        if isinstance(extra, dict) and extra:
            return untyped(extra, document, seen)
        return "a free-form object (a hand-built dict?)"
    if kind in {"string", "integer", "number", "boolean"} or "const" in schema or "enum" in schema:
        return None
    return "no type"


def _json_answers(operation: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for status, answer in operation["responses"].items():
        if status.startswith("2") and "application/json" in answer.get("content", {}):
            yield status, answer["content"]["application/json"].get("schema")


def _field_names(schema: Any, document: dict[str, Any], seen: set[str]) -> Iterator[str]:
    """Every property name reachable from ``schema``, through references, unions, lists and maps."""
    if isinstance(schema, list):
        for item in schema:
            yield from _field_names(item, document, seen)
        return
    if not isinstance(schema, dict):
        return
    if "$ref" in schema:
        name, component = _component(document, schema["$ref"])
        if name not in seen:
            seen.add(name)
            yield from _field_names(component, document, seen)
        return
    for name, prop in (schema.get("properties") or {}).items():
        yield name
        yield from _field_names(prop, document, seen)
    for key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf"):
        yield from _field_names(schema.get(key), document, seen)


def token_like(name: str) -> bool:
    """Whether a field called ``name`` would carry a token, a secret or a password."""
    words = re.split(r"[_\-.]|(?<=[a-z0-9])(?=[A-Z])", name)
    return bool({w.lower() for w in words} & TOKEN_WORDS) or name.lower() in {"authorization", "bearer"}


def test_openapi_every_json_answer_of_a_mandate_route_has_a_schema(app: FastAPI) -> None:
    document, ours = app.openapi(), _mandate_routes()
    checked, lacking, others = 0, [], []
    for method, path, operation in _operations(app):
        if (method, path) not in ours:
            others.append(path)
            continue
        for status, schema in _json_answers(operation):
            checked += 1
            reason = untyped(schema, document)
            if reason:
                lacking.append(f"{method} {path} {status}: {reason}")
    assert lacking == []
    assert checked >= 40, "the walk found Mandate's routes"
    assert others and all(path.startswith(DEMO_STAND_INS) for path in others), "only the demo downstream APIs are left out"


def test_openapi_streams_are_described_as_server_sent_events(app: FastAPI) -> None:
    streams = {
        (method, path): operation["responses"]["200"]["content"]
        for method, path, operation in _operations(app)
        if path.endswith("/stream")
    }
    assert set(streams) == {
        ("POST", "/threads/{thread_id}/runs/stream"),
        ("GET", "/threads/{thread_id}/runs/{run_id}/stream"),
        ("POST", "/runs/stream"),
    }
    assert all(set(content) == {"text/event-stream"} for content in streams.values())


def test_openapi_no_answer_has_a_token_like_field(app: FastAPI) -> None:
    document = app.openapi()
    names: dict[str, set[str]] = {}
    for method, path, operation in _operations(app):
        for status, answer in operation["responses"].items():
            for content in answer.get("content", {}).values():
                for name in _field_names(content.get("schema"), document, set()):
                    names.setdefault(name, set()).add(f"{method} {path} {status}")
    assert {"thread_id", "run_id", "assistant_id", "records", "approval", "checks"} <= set(names), "the walk reached the models"
    assert {name: sorted(where) for name, where in names.items() if token_like(name)} == {}


class Leaky(BaseModel):
    """An answer that would hand out a token (the kind of field the test above refuses)."""

    id: str
    access_token: str


def test_openapi_walk_flags_a_hand_built_dict_and_a_token_field() -> None:
    """The checks above can fail: a route answering a hand-built dict, and one with a token field."""

    other = FastAPI()

    @other.get("/dict")
    async def hand_built() -> dict[str, Any]:
        return {"id": "x"}

    @other.get("/leaky")
    async def leaky() -> Leaky:
        return Leaky(id="x", access_token="t")

    document = other.openapi()
    dict_schema = document["paths"]["/dict"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    leaky_schema = document["paths"]["/leaky"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert untyped(dict_schema, document) == "a free-form object (a hand-built dict?)"
    assert untyped(leaky_schema, document) is None
    assert [n for n in _field_names(leaky_schema, document, set()) if token_like(n)] == ["access_token"]
    assert all(token_like(n) for n in ("client_secret", "idToken", "refresh_token", "password", "authorization"))
    assert not any(token_like(n) for n in ("authorization_servers", "bearer_methods_supported", "open_tool_calls", "thread_id"))
