"""Errors of the auth room.

    AuthError
    ├── TokenError                   (401: the bearer token is missing or unacceptable)
    │   ├── MissingTokenError          code=missing_token
    │   ├── MalformedTokenError        code=malformed_token
    │   ├── UntrustedIssuerError       code=untrusted_issuer
    │   ├── UnknownKeyError            code=unknown_key
    │   ├── DisallowedAlgorithmError   code=disallowed_algorithm
    │   ├── InvalidSignatureError      code=invalid_signature
    │   ├── ExpiredTokenError          code=token_expired
    │   ├── InvalidClaimsError         code=invalid_claims
    │   ├── WrongAudienceError         code=wrong_audience
    │   └── WrongTokenTypeError        code=wrong_token_type
    ├── IssuerUnavailableError         code=issuer_unavailable (503, fail closed)
    ├── AuthorizationUnavailableError  code=authz_unavailable  (503, fail closed)
    ├── TokenExchangeError             code=token_exchange_failed
    ├── VaultUnavailableError          code=vault_unavailable  (503, fail closed)
    ├── StepUpRequiredError            code=insufficient_user_authentication (401, RFC 9470)
    └── DevIssuerDisabledError         code=dev_issuer_disabled
"""

from mandate.errors import AppError

__all__ = [
    "AuthError",
    "AuthorizationUnavailableError",
    "DevIssuerDisabledError",
    "DisallowedAlgorithmError",
    "ExpiredTokenError",
    "InvalidClaimsError",
    "InvalidSignatureError",
    "IssuerUnavailableError",
    "MalformedTokenError",
    "MissingTokenError",
    "StepUpRequiredError",
    "TokenError",
    "TokenExchangeError",
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


class MissingTokenError(TokenError):
    """Raised when a request carries no bearer token."""

    code = "missing_token"


class MalformedTokenError(TokenError):
    """Raised when a bearer token is not a well-formed signed JWT."""

    code = "malformed_token"


class UntrustedIssuerError(TokenError):
    """Raised when the token's issuer is not on the allow-list."""

    code = "untrusted_issuer"


class UnknownKeyError(TokenError):
    """Raised when the token's key id is not in the issuer's JWKS, even after a refetch."""

    code = "unknown_key"


class DisallowedAlgorithmError(TokenError):
    """Raised when the token's ``alg`` is not pinned for its issuer (``none`` and HS* never are)."""

    code = "disallowed_algorithm"


class InvalidSignatureError(TokenError):
    """Raised when the token's signature does not verify with the issuer's key."""

    code = "invalid_signature"


class ExpiredTokenError(TokenError):
    """Raised when the token has expired (or has no ``exp``)."""

    code = "token_expired"


class InvalidClaimsError(TokenError):
    """Raised when required claims are missing or ``nbf``/``iat`` lie in the future."""

    code = "invalid_claims"


class WrongAudienceError(TokenError):
    """Raised when the token's ``aud`` does not name this service."""

    code = "wrong_audience"


class WrongTokenTypeError(TokenError):
    """Raised when an issuer that emits ``at+jwt`` access tokens presents another ``typ``."""

    code = "wrong_token_type"


class IssuerUnavailableError(AuthError):
    """Raised when the issuer's discovery document or JWKS cannot be fetched (fail closed)."""

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

    def __init__(self, message: str, *, acr_values: str, max_age: int) -> None:
        super().__init__(message)
        self.acr_values = acr_values
        self.max_age = max_age


class DevIssuerDisabledError(AuthError):
    """Raised when the dev issuer is asked to start outside ``dev`` or ``test``."""

    code = "dev_issuer_disabled"
