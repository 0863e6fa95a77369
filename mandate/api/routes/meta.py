"""Liveness and RFC 9728 protected-resource metadata."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from mandate.api.deps import ServicesDep

__all__ = ["router"]

router = APIRouter(tags=["meta"])


@router.get("/ok")
async def ok() -> dict[str, bool]:
    """Liveness."""
    return {"ok": True}


@router.get("/info")
async def info() -> dict[str, Any]:
    """Server capabilities, as LangGraph clients expect them."""
    return {"version": "0.1.0", "flags": {"assistants": True, "crons": False, "langsmith": False}}


@router.get("/.well-known/oauth-protected-resource")
async def protected_resource(services: ServicesDep) -> dict[str, Any]:
    """How to get a token for this service (RFC 9728)."""
    settings = services.settings
    return {
        "resource": settings.audience,
        "authorization_servers": [issuer.issuer for issuer in settings.oidc_issuers],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["documents:read", "tickets:write", "payments:write"],
    }
