"""Step-up policy (RFC 9470): is the caller's authentication strong and fresh enough?"""

from __future__ import annotations

from dataclasses import dataclass

from mandate.auth.principal import Principal

__all__ = ["ACR_LEVELS", "StepUpRequirement", "acr_at_least", "step_up_satisfied"]

ACR_LEVELS: tuple[str, ...] = ("urn:mandate:acr:pwd", "urn:mandate:acr:mfa")
"""Known ``acr`` values, weakest first; a stronger level satisfies a weaker requirement."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StepUpRequirement:
    """What a sensitive action demands of the user's authentication."""

    acr: str
    """Minimum authentication context class (one of :data:`ACR_LEVELS`)."""
    max_age: int
    """Maximum seconds since ``auth_time``."""


def acr_at_least(acr: str | None, required: str) -> bool:
    """Whether ``acr`` is a known level at least as strong as ``required`` (freshness aside)."""
    return acr in ACR_LEVELS and required in ACR_LEVELS and ACR_LEVELS.index(acr) >= ACR_LEVELS.index(required)


def step_up_satisfied(principal: Principal, requirement: StepUpRequirement, *, now: float) -> bool:
    """Whether ``principal`` meets ``requirement`` at time ``now``.

    Unknown ``acr`` values and a missing ``auth_time`` never satisfy anything.
    """
    if not acr_at_least(principal.acr, requirement.acr):
        return False
    return principal.auth_time is not None and now - principal.auth_time <= requirement.max_age
