"""The relationship queries retrieval needs besides checks: list objects, read tuples, follow changes.

OpenFGA's ListObjects stops without a signal at its result cap or its deadline. This module never
passes such a list on as complete: a list as long as the cap, or an answer slower than the
deadline, raises :class:`IncompleteListingError` and the caller takes a path that needs no list.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import aiohttp
from openfga_sdk import OpenFgaClient
from openfga_sdk.client.models import ClientListObjectsRequest, ClientReadChangesRequest
from openfga_sdk.exceptions import OpenApiException
from openfga_sdk.models.consistency_preference import ConsistencyPreference
from openfga_sdk.models.read_request_tuple_key import ReadRequestTupleKey
from openfga_sdk.models.tuple_operation import TupleOperation

from mandate.auth import AuthorizationUnavailableError, Relationship
from mandate.retrieval.errors import IncompleteListingError

__all__ = [
    "LIST_OBJECTS_DEADLINE_S",
    "LIST_OBJECTS_MAX_RESULTS",
    "OpenFgaDirectory",
    "RelationshipDirectory",
    "TupleChange",
]

LIST_OBJECTS_MAX_RESULTS = 1000
"""OpenFGA's default ``OPENFGA_LIST_OBJECTS_MAX_RESULTS``; must not exceed the server's value."""
LIST_OBJECTS_DEADLINE_S = 2.5
"""Client deadline of one ListObjects; must stay below the server's ``OPENFGA_LIST_OBJECTS_DEADLINE`` (3 s)."""
PAGE_SIZE = 100
"""Page size of Read and ReadChanges (OpenFGA's maximum)."""

_FGA_ERRORS = (OpenApiException, aiohttp.ClientError, OSError)
_STRONG = {"consistency": ConsistencyPreference.HIGHER_CONSISTENCY}


@dataclass(frozen=True, kw_only=True, slots=True)
class TupleChange:
    """One entry of OpenFGA's change log."""

    relationship: Relationship
    deleted: bool
    """Whether the tuple was deleted (else written)."""
    timestamp: datetime | None = None
    """When OpenFGA logged it (its clock)."""


class RelationshipDirectory(Protocol):
    """What retrieval asks OpenFGA besides checks."""

    @property
    def store_id(self) -> str: ...

    async def list_objects(self, *, user: str, relation: str, object_type: str) -> tuple[str, ...]: ...

    async def read(self, obj: str) -> list[Relationship]: ...

    async def read_changes(
        self, *, object_type: str | None, cursor: str, start_time: datetime | None = None
    ) -> tuple[list[TupleChange], str]: ...


class OpenFgaDirectory:
    """The real :class:`RelationshipDirectory` over an OpenFGA client (fail closed, never truncated)."""

    def __init__(
        self,
        *,
        client: OpenFgaClient,
        max_results: int = LIST_OBJECTS_MAX_RESULTS,
        deadline_s: float = LIST_OBJECTS_DEADLINE_S,
    ) -> None:
        """Wrap ``client``.

        Args:
            client: An OpenFGA client bound to the store and model.
            max_results: The server's ListObjects result cap (or lower); a list this long counts as cut.
            deadline_s: Seconds after which a ListObjects counts as cut (below the server's deadline).
        """
        self._client = client
        self._max_results = max_results
        self._deadline_s = deadline_s

    @property
    def store_id(self) -> str:
        """The OpenFGA store this directory reads."""
        return str(self._client.get_store_id())

    async def list_objects(self, *, user: str, relation: str, object_type: str) -> tuple[str, ...]:
        """Every ``object_type`` object ``user`` has ``relation`` with (higher consistency).

        Returns:
            Objects as ``type:id``.

        Raises:
            IncompleteListingError: The answer hit the result cap or the deadline.
            AuthorizationUnavailableError: OpenFGA erred.
        """
        request = ClientListObjectsRequest(user=user, relation=relation, type=object_type)
        try:
            async with asyncio.timeout(self._deadline_s):
                response = await self._client.list_objects(request, options=dict(_STRONG))
        except TimeoutError as exc:
            raise IncompleteListingError(f"Listing {object_type} for {relation} passed its deadline.") from exc
        except _FGA_ERRORS as exc:
            raise AuthorizationUnavailableError("The authorization service is unavailable.") from exc
        objects = tuple(response.objects or ())
        if len(objects) >= self._max_results:
            raise IncompleteListingError(f"Listing {object_type} for {relation} reached the result cap.")
        return objects

    async def read(self, obj: str) -> list[Relationship]:
        """Every tuple whose object is ``obj``, all pages (higher consistency).

        Raises:
            AuthorizationUnavailableError: OpenFGA erred.
        """
        tuples: list[Relationship] = []
        token = ""
        while True:
            options: dict[str, object] = {"page_size": PAGE_SIZE, **_STRONG}
            if token:
                options["continuation_token"] = token
            try:
                response = await self._client.read(
                    ReadRequestTupleKey(object=obj), options=options  # type: ignore[arg-type]
                )
            except (*_FGA_ERRORS, TimeoutError) as exc:
                raise AuthorizationUnavailableError("The authorization service is unavailable.") from exc
            tuples.extend(Relationship(t.key.user, t.key.relation, t.key.object) for t in response.tuples)
            token = response.continuation_token or ""
            if not token:
                return tuples

    async def read_changes(
        self, *, object_type: str | None, cursor: str, start_time: datetime | None = None
    ) -> tuple[list[TupleChange], str]:
        """Changes to tuples of ``object_type`` objects after ``cursor`` (one page, oldest first).

        Args:
            object_type: Type to follow, for example ``document``; ``None`` follows every type.
            cursor: A continuation token from a previous call; empty starts at ``start_time``.
            start_time: Without a cursor, the first change returned is the first logged at or
                after this time (``None``: the beginning of the log).

        Returns:
            ``(changes, next_cursor)``; no changes means the change log is drained.

        Raises:
            AuthorizationUnavailableError: OpenFGA erred.
        """
        options: dict[str, object] = {"page_size": PAGE_SIZE}
        if cursor:
            options["continuation_token"] = cursor
        since = None if cursor or start_time is None else start_time.isoformat().replace("+00:00", "Z")
        try:
            response = await self._client.read_changes(
                ClientReadChangesRequest(type=object_type, start_time=since),  # type: ignore[arg-type]
                options=options,  # type: ignore[arg-type]
            )
        except (*_FGA_ERRORS, TimeoutError) as exc:
            raise AuthorizationUnavailableError("The authorization service is unavailable.") from exc
        changes = [
            TupleChange(
                relationship=Relationship(c.tuple_key.user, c.tuple_key.relation, c.tuple_key.object),
                deleted=c.operation == TupleOperation.DELETE,
                timestamp=c.timestamp,
            )
            for c in response.changes or ()
        ]
        return changes, response.continuation_token or cursor
