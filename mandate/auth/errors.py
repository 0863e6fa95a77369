"""Errors of the auth room.

    AuthError
    ├── TokenError                   (401: the bearer token is missing or unacceptable)
    │   ├── MissingTokenError          code=missing_token
    │   ├── MalformedTokenError        code=malformed_token
    │   │   └── TokenTooLargeError       code=token_too_large (refused before any parsing)
    │   ├── UntrustedIssuerError       code=untrusted_issuer
    │   ├── UnknownKeyError            code=unknown_key
    │   ├── DisallowedAlgorithmError   code=disallowed_algorithm
    │   ├── InvalidSignatureError      code=invalid_signature
    │   ├── ExpiredTokenError          code=token_expired
    │   ├── InvalidClaimsError         code=invalid_claims
    │   ├── WrongAudienceError         code=wrong_audience
    │   ├── TenantNotAllowedError      code=tenant_not_allowed (the issuer may not assert that tenant)
    │   ├── WrongTokenTypeError        code=wrong_token_type (not an access token: ID token, other typ)
    │   ├── ClientNotAllowedError      code=client_not_allowed (azp / client_id not on the issuer's list)
    │   └── MissingScopeError          code=missing_scope (a scope the issuer's rules require is absent)
    ├── IssuerUnavailableError         code=issuer_unavailable (503, fail closed)
    ├── AuthorizationUnavailableError  code=authz_unavailable  (503, fail closed)
    ├── TokenExchangeError             code=token_exchange_failed
    ├── VaultUnavailableError          code=vault_unavailable  (503, fail closed)
    ├── StepUpRequiredError            code=insufficient_user_authentication (401, RFC 9470)
    └── DevIssuerDisabledError         code=dev_issuer_disabled

Every 401 error carries a fixed ``description``: the text of its ``WWW-Authenticate`` challenge,
written here and never built from the token, so nothing a caller sends is reflected in a header.
"""

from typing import ClassVar

from mandate.errors import AppError

__all__ = [
    "AuthError",
    "AuthorizationUnavailableError",
    "ClientNotAllowedError",
    "DevIssuerDisabledError",
    "DisallowedAlgorithmError",
    "ExpiredTokenError",
    "InvalidClaimsError",
    "InvalidSignatureError",
    "IssuerUnavailableError",
    "MalformedTokenError",
    "MissingScopeError",
    "MissingTokenError",
    "StepUpRequiredError",
    "TenantNotAllowedError",
    "TokenError",
    "TokenExchangeError",
    "TokenTooLargeError",
    "UnknownKeyError",
    "UntrustedIssuerError",
    "VaultUnavailableError",
    "WrongAudienceError",
    "WrongTokenTypeError",
]


class AuthError(AppError):
    """Raised when authentication or authorization cannot succeed."""

    code = "auth_error"


class TokenError(AuthError):
    """Raised when a bearer token is missing or not acceptable (answered with 401)."""

    code = "invalid_token"
    description: ClassVar[str] = "The access token is invalid."
    """Fixed text of the ``WWW-Authenticate`` challenge: printable ASCII, no quote or backslash."""


class MissingTokenError(TokenError):
    """Raised when a request carries no bearer token."""

    code = "missing_token"
    description = "A bearer token is required."


class MalformedTokenError(TokenError):
    """Raised when a bearer token is not a well-formed signed JWT (shape, encoding or JSON types)."""

    code = "malformed_token"
    description = "The access token is not a well-formed JWT."


class TokenTooLargeError(MalformedTokenError):
    """Raised when a bearer token is longer than any access token we accept (refused unparsed)."""

    code = "token_too_large"
    description = "The access token is too large."


class UntrustedIssuerError(TokenError):
    """Raised when the token's issuer is not on the allow-list."""

    code = "untrusted_issuer"
    description = "The access token's issuer is not trusted."


class TenantNotAllowedError(TokenError):
    """Raised when a token names no tenant, or one its issuer is not configured to assert."""

    code = "tenant_not_allowed"
    description = "The access token's issuer may not assert this tenant."


class UnknownKeyError(TokenError):
    """Raised when the token's key id is not in the issuer's JWKS (or names a key of another type)."""

    code = "unknown_key"
    description = "The access token's signing key is not published by its issuer."


class DisallowedAlgorithmError(TokenError):
    """Raised when the token's ``alg`` is not pinned for its issuer (``none`` and HS* never are)."""

    code = "disallowed_algorithm"
    description = "The access token's signature algorithm is not accepted."


class InvalidSignatureError(TokenError):
    """Raised when the token's signature does not verify with the issuer's key."""

    code = "invalid_signature"
    description = "The access token's signature is invalid."


class ExpiredTokenError(TokenError):
    """Raised when the token has expired."""

    code = "token_expired"
    description = "The access token has expired."


class InvalidClaimsError(TokenError):
    """Raised when required claims are missing or mistyped, or ``nbf``/``iat`` lie in the future."""

    code = "invalid_claims"
    description = "The access token's claims are invalid."


class WrongAudienceError(TokenError):
    """Raised when the token's ``aud`` does not name this service."""

    code = "wrong_audience"
    description = "The access token was not issued for this service."


class WrongTokenTypeError(TokenError):
    """Raised when a token is not an access token of the kind its issuer is configured to send.

    That is: a ``typ`` header other than ``at+jwt`` where the issuer emits it (or other than a
    generic JWT where it does not), a ``typ`` claim other than the configured one, or any mark of
    an ID token (a ``nonce``, ``at_hash``, ``c_hash`` or ``s_hash`` claim, a ``typ`` claim of ``ID``).
    """

    code = "wrong_token_type"
    description = "An access token is required."


class ClientNotAllowedError(TokenError):
    """Raised when the token's client (``client_id``, else ``azp``) is not on its issuer's list."""

    code = "client_not_allowed"
    description = "The access token was issued to a client this service does not accept."


class MissingScopeError(TokenError):
    """Raised when the token lacks a scope that its issuer's rules require of every access token."""

    code = "missing_scope"
    description = "The access token lacks a required scope."


class IssuerUnavailableError(AuthError):
    """Raised when the issuer's discovery document or JWKS cannot be fetched in time (fail closed)."""

    code = "issuer_unavailable"


class AuthorizationUnavailableError(AuthError):
    """Raised when OpenFGA errs or times out; every decision it would have made is a denial."""

    code = "authz_unavailable"


class TokenExchangeError(AuthError):
    """Raised when the issuer refuses or fails an RFC 8693 token exchange."""

    code = "token_exchange_failed"


class VaultUnavailableError(AuthError):
    """Raised when the token vault cannot store or read an entry (the action waits; nothing leaks)."""

    code = "vault_unavailable"


class StepUpRequiredError(AuthError):
    """Raised when a request needs stronger or fresher authentication (RFC 9470 challenge)."""

    code = "insufficient_user_authentication"
    description: ClassVar[str] = "Stronger or more recent authentication is required."
    """Fixed text of the ``WWW-Authenticate`` challenge."""

    def __init__(self, message: str, *, acr_values: str, max_age: int) -> None:
        super().__init__(message)
        self.acr_values = acr_values
        self.max_age = max_age


class DevIssuerDisabledError(AuthError):
    """Raised when the dev issuer is asked to start outside ``dev`` or ``test``."""

    code = "dev_issuer_disabled"
