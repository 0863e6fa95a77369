"""Audit: tracer setup, the hash-chained audit log, its verifier, queries, retention and pseudonyms."""

from mandate.audit.errors import (
    AuditError,
    AuditForbiddenError,
    AuditIntegrityError,
    AuditKeyError,
    AuditUnavailableError,
    TracingConfigError,
)
from mandate.audit.log import (
    CHECKPOINT_EVERY,
    COALESCED_ACTOR,
    COALESCED_EVENT,
    DENIAL_WINDOW,
    MAX_DENIAL_KINDS,
    AppendedRecord,
    AuditEvent,
    AuditLog,
    AuditSink,
)
from mandate.audit.pseudonym import Pseudonymizer
from mandate.audit.queries import MIGRATIONS
from mandate.audit.redaction import REDACTED, redact
from mandate.audit.query import (
    AuditQuery,
    AuditRecord,
    export_records,
    open_tool_calls,
    search_records,
    thread_timeline,
)
from mandate.audit.retention import ErasureResult, PurgeResult, erase_subject, purge_records
from mandate.audit.signing import (
    DEV_SIGNING_KEY_FILE,
    Checkpoint,
    CheckpointSigner,
    load_public_key,
    load_signing_key,
    public_key_pem,
)
from mandate.audit.timeline import Person, Timeline, TimelineEntry, build_timeline
from mandate.audit.tracing import TRACER_NAME, build_tracer_provider, tracer_provider_from_env
from mandate.audit.verify import ChainProblem, ChainReport, verify_chains

__all__ = [
    "CHECKPOINT_EVERY",
    "COALESCED_ACTOR",
    "COALESCED_EVENT",
    "DENIAL_WINDOW",
    "DEV_SIGNING_KEY_FILE",
    "MAX_DENIAL_KINDS",
    "MIGRATIONS",
    "REDACTED",
    "TRACER_NAME",
    "AppendedRecord",
    "AuditError",
    "AuditEvent",
    "AuditForbiddenError",
    "AuditIntegrityError",
    "AuditKeyError",
    "AuditLog",
    "AuditQuery",
    "AuditRecord",
    "AuditSink",
    "AuditUnavailableError",
    "ChainProblem",
    "ChainReport",
    "Checkpoint",
    "CheckpointSigner",
    "ErasureResult",
    "Pseudonymizer",
    "Person",
    "PurgeResult",
    "Timeline",
    "TimelineEntry",
    "TracingConfigError",
    "build_timeline",
    "build_tracer_provider",
    "erase_subject",
    "export_records",
    "load_public_key",
    "load_signing_key",
    "open_tool_calls",
    "public_key_pem",
    "redact",
    "purge_records",
    "search_records",
    "thread_timeline",
    "tracer_provider_from_env",
    "verify_chains",
]
