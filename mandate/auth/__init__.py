"""Auth: token verification → Principal, OpenFGA decisions, token exchange, step-up, dev issuer."""

from mandate.auth._fga_setup import ensure_store_and_model
from mandate.auth.authz import Authorizer, OpenFgaAuthorizer, Relationship, open_fga_client
from mandate.auth.errors import (
    AuthError,
    AuthorizationUnavailableError,
    IssuerUnavailableError,
    StepUpRequiredError,
    TokenError,
    TokenExchangeError,
    VaultUnavailableError,
)
from mandate.auth.exchange import DelegatedToken, TokenBroker
from mandate.auth.principal import Principal, PrincipalState
from mandate.auth.step_up import ACR_LEVELS, StepUpRequirement, acr_at_least, step_up_satisfied
from mandate.auth.queries import MIGRATIONS
from mandate.auth.vault import TokenVault, TokenVaultStore
from mandate.auth.verifier import TokenVerifier, TrustedIssuer

__all__ = [
    "ACR_LEVELS",
    "MIGRATIONS",
    "AuthError",
    "AuthorizationUnavailableError",
    "Authorizer",
    "DelegatedToken",
    "IssuerUnavailableError",
    "OpenFgaAuthorizer",
    "Principal",
    "PrincipalState",
    "Relationship",
    "StepUpRequiredError",
    "StepUpRequirement",
    "TokenBroker",
    "TokenError",
    "TokenExchangeError",
    "TokenVault",
    "TokenVaultStore",
    "TokenVerifier",
    "TrustedIssuer",
    "VaultUnavailableError",
    "acr_at_least",
    "ensure_store_and_model",
    "open_fga_client",
    "step_up_satisfied",
]
