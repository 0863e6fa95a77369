"""Calling a downstream API with a delegated token: one piece serves every HTTP tool.

A call that fails in a way another attempt may cure (a 5xx answer, a timeout, a connection reset
or refused) is retried a bounded number of times with exponential backoff and jitter, and every
attempt carries the same ``Idempotency-Key``: if an attempt's effect happened but its answer was
lost, the API answers the retry with that effect instead of making a second one. A 4xx answer is
never retried (the same request would be refused again), nor is anything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
from opentelemetry import propagate, trace
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from mandate.auth import DelegatedToken
from mandate.tools.errors import DownstreamError
from mandate.tools.registry import ToolSpec

__all__ = ["DOWNSTREAM_ATTEMPTS", "DOWNSTREAM_BACKOFF_SECONDS", "call_downstream"]

_log = logging.getLogger(__name__)

DOWNSTREAM_ATTEMPTS = 3
"""Most attempts of one call (the first and two retries)."""
DOWNSTREAM_BACKOFF_SECONDS = 0.25
"""Wait before the first retry; it doubles each time (with up to as much jitter), capped below."""
DOWNSTREAM_BACKOFF_MAX_SECONDS = 2.0
"""Longest wait between two attempts."""
_TRANSIENT_TRANSPORT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
"""Timeouts, refused or reset connections, a server that hung up mid-answer: worth another attempt."""


class _Transient(Exception):
    """One attempt failed in a way another attempt with the same key may cure."""


async def call_downstream(
    http: httpx.AsyncClient,
    spec: ToolSpec,
    *,
    args: dict[str, Any],
    token: DelegatedToken,
    idempotency_key: str,
    attempts: int = DOWNSTREAM_ATTEMPTS,
    backoff: float = DOWNSTREAM_BACKOFF_SECONDS,
) -> dict[str, Any]:
    """POST the tool's arguments to its API; the same idempotency key never has two effects.

    Args:
        http: The client (its timeout bounds each attempt).
        spec: The tool; its audience is the API's URL.
        args: The validated arguments.
        token: The delegated token for this call.
        idempotency_key: Sent unchanged with every attempt.
        attempts: Most attempts; transient failures (5xx, timeouts, connection errors) are retried.
        backoff: Seconds before the first retry (doubling, with jitter, at most 2 s).

    Returns:
        The API's JSON answer.

    Raises:
        DownstreamError: The API refused (4xx, not retried), kept failing for every attempt, or
            answered something that is not JSON; the message says which, never the API's body.
    """
    if spec.audience is None:
        raise DownstreamError(f"Tool {spec.name} has no downstream API.")
    headers = {"Authorization": f"Bearer {token.access_token}", "Idempotency-Key": idempotency_key}
    propagate.inject(headers)  # W3C traceparent: the API's own logs join this run's trace
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=backoff, max=DOWNSTREAM_BACKOFF_MAX_SECONDS, jitter=backoff),
        retry=retry_if_exception_type(_Transient),
        before_sleep=_log_retry(spec.name),
        reraise=True,
    )
    span = trace.get_current_span()
    try:
        async for attempt in retrying:
            with attempt:
                span.set_attribute("mandate.downstream.attempts", attempt.retry_state.attempt_number)
                response = await _attempt(http, spec, args=args, headers=headers)
    except _Transient as exc:
        raise DownstreamError(f"{spec.name}: {exc}, on each of {attempts} attempts.") from exc
    try:
        body = response.json()
    except ValueError as exc:
        raise DownstreamError(f"{spec.name}: the downstream API answered something that is not JSON.") from exc
    return body if isinstance(body, dict) else {"result": body}


async def _attempt(http: httpx.AsyncClient, spec: ToolSpec, *, args: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    """One POST; raises :class:`_Transient` for what a retry may cure, DownstreamError for the rest."""
    assert spec.audience is not None
    try:
        response = await http.post(spec.audience, json=args, headers=headers)
    except _TRANSIENT_TRANSPORT_ERRORS as exc:
        raise _Transient(f"the downstream API could not be reached ({type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise DownstreamError(f"{spec.name}: the downstream API could not be reached.") from exc
    if response.status_code >= 500:
        raise _Transient(f"the downstream API answered {response.status_code}")
    if response.status_code >= 400:
        raise DownstreamError(f"{spec.name}: the downstream API refused the call ({response.status_code}).")
    return response


def _log_retry(tool: str) -> Callable[[RetryCallState], None]:
    """Log each failed attempt before its retry (the error's text only: never a header or body)."""

    def log(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        _log.warning(
            "downstream call of %s failed on attempt %d (%s); retrying with the same idempotency key",
            tool, state.attempt_number, error,
        )

    return log
