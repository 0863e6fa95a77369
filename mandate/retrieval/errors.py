"""Errors of the retrieval room.

    RetrievalError
    ├── RetrievalUnavailableError   code=retrieval_unavailable (the vector store failed; nothing returned)
    └── IngestionError              code=ingestion_failed
"""

from mandate.errors import AppError

__all__ = ["IngestionError", "RetrievalError", "RetrievalUnavailableError"]


class RetrievalError(AppError):
    """Raised when retrieval or ingestion cannot complete."""

    code = "retrieval_error"


class RetrievalUnavailableError(RetrievalError):
    """Raised when the vector store errs during a search; the search returns nothing (fail closed)."""

    code = "retrieval_unavailable"


class IngestionError(RetrievalError):
    """Raised when a document cannot be ingested."""

    code = "ingestion_failed"
