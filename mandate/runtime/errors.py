"""Errors of the runtime room (``api/errors.py`` maps them to HTTP, by class).

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
    ├── RunFailedError           code=<the run's error code> (500: a run failed on another replica
    │                                                         with an error that is not re-raised as its own class)
    ├── RunCredentialsGoneError  code=reauthentication_required (403: a queued run's sign-in was revoked or erased)
    ├── WebhookNotAllowedError   code=webhook_not_allowed  (422: not on the operator's allow-list)
    ├── LeaseLostError           code=lease_lost           (503: another replica took the run over; internal)
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
    "LeaseLostError",
    "ProjectAuthRefusedError",
    "ProjectError",
    "RecursionLimitError",
    "RunCredentialsGoneError",
    "RunFailedError",
    "WebhookNotAllowedError",
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
]

class ProjectError(AppError):
    """Raised at startup when a project's ``langgraph.json`` or ``mandate.yaml`` is wrong; names file, key and fix."""

    code = "project_invalid"


class ProjectAuthRefusedError(AppError):
    """Raised when a project's own auth handler narrows an action Mandate allowed."""

    code = "project_auth_refused"


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


class RunFailedError(ServiceError):
    """Raised when a run executed elsewhere failed with an error that has no class of its own here."""

    code = "run_failed"


class RunCredentialsGoneError(ServiceError):
    """Raised when a queued or recovered run finds no sign-in of its requester (revoked, or erased)."""

    code = "reauthentication_required"


class WebhookNotAllowedError(ServiceError):
    """Raised when a run's ``webhook`` is not an allowed target (its host is not on the operator's list)."""

    code = "webhook_not_allowed"


class LeaseLostError(ServiceError):
    """Raised when a replica writes for a run whose lease another replica has taken over."""

    code = "lease_lost"


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
