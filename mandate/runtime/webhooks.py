"""Webhooks on run completion: allow-listed targets only, signed, retried with backoff.

A run created with ``webhook`` gets one POST when it ends, from the replica that ended it. The target's
origin (scheme, host, port) must be on the operator's list (``MANDATE_WEBHOOK_ORIGINS``): a client
cannot make Mandate call an internal address, and redirects are never followed. The body says which
run ended and how (ids, status, error code, metadata, times), never a token, a message or a document.
Each delivery is signed like Stripe's: ``Mandate-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>">`` with the deployment's secret (``MANDATE_WEBHOOK_SECRET``), so the receiver checks
origin and freshness; ``Mandate-Webhook-Id`` (the run id) lets it drop a repeated delivery.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urlsplit

import httpx

from mandate.runtime.errors import WebhookNotAllowedError

__all__ = ["SIGNATURE_HEADER", "WebhookSender", "sign", "webhook_origin"]

_log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Mandate-Signature"
ID_HEADER = "Mandate-Webhook-Id"
ATTEMPTS = 5
"""Deliveries tried per run: the first and four retries, after 1, 2, 4 and 8 seconds."""
RETRY_BASE_SECONDS = 1.0


def webhook_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-cased, default ports dropped ("" if it has none)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return ""
    default = {"http": 80, "https": 443}[parts.scheme]
    try:
        port = parts.port
    except ValueError:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def sign(secret: bytes, body: bytes, *, timestamp: int) -> str:
    """The ``Mandate-Signature`` header value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookSender:
    """Checks targets against the allow-list and delivers completion notices in the background."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        secret: bytes,
        allowed_origins: Collection[str],
        clock: Callable[[], float] = time.time,
        retry_base: float = RETRY_BASE_SECONDS,
    ) -> None:
        self._http = http
        self._secret = secret
        self._allowed = {webhook_origin(o) for o in allowed_origins} - {""}
        self._clock = clock
        self._retry_base = retry_base
        self._deliveries: set[asyncio.Task[None]] = set()

    def check(self, url: str) -> None:
        """Refuse a target that is not on the allow-list.

        Raises:
            WebhookNotAllowedError: Not an http(s) URL, or its origin is not allowed.
        """
        if webhook_origin(url) not in self._allowed:
            raise WebhookNotAllowedError("The webhook's origin is not on this deployment's allow-list (MANDATE_WEBHOOK_ORIGINS).")

    def send(self, url: str, *, run: dict[str, Any], status: str, error: str | None) -> None:
        """Deliver the notice that ``run`` ended with ``status`` (in the background; retried)."""
        notice = {
            "run_id": str(run["run_id"]),
            "thread_id": str(run["thread_id"]),
            "assistant_id": str(run["assistant_uuid"]) if run.get("assistant_uuid") else run["assistant_id"],
            "status": status,
            "error": error,
            "metadata": run.get("metadata") or {},
            "created_at": run["created_at"].isoformat() if hasattr(run["created_at"], "isoformat") else run["created_at"],
        }
        task = asyncio.create_task(self._deliver(url, notice))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def close(self, *, grace: float) -> None:
        """Give deliveries in flight ``grace`` seconds, then drop them."""
        if self._deliveries:
            _, pending = await asyncio.wait(set(self._deliveries), timeout=grace)
            for task in pending:
                task.cancel()

    async def _deliver(self, url: str, notice: dict[str, Any]) -> None:
        try:
            self.check(url)  # the list may have changed since the run was created
        except WebhookNotAllowedError:
            _log.warning("webhook of run %s dropped: its origin is no longer allowed", notice["run_id"])
            return
        body = json.dumps(notice, separators=(",", ":")).encode()
        for attempt in range(ATTEMPTS):
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self._secret, body, timestamp=int(self._clock())),
                ID_HEADER: notice["run_id"],
            }
            try:
                response = await self._http.post(url, content=body, headers=headers, follow_redirects=False)
                if response.status_code < 500 and response.status_code != 429:
                    if response.status_code >= 300:
                        _log.warning("webhook of run %s refused with %d", notice["run_id"], response.status_code)
                    return
            except httpx.HTTPError as exc:
                _log.info("webhook of run %s: attempt %d failed (%s)", notice["run_id"], attempt + 1, type(exc).__name__)
            if attempt + 1 < ATTEMPTS:
                await asyncio.sleep(self._retry_base * 2**attempt)
        _log.warning("webhook of run %s given up after %d attempts", notice["run_id"], ATTEMPTS)
