"""Audit: tracer setup, the durable audit log and pseudonymous ids."""

from mandate.audit.errors import AuditError, AuditUnavailableError
from mandate.audit.log import AuditEvent, AuditLog, AuditSink
from mandate.audit.pseudonym import Pseudonymizer
from mandate.audit.queries import MIGRATIONS
from mandate.audit.tracing import TRACER_NAME, build_tracer_provider

__all__ = [
    "MIGRATIONS",
    "TRACER_NAME",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "AuditSink",
    "AuditUnavailableError",
    "Pseudonymizer",
    "build_tracer_provider",
]
