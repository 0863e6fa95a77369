"""Errors of the audit room.

    AuditError
    ├── AuditUnavailableError   code=audit_unavailable  (the durable record could not be written: fail closed)
    ├── AuditForbiddenError     code=audit_forbidden    (the caller is not an auditor of the tenant)
    ├── AuditKeyError           code=audit_key_invalid  (no usable Ed25519 signing or verification key)
    ├── AuditIntegrityError     code=audit_chain_broken (a chain does not verify; purging it is refused)
    └── TracingConfigError      code=tracing_misconfigured (OTEL_* asks for an exporter this build lacks)
"""

from mandate.errors import AppError

__all__ = [
    "AuditError",
    "AuditForbiddenError",
    "AuditIntegrityError",
    "AuditKeyError",
    "AuditUnavailableError",
    "TracingConfigError",
]


class AuditError(AppError):
    """Raised when auditing fails."""

    code = "audit_error"


class AuditUnavailableError(AuditError):
    """Raised when the durable audit record cannot be written; the audited action must not run."""

    code = "audit_unavailable"


class AuditForbiddenError(AuditError):
    """Raised when a caller who is not an auditor of the tenant asks for its audit trail."""

    code = "audit_forbidden"


class AuditKeyError(AuditError):
    """Raised when the checkpoint signing or verification key is missing or not an Ed25519 key."""

    code = "audit_key_invalid"


class AuditIntegrityError(AuditError):
    """Raised when an operation that needs an intact chain (a purge) finds it broken."""

    code = "audit_chain_broken"


class TracingConfigError(AuditError):
    """Raised when the ``OTEL_*`` variables ask for an exporter or protocol this build does not have."""

    code = "tracing_misconfigured"
