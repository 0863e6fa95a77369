"""The demo resource servers (tickets, payments): downstream APIs that trust only delegated tokens.

Each verifies issuer, signature, expiry, its own audience, its scope and the ``act`` claim, and
applies a state change at most once per ``Idempotency-Key``. They stand in for a customer's APIs
and are served under ``/demo`` by the dev stack. Their verifiers (:func:`demo_api_verifiers`) are built
once per app lifespan, so their JWKS caches last as long as the service's.
"""


import asyncio
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from mandate.auth import Principal, TokenVerifier
from mandate.runtime import queries
from mandate.api.deps import BearerToken, ServicesDep
from mandate.runtime.errors import DelegationRequiredError, InsufficientScopeError, MissingIdempotencyKeyError
from mandate.graphs.tools import CreateTicketArgs, SendPaymentArgs
from mandate.runtime.services import Services, trusted_issuers

__all__ = ["demo_api_verifiers", "demo_apis_router"]


def demo_api_verifiers(services: Services) -> dict[str, TokenVerifier]:
    """Each demo API's verifier (its own URL is its audience); kept in ``app.state.demo_api_verifiers``."""
    issuers = trusted_issuers(services.settings)
    return {
        api: TokenVerifier(issuers=issuers, audience=audience, http=services.http)
        for api, audience in (("tickets", services.settings.tickets_api_url), ("payments", services.settings.payments_api_url))
    }


def _resource_router(*, api: str, scope: str, body_model: type[BaseModel], id_prefix: str) -> APIRouter:
    """One resource server: POST creates (once per idempotency key); GET lists the caller's records."""
    router = APIRouter(prefix=f"/{api}", tags=[f"demo {api} API"])

    def api_verifier(request: Request) -> TokenVerifier:
        return request.app.state.demo_api_verifiers[api]

    Verifier = Annotated[TokenVerifier, Depends(api_verifier)]

    async def delegated(token: BearerToken, verifier: Verifier) -> Principal:
        principal = await verifier.verify(token)
        if not principal.actor_chain:
            raise DelegationRequiredError("Only tokens obtained by an agent for a user are accepted.")
        return principal

    Caller = Annotated[Principal, Depends(delegated)]

    @router.post("")
    async def create(
        body: body_model,  # type: ignore[valid-type]
        caller: Caller,
        services: ServicesDep,
        verifier: Verifier,
        idempotency_key: Annotated[str | None, Header()] = None,
        traceparent: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        if scope not in caller.scopes:
            raise InsufficientScopeError(f"Scope {scope} is required.")
        if not idempotency_key:
            raise MissingIdempotencyKeyError("An Idempotency-Key header is required.")
        params = {
            "api": api,
            "key": idempotency_key,
            "id": f"{id_prefix}-{secrets.token_hex(4).upper()}",
            "subject": caller.subject,
            "actor": caller.actor_chain[0],
            "audience": verifier.audience,
            "scopes": sorted(caller.scopes),
            "body": Jsonb(body.model_dump(mode="json")),  # type: ignore[attr-defined]
            "traceparent": traceparent,
        }
        async with services.pool.connection() as conn:
            await conn.execute(queries.INSERT_EFFECT, params)
            row = await (await conn.execute(queries.SELECT_EFFECT, params)).fetchone()
        assert row is not None
        if services.settings.demo_api_delay:
            await asyncio.sleep(services.settings.demo_api_delay)
        return {"id": row["id"], "status": "created"}

    @router.get("")
    async def list_mine(caller: Caller, services: ServicesDep) -> list[dict[str, Any]]:
        async with services.pool.connection() as conn:
            cur = await conn.execute(queries.LIST_EFFECTS, {"api": api, "subject": caller.subject})
            rows = await cur.fetchall()
        return [{"id": r["id"], "actor": r["actor"], "body": r["body"]} for r in rows]

    return router


def demo_apis_router() -> APIRouter:
    """The tickets and payments APIs, to be included under ``/demo``."""
    router = APIRouter(prefix="/demo")
    router.include_router(_resource_router(api="tickets", scope="tickets:write", body_model=CreateTicketArgs, id_prefix="TCK"))
    router.include_router(_resource_router(api="payments", scope="payments:write", body_model=SendPaymentArgs, id_prefix="PAY"))
    return router
