"""The dependency chain as ``Annotated`` aliases: routes just list what they need."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from mandate.auth import Principal
from mandate.auth.errors import MissingTokenError
from mandate.runtime.runs import RunManager
from mandate.runtime.services import Services
from mandate.runtime.sessions import issued_at

__all__ = ["BearerToken", "CurrentPrincipal", "Runs", "ServicesDep"]


def get_services(request: Request) -> Services:
    """The services built in the lifespan."""
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


def get_runs(request: Request) -> RunManager:
    """The run manager of this process."""
    return request.app.state.runs  # type: ignore[no-any-return]


Runs = Annotated[RunManager, Depends(get_runs)]


def bearer_token(request: Request) -> str:
    """The raw bearer token of this request (kept out of every log, state and error).

    Raises:
        MissingTokenError: No ``Authorization: Bearer`` header.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingTokenError("A bearer token is required.")
    return token.strip()


BearerToken = Annotated[str, Depends(bearer_token)]


async def current_principal(services: ServicesDep, token: BearerToken) -> Principal:
    """The verified principal of this request, unless an operator has cut its user off.

    Raises:
        TokenError: The token is not acceptable; ``token_revoked`` if its user was cut off.
        RevocationUnavailableError: The revocation list could not be read (503, never an allow).
    """
    principal = await services.verifier.verify(token)
    await services.sessions.check_not_revoked(principal, issued_at=issued_at(token))
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
