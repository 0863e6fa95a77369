"""Errors of the service room, and the one place where every error becomes an HTTP answer.

    ServiceError
    ├── ThreadNotFoundError      code=thread_not_found     (404; also for threads of others)
    ├── ThreadExistsError        code=thread_exists        (409)
    ├── ThreadBusyError          code=thread_busy          (409: a run is in progress)
    ├── ThreadBoundError         code=thread_bound         (409: the thread runs another assistant)
    ├── NotInterruptedError      code=thread_not_interrupted (409: nothing to resume)
    ├── ThreadInterruptedError   code=thread_interrupted   (409: answer the pending interrupt first)
    ├── AssistantNotFoundError   code=assistant_not_found  (404)
    ├── RunNotFoundError         code=run_not_found        (404)
    ├── InvalidRunError          code=invalid_run          (422)
    ├── ThreadQuotaError         code=thread_quota_exceeded (429: the user keeps the most threads allowed)
    ├── ThreadNotIdleError       code=thread_not_idle      (409: paused or unfinished; state is not writable)
    ├── StateUpdateRefusedError  code=invalid_state_update (400: the thread never ran)
    ├── StateForkRefusedError    code=state_fork_refused   (422: a state write names an older checkpoint)
    ├── ControlFieldRefusedError code=control_field_refused (422: a client value names a control)
    ├── UnsupportedOptionError   code=unsupported_option   (422: an API option Mandate does not offer)
    ├── NotServedError           code=not_implemented      (501: a route of the LangGraph API not served yet)
    ├── RunInProgressError       code=run_in_progress      (409: the run is still executing)
    ├── RecursionLimitError      code=recursion_limit_reached (422: the run took more steps than allowed)
    ├── AssistantError
    │   ├── AssistantExistsError         code=assistant_exists          (409)
    │   ├── AssistantAdminRequiredError  code=assistant_admin_required  (403: OpenFGA says no)
    │   ├── AssistantReadOnlyError       code=assistant_readonly        (403: a built-in system assistant)
    │   ├── AssistantQuotaError          code=assistant_quota_exceeded  (429)
    │   ├── AssistantVersionNotFoundError code=assistant_version_not_found (404)
    │   ├── GraphNotFoundError           code=graph_not_found           (404)
    │   └── InvalidAssistantConfigError  code=invalid_assistant_config  (422: not in the graph's schema)
    ├── ApprovalError
    │   ├── ApprovalNotFoundError    code=approval_not_found   (404; also for other tenants)
    │   ├── ApprovalNotPendingError  code=approval_not_pending (409: decided, closed, or lost a race)
    │   ├── ApprovalExpiredError     code=approval_expired     (410)
    │   ├── NotAllowedToDecideError  code=not_allowed_to_decide (403)
    │   └── DecisionRefusedError     code=decision_refused     (409: the run refused it; see message)
    └── ResourceServerError      (the demo APIs' refusals)
        ├── InsufficientScopeError     code=insufficient_scope   (403)
        ├── DelegationRequiredError    code=delegation_required  (403: no `act`, so not a delegated token)
        └── MissingIdempotencyKeyError code=idempotency_key_required (400)

Bodies are ``{"code": …, "message": …}``: never a stack trace, a token or a third-party body.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mandate.auth import StepUpRequiredError, TokenError
from mandate.errors import AppError

__all__ = [
    "ApprovalError",
    "AssistantAdminRequiredError",
    "AssistantError",
    "AssistantExistsError",
    "AssistantQuotaError",
    "AssistantReadOnlyError",
    "AssistantVersionNotFoundError",
    "ControlFieldRefusedError",
    "GraphNotFoundError",
    "InvalidAssistantConfigError",
    "NotServedError",
    "RecursionLimitError",
    "RunInProgressError",
    "StateForkRefusedError",
    "UnsupportedOptionError",
    "ApprovalExpiredError",
    "ApprovalNotFoundError",
    "ApprovalNotPendingError",
    "AssistantNotFoundError",
    "DecisionRefusedError",
    "DelegationRequiredError",
    "InsufficientScopeError",
    "InvalidRunError",
    "MissingIdempotencyKeyError",
    "NotAllowedToDecideError",
    "ResourceServerError",
    "RunNotFoundError",
    "NotInterruptedError",
    "ServiceError",
    "ThreadBoundError",
    "ThreadBusyError",
    "ThreadExistsError",
    "StateUpdateRefusedError",
    "ThreadInterruptedError",
    "ThreadNotFoundError",
    "ThreadNotIdleError",
    "ThreadQuotaError",
    "install_error_handlers",
]

_log = logging.getLogger(__name__)


class ServiceError(AppError):
    """Raised by the HTTP layer for requests it cannot serve."""

    code = "service_error"


class ThreadNotFoundError(ServiceError):
    """Raised when a thread does not exist or belongs to someone else (indistinguishable on purpose)."""

    code = "thread_not_found"


class ThreadExistsError(ServiceError):
    """Raised when creating a thread whose id is taken."""

    code = "thread_exists"


class ThreadBusyError(ServiceError):
    """Raised when a run is already in progress on the thread."""

    code = "thread_busy"


class ThreadBoundError(ServiceError):
    """Raised when a run names another assistant than the one the thread already runs."""

    code = "thread_bound"


class NotInterruptedError(ServiceError):
    """Raised when resuming a thread that is not waiting for input."""

    code = "thread_not_interrupted"


class ThreadInterruptedError(ServiceError):
    """Raised when new input is sent to a thread that waits for an answer to its interrupt."""

    code = "thread_interrupted"


class AssistantNotFoundError(ServiceError):
    """Raised when a run names an assistant that does not exist."""

    code = "assistant_not_found"


class RunNotFoundError(ServiceError):
    """Raised when a run does not exist on the (caller's) thread."""

    code = "run_not_found"


class InvalidRunError(ServiceError):
    """Raised when a run request is malformed (input and command together, neither, bad messages)."""

    code = "invalid_run"


class ThreadQuotaError(ServiceError):
    """Raised when a user who already keeps ``max_threads_per_user`` threads creates another."""

    code = "thread_quota_exceeded"


class ThreadNotIdleError(ServiceError):
    """Raised when a state write targets a thread that is paused at an interrupt or stopped between nodes."""

    code = "thread_not_idle"


class StateUpdateRefusedError(ServiceError):
    """Raised when a state write targets a thread that has never run (there is nothing to update)."""

    code = "invalid_state_update"


class StateForkRefusedError(ServiceError):
    """Raised when a state write names a checkpoint other than the thread's latest (a fork could skip a gate)."""

    code = "state_fork_refused"


class ControlFieldRefusedError(ServiceError):
    """Raised when a client value names a control: the principal, grants, policies, tools, gates, the thread.

    Run bodies (``config.configurable``, ``context``, ``checkpoint``) and assistant configurations
    both answer with it; Mandate sets these itself, from verified identity and its own policy.
    """

    code = "control_field_refused"


class UnsupportedOptionError(ServiceError):
    """Raised when a request asks for an option of the LangGraph API that Mandate does not offer."""

    code = "unsupported_option"


class NotServedError(ServiceError):
    """Raised by a route of the LangGraph server API that Mandate does not serve yet."""

    code = "not_implemented"


class RunInProgressError(ServiceError):
    """Raised when deleting a run that is still executing."""

    code = "run_in_progress"


class RecursionLimitError(ServiceError):
    """Raised when a run takes more steps than its assistant's ``recursion_limit`` allows."""

    code = "recursion_limit_reached"


class AssistantError(ServiceError):
    """Raised when an assistant cannot be created, changed, found or used."""

    code = "assistant_error"


class AssistantExistsError(AssistantError):
    """Raised when creating an assistant whose id is taken in the tenant (or is a system assistant's)."""

    code = "assistant_exists"


class AssistantAdminRequiredError(AssistantError):
    """Raised when OpenFGA does not make the caller ``assistant_admin`` of their tenant."""

    code = "assistant_admin_required"


class AssistantReadOnlyError(AssistantError):
    """Raised when changing or deleting a built-in system assistant (shared by every tenant)."""

    code = "assistant_readonly"


class AssistantQuotaError(AssistantError):
    """Raised when a tenant keeps the most assistants, or an assistant the most versions, allowed."""

    code = "assistant_quota_exceeded"


class AssistantVersionNotFoundError(AssistantError):
    """Raised when an assistant has no such version."""

    code = "assistant_version_not_found"


class GraphNotFoundError(AssistantError):
    """Raised when an assistant names a graph this deployment does not serve."""

    code = "graph_not_found"


class InvalidAssistantConfigError(AssistantError):
    """Raised when an assistant's ``config`` or ``context`` does not fit the graph's settable schema."""

    code = "invalid_assistant_config"


class ApprovalError(ServiceError):
    """Raised when an approval cannot be listed or decided."""

    code = "approval_error"


class ApprovalNotFoundError(ApprovalError):
    """Raised when an approval does not exist in the caller's tenant."""

    code = "approval_not_found"


class ApprovalNotPendingError(ApprovalError):
    """Raised when an approval was already decided or closed (single use), or a concurrent decision won."""

    code = "approval_not_pending"


class ApprovalExpiredError(ApprovalError):
    """Raised when an approval's time ran out."""

    code = "approval_expired"


class NotAllowedToDecideError(ApprovalError):
    """Raised when policy forbids the caller to decide (the requester of a payment, a non-approver)."""

    code = "not_allowed_to_decide"


class DecisionRefusedError(ApprovalError):
    """Raised when the paused run refused the decision (it stays pending)."""

    code = "decision_refused"


class ResourceServerError(ServiceError):
    """Raised by the demo resource servers when they refuse a call."""

    code = "resource_server_error"


class InsufficientScopeError(ResourceServerError):
    """Raised when a delegated token lacks the scope the API requires."""

    code = "insufficient_scope"


class DelegationRequiredError(ResourceServerError):
    """Raised when a token has no ``act`` claim: APIs accept only tokens an agent obtained for a user."""

    code = "delegation_required"


class MissingIdempotencyKeyError(ResourceServerError):
    """Raised when a state-changing call has no ``Idempotency-Key`` header."""

    code = "idempotency_key_required"


STATUS_BY_CODE: dict[str, int] = {
    "approval_not_found": 404,
    "approval_not_pending": 409,
    "approval_expired": 410,
    "not_allowed_to_decide": 403,
    "decision_refused": 409,
    "vault_unavailable": 503,
    "insufficient_scope": 403,
    "delegation_required": 403,
    "idempotency_key_required": 400,
    "thread_not_found": 404,
    "thread_exists": 409,
    "thread_busy": 409,
    "thread_bound": 409,
    "thread_not_interrupted": 409,
    "thread_interrupted": 409,
    "thread_not_idle": 409,
    "thread_quota_exceeded": 429,
    "invalid_state_update": 400,
    "revocation_unavailable": 503,
    "sessions_unavailable": 503,
    "assistant_not_found": 404,
    "assistant_exists": 409,
    "assistant_admin_required": 403,
    "assistant_readonly": 403,
    "assistant_quota_exceeded": 429,
    "assistant_version_not_found": 404,
    "graph_not_found": 404,
    "invalid_assistant_config": 422,
    "control_field_refused": 422,
    "state_fork_refused": 422,
    "unsupported_option": 422,
    "not_implemented": 501,
    "run_in_progress": 409,
    "recursion_limit_reached": 422,
    "run_not_found": 404,
    "invalid_run": 422,
    "invalid_request": 422,
    "principal_immutable": 409,
    "issuer_unavailable": 503,
    "authz_unavailable": 503,
    "audit_unavailable": 503,
    "audit_forbidden": 403,
    "retrieval_unavailable": 503,
    "token_exchange_failed": 502,
    "downstream_failed": 502,
    "unknown_tool": 403,
    "dev_issuer_disabled": 403,
}


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
    if isinstance(exc, (TokenError, StepUpRequiredError)):
        return JSONResponse(
            error_body(exc.code, exc.message),
            status_code=401,
            headers={"WWW-Authenticate": _www_authenticate(request, exc)},
        )
    status = STATUS_BY_CODE.get(exc.code, 500)
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
