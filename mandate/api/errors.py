"""The one place where an error becomes an HTTP answer: by error class, walking its bases.

Bodies are ``{"code": …, "message": …}``: the class's stable code and its safe message, never a
stack trace, a token or a third-party body. An error class missing here answers 500, which a test
(``tests/api/test_errors.py``) keeps from happening for any error Mandate raises.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mandate.audit.errors import AuditForbiddenError, AuditUnavailableError
from mandate.auth.errors import (
    AuthorizationUnavailableError,
    DevIssuerDisabledError,
    IssuerUnavailableError,
    StepUpRequiredError,
    TokenError,
    TokenExchangeError,
    VaultUnavailableError,
)
from mandate.errors import AppError
from mandate.contract.errors import PrincipalImmutableError
from mandate.retrieval.errors import RetrievalUnavailableError
from mandate.runtime import errors as run
from mandate.runtime.sessions import RevocationUnavailableError, SessionsUnavailableError
from mandate.tools.errors import DownstreamError, McpServerRefusedError, UnknownToolError

__all__ = ["HTTP_STATUS", "error_body", "install_error_handlers", "status_of"]

_log = logging.getLogger(__name__)

HTTP_STATUS: dict[type[AppError], int] = {
    # 401 with a challenge: see _app_error
    TokenError: 401,
    StepUpRequiredError: 401,
    # 400
    run.StateUpdateRefusedError: 400,
    run.MissingIdempotencyKeyError: 400,
    # 403
    run.NotAllowedToDecideError: 403,
    run.InsufficientScopeError: 403,
    run.DelegationRequiredError: 403,
    run.AssistantAdminRequiredError: 403,
    run.AssistantReadOnlyError: 403,
    run.ProjectAuthRefusedError: 403,
    run.RunCredentialsGoneError: 403,
    AuditForbiddenError: 403,
    UnknownToolError: 403,
    DevIssuerDisabledError: 403,
    # 404
    run.ThreadNotFoundError: 404,
    run.AssistantNotFoundError: 404,
    run.RunNotFoundError: 404,
    run.ApprovalNotFoundError: 404,
    run.AssistantVersionNotFoundError: 404,
    run.GraphNotFoundError: 404,
    # 409
    run.ThreadExistsError: 409,
    run.ThreadBusyError: 409,
    run.ThreadBoundError: 409,
    run.NotInterruptedError: 409,
    run.ThreadInterruptedError: 409,
    run.ThreadNotIdleError: 409,
    run.RunInProgressError: 409,
    run.AssistantExistsError: 409,
    run.ApprovalNotPendingError: 409,
    run.DecisionRefusedError: 409,
    PrincipalImmutableError: 409,
    # 410
    run.ApprovalExpiredError: 410,
    # 422
    run.InvalidRunError: 422,
    run.InvalidAssistantConfigError: 422,
    run.ControlFieldRefusedError: 422,
    run.StateForkRefusedError: 422,
    run.UnsupportedOptionError: 422,
    run.RecursionLimitError: 422,
    run.WebhookNotAllowedError: 422,
    # 500: a run failed on another replica with an error of no class of its own here
    run.RunFailedError: 500,
    # 429
    run.ThreadQuotaError: 429,
    run.AssistantQuotaError: 429,
    # 501
    run.NotServedError: 501,
    # 502, 503: a dependency failed, so the answer is a denial (fail closed)
    TokenExchangeError: 502,
    DownstreamError: 502,
    McpServerRefusedError: 502,
    IssuerUnavailableError: 503,
    AuthorizationUnavailableError: 503,
    VaultUnavailableError: 503,
    run.LeaseLostError: 503,
    AuditUnavailableError: 503,
    RetrievalUnavailableError: 503,
    RevocationUnavailableError: 503,
    SessionsUnavailableError: 503,
}
"""HTTP status by error class; a subclass answers as its nearest listed base."""


def status_of(error: AppError) -> int:
    """The HTTP status of ``error``: that of its class or nearest listed base, else 500."""
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500


def error_body(code: str, message: str) -> dict[str, str]:
    """The JSON body of every error answer."""
    return {"code": code, "message": message}


def _www_authenticate(request: Request, error: TokenError | StepUpRequiredError) -> str:
    """The RFC 6750 / RFC 9470 challenge for ``error``, built only from configuration and constants.

    The description is the error class's fixed text, never its message; the metadata URL is the
    configured public URL, not the request's ``Host`` (which the caller chooses).
    """
    services = getattr(request.app.state, "services", None)
    value = "Bearer"
    if services is not None:
        value += f' resource_metadata="{services.settings.public_url}/.well-known/oauth-protected-resource",'
    if isinstance(error, StepUpRequiredError):
        value += (
            f' error="insufficient_user_authentication", error_description="{error.description}"'
            f', acr_values="{error.acr_values}", max_age={int(error.max_age)}'
        )
    elif error.code != "missing_token":
        value += f' error="invalid_token", error_description="{error.description}"'
    return value.rstrip(",")


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    status = status_of(exc)
    if isinstance(exc, (TokenError, StepUpRequiredError)):
        headers = {"WWW-Authenticate": _www_authenticate(request, exc)}
        return JSONResponse(error_body(exc.code, exc.message), status_code=status, headers=headers)
    if status >= 500:
        _log.warning("request failed: %s (%s)", exc.code, type(exc.__cause__).__name__ if exc.__cause__ else "-")
    return JSONResponse(error_body(exc.code, exc.message), status_code=status)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Field locations and messages only: the rejected input may hold anything, tokens included.
    errors = [{"loc": list(err.get("loc", ())), "msg": err.get("msg", "")} for err in exc.errors()]
    return JSONResponse({**error_body("invalid_request", "The request is invalid."), "errors": errors}, 422)


HTTP_ERROR_CODES = {
    400: ("bad_request", "The request could not be read."),
    404: ("not_found", "There is no such resource."),
    405: ("method_not_allowed", "This method is not allowed on this resource."),
    413: ("request_too_large", "The request is too large."),
}
"""Starlette's own refusals (unknown route, wrong method, unreadable body) in Mandate's error shape."""


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, message = HTTP_ERROR_CODES.get(exc.status_code, ("http_error", "The request was refused."))
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log.error("unexpected error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse(error_body("internal_error", "Internal error."), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to its HTTP answer, once, for ``app``."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
