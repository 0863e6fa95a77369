"""Step-up policy (RFC 9470): is the caller's authentication strong and fresh enough?"""

from __future__ import annotations

from dataclasses import dataclass

from mandate.auth.principal import Principal

__all__ = ["ACR_LEVELS", "StepUpRequirement", "step_up_satisfied"]

ACR_LEVELS: tuple[str, ...] = ("urn:mandate:acr:pwd", "urn:mandate:acr:mfa")
"""Known ``acr`` values, weakest first; a stronger level satisfies a weaker requirement."""


@dataclass(frozen=True, kw_only=True, slots=True)
class StepUpRequirement:
    """What a sensitive action demands of the user's authentication."""

    acr: str
    """Minimum authentication context class (one of :data:`ACR_LEVELS`)."""
    max_age: int
    """Maximum seconds since ``auth_time``."""


def step_up_satisfied(principal: Principal, requirement: StepUpRequirement, *, now: float) -> bool:
    """Whether ``principal`` meets ``requirement`` at time ``now``.

    Unknown ``acr`` values and a missing ``auth_time`` never satisfy anything.
    """
    if principal.acr not in ACR_LEVELS or requirement.acr not in ACR_LEVELS:
        return False
    if ACR_LEVELS.index(principal.acr) < ACR_LEVELS.index(requirement.acr):
        return False
    return principal.auth_time is not None and now - principal.auth_time <= requirement.max_age
