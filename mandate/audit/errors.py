"""Errors of the audit room.

    AuditError
    └── AuditUnavailableError   code=audit_unavailable (the durable record could not be written: fail closed)
"""

from mandate.errors import AppError

__all__ = ["AuditError", "AuditUnavailableError"]


class AuditError(AppError):
    """Raised when auditing fails."""

    code = "audit_error"


class AuditUnavailableError(AuditError):
    """Raised when the durable audit record cannot be written; the audited action must not run."""

    code = "audit_unavailable"
