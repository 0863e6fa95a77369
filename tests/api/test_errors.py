"""Every error Mandate can raise on a request has its HTTP status, looked up by class."""

from __future__ import annotations

import importlib
import pkgutil

import mandate
from mandate.api.errors import HTTP_STATUS, status_of
from mandate.errors import AppError

NEVER_ON_A_REQUEST = {
    # Raised at startup or by operator commands, which report them on the terminal.
    "ConfigurationError", "ProjectError", "AuditKeyError", "AuditIntegrityError", "TracingConfigError", "IngestionError",
    "IncompleteListingError", "EvidenceError", "ControlsTableError", "MutationError", "EvidenceRunError",
    # Bases whose every raised subclass is listed.
    "AppError", "AuthError", "AuditError", "RetrievalError", "ToolError", "GraphError", "ServiceError",
    "AssistantError", "ApprovalError", "ResourceServerError",
    # Turned into a refusal inside the run (an audited denial), never an HTTP answer.
    "InvalidToolArgsError",
    # A misconfigured graph: the run ends in error.
    "MandateContextMissingError",
}


def _every_error_class() -> set[type[AppError]]:
    for info in pkgutil.walk_packages(mandate.__path__, "mandate."):
        importlib.import_module(info.name)
    found: set[type[AppError]] = set()
    pending = [AppError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return {cls for cls in found if cls.__module__.startswith("mandate.")}


def _status_of_class(cls: type[AppError]) -> int | None:
    return next((HTTP_STATUS[base] for base in cls.__mro__ if base in HTTP_STATUS), None)


def test_every_request_error_has_a_status_other_than_500() -> None:
    unmapped = sorted(
        cls.__name__ for cls in _every_error_class()
        if cls.__name__ not in NEVER_ON_A_REQUEST and _status_of_class(cls) is None
    )
    assert unmapped == []


def test_a_subclass_answers_as_its_nearest_listed_base() -> None:
    from mandate.auth.errors import ExpiredTokenError, TokenError
    from mandate.runtime.sessions import TokenRevokedError

    assert TokenError in HTTP_STATUS and ExpiredTokenError not in HTTP_STATUS
    assert status_of(ExpiredTokenError()) == 401
    assert status_of(TokenRevokedError()) == 401


def test_an_unlisted_error_answers_500() -> None:
    class Surprise(AppError):
        code = "surprise"

    assert status_of(Surprise()) == 500
