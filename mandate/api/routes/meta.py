"""Liveness, readiness and RFC 9728 protected-resource metadata."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from mandate.api.deps import ServicesDep
from mandate.api.schemas import Liveness, NotReady, ProtectedResourcePublic, Readiness, ServerFlags, ServerInfo
from mandate.runtime.readiness import readiness

__all__ = ["router"]

router = APIRouter(tags=["meta"])


@router.get("/ok")
async def ok() -> Liveness:
    """Liveness."""
    return Liveness(ok=True)


@router.get("/ready", response_model=Readiness, responses={503: {"model": NotReady, "description": "A check failed, or the replica is draining."}})
async def ready(request: Request, services: ServicesDep) -> Readiness | JSONResponse:
    """Readiness: 200 when Postgres, OpenFGA and every trusted issuer's JWKS answer and the replica is
    not draining; otherwise 503 ``not_ready`` naming the checks (a load balancer stops sending it work)."""
    checks = await readiness(services, draining=request.app.state.worker.draining)
    if all(checks.values()):
        return Readiness(ready=True, checks=checks)
    failed = ", ".join(name for name, ok in checks.items() if not ok)
    refusal = NotReady(code="not_ready", message=f"Not ready: {failed}.", checks=checks)
    return JSONResponse(refusal.model_dump(mode="json"), status_code=503)


@router.get("/info")
async def info() -> ServerInfo:
    """Server capabilities, as LangGraph clients expect them."""
    return ServerInfo(version="0.1.0", flags=ServerFlags(assistants=True, crons=False, langsmith=False))


@router.get("/.well-known/oauth-protected-resource")
async def protected_resource(services: ServicesDep) -> ProtectedResourcePublic:
    """How to get a token for this service (RFC 9728)."""
    settings = services.settings
    return ProtectedResourcePublic(
        resource=settings.audience,
        authorization_servers=[issuer.issuer for issuer in settings.oidc_issuers],
        bearer_methods_supported=["header"],
        scopes_supported=["documents:read", "tickets:write", "payments:write"],
    )
