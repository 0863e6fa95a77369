"""Calling a downstream API with a delegated token: one piece serves every HTTP tool."""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry import propagate

from mandate.auth import DelegatedToken
from mandate.tools.errors import DownstreamError
from mandate.tools.registry import ToolSpec

__all__ = ["call_downstream"]


async def call_downstream(
    http: httpx.AsyncClient,
    spec: ToolSpec,
    *,
    args: dict[str, Any],
    token: DelegatedToken,
    idempotency_key: str,
) -> dict[str, Any]:
    """POST the tool's arguments to its API; the same idempotency key never has two effects.

    Returns:
        The API's JSON answer.

    Raises:
        DownstreamError: The API refused, failed or could not be reached (its body is not echoed).
    """
    if spec.audience is None:
        raise DownstreamError(f"Tool {spec.name} has no downstream API.")
    headers = {"Authorization": f"Bearer {token.access_token}", "Idempotency-Key": idempotency_key}
    propagate.inject(headers)  # W3C traceparent: the API's own logs join this run's trace
    try:
        response = await http.post(spec.audience, json=args, headers=headers)
    except httpx.HTTPError as exc:
        raise DownstreamError(f"{spec.name}: the downstream API could not be reached.") from exc
    if response.status_code >= 400:
        raise DownstreamError(f"{spec.name}: the downstream API answered {response.status_code}.")
    body = response.json()
    return body if isinstance(body, dict) else {"result": body}
