"""The authenticated principal: who is asking, built only from a verified token."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from typing_extensions import TypedDict

from mandate.auth import vocabulary as fga

__all__ = ["Principal", "PrincipalState"]


class PrincipalState(TypedDict):
    """The requester as stored in graph state: identity only, never a token or a timestamp of one."""

    issuer: str
    issuer_key: str
    """The issuer's short configured key, the first part of the OpenFGA user id."""
    subject: str
    tenant: str
    roles: list[str]
    groups: list[str]
    client_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """A verified caller. Only ``auth/`` constructs it, from a verified access token."""

    issuer: str
    """``iss`` of the verified token."""
    issuer_key: str
    """The issuer's short key (configured per trusted issuer) that qualifies the user in OpenFGA."""
    subject: str
    """``sub``: the user (or, for client_credentials tokens, the client)."""
    tenant: str
    """Tenant the subject belongs to; every query is scoped to it."""
    roles: tuple[str, ...] = ()
    """Coarse roles from the token (informational; OpenFGA decides)."""
    groups: tuple[str, ...] = ()
    """Groups from the token (informational; OpenFGA holds the real memberships)."""
    scopes: frozenset[str] = frozenset()
    """OAuth scopes granted to the token."""
    acr: str | None = None
    """Authentication context class reference."""
    amr: tuple[str, ...] = ()
    """Authentication methods used (``pwd``, ``otp``, ``mfa`` …)."""
    auth_time: int | None = None
    """When the user authenticated (epoch seconds)."""
    expires_at: int = 0
    """``exp`` of the token (epoch seconds)."""
    client_id: str = ""
    """The OAuth client the token was issued to."""
    actor_chain: tuple[str, ...] = ()
    """Subjects of nested ``act`` claims, outermost (current actor) first."""

    @property
    def user_id(self) -> str:
        """The issuer-qualified OpenFGA user (``user:<issuer key>|<sub>``)."""
        return fga.user(self.issuer_key, self.subject)

    def to_state(self) -> PrincipalState:
        """The identity part of the principal, as it is kept in graph state."""
        return PrincipalState(
            issuer=self.issuer,
            issuer_key=self.issuer_key,
            subject=self.subject,
            tenant=self.tenant,
            roles=list(self.roles),
            groups=list(self.groups),
            client_id=self.client_id,
        )

    @staticmethod
    def user_id_of(state: PrincipalState) -> str:
        """The issuer-qualified OpenFGA user of a principal kept in graph state."""
        return fga.user(state["issuer_key"], state["subject"])

    def same_subject(self, state: PrincipalState | dict[str, Any]) -> bool:
        """Whether this caller is the requester recorded in ``state`` (same issuer and subject)."""
        return self.issuer == state["issuer"] and self.subject == state["subject"]

    def replace(self, **changes: Any) -> Principal:
        """A copy with ``changes`` applied (for tests and step-up re-verification)."""
        return dataclasses.replace(self, **changes)
