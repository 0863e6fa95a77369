"""A real OAuth 2.0 / OIDC authorization server for dev and test, built on authlib.

It serves discovery, a JWKS and a token endpoint issuing RS256 ``at+jwt`` access tokens by the
password (with a documented dev OTP for MFA), client_credentials and RFC 8693 token exchange grants.
It refuses to start outside the ``dev`` and ``test`` environments.
"""

from mandate.auth.dev_issuer._directory import (
    DEMO_PASSWORD,
    DEMO_USERS,
    DEV_CLI_CLIENT_ID,
    DEV_OTP,
    TOKEN_EXCHANGE_GRANT,
    DevClient,
    DevUser,
)
from mandate.auth.dev_issuer._server import create_dev_issuer_app

__all__ = [
    "DEMO_PASSWORD",
    "DEMO_USERS",
    "DEV_CLI_CLIENT_ID",
    "DEV_OTP",
    "TOKEN_EXCHANGE_GRANT",
    "DevClient",
    "DevUser",
    "create_dev_issuer_app",
]
