"""Authorization decisions by OpenFGA, fail closed, one span per decision.

Every error or timeout from OpenFGA becomes :class:`AuthorizationUnavailableError`; callers
treat it as a denial and never fall back to "allow".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import aiohttp
from openfga_sdk import ClientConfiguration, OpenFgaClient
from openfga_sdk.client.models import (
    ClientBatchCheckItem,
    ClientBatchCheckRequest,
    ClientTuple,
    ClientWriteRequest,
)
from openfga_sdk.client.models.write_conflict_opts import (
    ClientWriteRequestOnDuplicateWrites,
    ClientWriteRequestOnMissingDeletes,
    ConflictOptions,
)
from openfga_sdk.configuration import RetryParams
from openfga_sdk.credentials import CredentialConfiguration, Credentials
from openfga_sdk.exceptions import OpenApiException
from openfga_sdk.models.consistency_preference import ConsistencyPreference
from opentelemetry import trace

from mandate.auth.errors import AuthorizationUnavailableError

__all__ = ["Authorizer", "OpenFgaAuthorizer", "Relationship", "open_fga_client"]

FGA_TIMEOUT_MS = 5_000
_FGA_ERRORS = (OpenApiException, aiohttp.ClientError, asyncio.TimeoutError, OSError)
_IGNORE_CONFLICTS = ConflictOptions(
    on_duplicate_writes=ClientWriteRequestOnDuplicateWrites.IGNORE,
    on_missing_deletes=ClientWriteRequestOnMissingDeletes.IGNORE,
)


class Relationship(NamedTuple):
    """One relationship tuple, or one question about it: may ``user`` ``relation`` ``object``?"""

    user: str
    relation: str
    object: str


class Authorizer(Protocol):
    """What the other rooms need from the authorization engine."""

    async def check(self, question: Relationship, *, strong: bool = False) -> bool: ...

    async def batch_check(self, questions: Sequence[Relationship], *, strong: bool = False) -> list[bool]: ...

    async def write(self, *, writes: Sequence[Relationship] = (), deletes: Sequence[Relationship] = ()) -> None: ...


def open_fga_client(*, api_url: str, store_id: str, model_id: str, api_token: str | None = None) -> OpenFgaClient:
    """An OpenFGA client for one store and model, with a bounded timeout and one retry."""
    credentials = (
        Credentials(method="api_token", configuration=CredentialConfiguration(api_token=api_token))
        if api_token
        else None
    )
    return OpenFgaClient(
        ClientConfiguration(
            api_url=api_url,
            store_id=store_id,
            authorization_model_id=model_id,
            credentials=credentials,
            retry_params=RetryParams(max_retry=1, min_wait_in_ms=50),
            timeout_millisec=FGA_TIMEOUT_MS,
        )
    )


class OpenFgaAuthorizer:
    """The real :class:`Authorizer`, backed by an OpenFGA server."""

    def __init__(self, *, client: OpenFgaClient, model_id: str, tracer: trace.Tracer) -> None:
        self._client = client
        self._model_id = model_id
        self._tracer = tracer

    async def check(self, question: Relationship, *, strong: bool = False) -> bool:
        """Whether OpenFGA allows ``question``.

        Args:
            question: The relationship to check.
            strong: Ask for HIGHER_CONSISTENCY (skip OpenFGA's check cache).

        Raises:
            AuthorizationUnavailableError: OpenFGA erred or timed out (treat as denial).
        """
        return (await self.batch_check([question], strong=strong))[0]

    async def batch_check(self, questions: Sequence[Relationship], *, strong: bool = False) -> list[bool]:
        """Decisions for many questions in one BatchCheck call, in the order asked.

        Raises:
            AuthorizationUnavailableError: OpenFGA erred, timed out, or failed any single check.
        """
        if not questions:
            return []
        # The same tuple asked twice in one call is decided once, at the same moment, and answered for both.
        distinct = list(dict.fromkeys(questions))
        items = [
            ClientBatchCheckItem(user=q.user, relation=q.relation, object=q.object, correlation_id=str(i))
            for i, q in enumerate(distinct)
        ]
        with self._tracer.start_as_current_span("mandate.authz.batch_check") as span:
            span.set_attribute("mandate.authz.model_id", self._model_id)
            span.set_attribute("mandate.authz.checks", len(items))
            try:
                response = await self._client.batch_check(
                    ClientBatchCheckRequest(checks=items), options=self._consistency(strong)
                )
            except _FGA_ERRORS as exc:
                span.set_attribute("mandate.authz.error", type(exc).__name__)
                raise AuthorizationUnavailableError("The authorization service is unavailable.") from exc
            by_id = {item.correlation_id: item for item in response.result}
            if any(item.error is not None for item in response.result) or len(by_id) != len(items):
                raise AuthorizationUnavailableError("The authorization service could not decide.")
            decided = {q: bool(by_id[str(i)].allowed) for i, q in enumerate(distinct)}
            for question, allowed in decided.items():
                self._record(question, allowed)
            return [decided[q] for q in questions]

    async def write(self, *, writes: Sequence[Relationship] = (), deletes: Sequence[Relationship] = ()) -> None:
        """Write and delete tuples; duplicates and missing deletes are ignored (idempotent).

        Raises:
            AuthorizationUnavailableError: OpenFGA erred.
        """
        body = ClientWriteRequest(
            writes=[ClientTuple(user=t.user, relation=t.relation, object=t.object) for t in writes] or None,
            deletes=[ClientTuple(user=t.user, relation=t.relation, object=t.object) for t in deletes] or None,
        )
        try:
            await self._client.write(body, options={"conflict": _IGNORE_CONFLICTS})
        except _FGA_ERRORS as exc:
            raise AuthorizationUnavailableError("The authorization service rejected the write.") from exc

    def _consistency(self, strong: bool) -> dict[str, object]:
        if strong:
            return {"consistency": ConsistencyPreference.HIGHER_CONSISTENCY}
        return {}

    def _record(self, question: Relationship, allowed: bool) -> None:
        """One span per decision: relation, object type/id and outcome (the user id stays out)."""
        with self._tracer.start_as_current_span("mandate.authz.check") as span:
            span.set_attribute("mandate.authz.relation", question.relation)
            span.set_attribute("mandate.authz.object", question.object)
            span.set_attribute("mandate.authz.allowed", allowed)
            span.set_attribute("mandate.authz.model_id", self._model_id)
