"""Who the dev issuer knows: its users, its registered clients and the demo world's people."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_USERS",
    "DEV_CLI_CLIENT_ID",
    "DEV_OTP",
    "TOKEN_EXCHANGE_GRANT",
    "DevClient",
    "DevUser",
]

DEV_CLI_CLIENT_ID = "mandate-cli"
"""The public client the CLI and the approver page sign in with (password grant)."""

DEMO_PASSWORD = "demo"
"""The password of every dev issuer user. Dev and test only, like the issuer itself."""

DEV_OTP = "000000"
"""The documented dev-only one-time password; sending it as ``otp`` makes a login multi-factor."""

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
"""The RFC 8693 grant type."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DevUser:
    """A person who can log in to the dev issuer with the password grant."""

    username: str
    """Login name; becomes the token's ``sub``."""
    tenant: str
    """Tenant the user belongs to (``tenant`` claim)."""
    groups: tuple[str, ...] = ()
    """Groups (``groups`` claim)."""
    roles: tuple[str, ...] = ()
    """Coarse roles (``roles`` claim)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DevClient:
    """An OAuth client registered with the dev issuer."""

    client_id: str
    """The client identifier."""
    secret: str | None
    """Client secret; ``None`` makes a public client (token endpoint auth method ``none``)."""
    grant_types: tuple[str, ...]
    """Grants the client may use: ``password``, ``client_credentials``, :data:`TOKEN_EXCHANGE_GRANT`."""
    scopes: tuple[str, ...]
    """Every scope this client may obtain; requests default to all of them."""
    exchange_audiences: tuple[str, ...] = ()
    """Audiences (downstream APIs) this client may request in a token exchange."""


DEMO_USERS: tuple[DevUser, ...] = (
    DevUser(username="alice", tenant="acme", groups=("finance",), roles=("employee",)),
    DevUser(username="dave", tenant="acme", groups=("engineering",), roles=("employee",)),
    DevUser(username="bob", tenant="acme", groups=("management",), roles=("employee", "manager", "approver")),
    DevUser(username="carol", tenant="globex", groups=("staff",), roles=("employee",)),
)
"""The demo world's people (see DESIGN.md); every one logs in with :data:`DEMO_PASSWORD`."""
