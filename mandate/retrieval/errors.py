"""Errors of the retrieval room.

    RetrievalError
    ├── RetrievalUnavailableError   code=retrieval_unavailable (the vector store failed; nothing returned)
    ├── IngestionError              code=ingestion_failed
    └── IncompleteListingError      code=listing_incomplete (internal: the retriever takes another path)
"""

from mandate.errors import AppError

__all__ = ["IncompleteListingError", "IngestionError", "RetrievalError", "RetrievalUnavailableError"]


class RetrievalError(AppError):
    """Raised when retrieval or ingestion cannot complete."""

    code = "retrieval_error"


class RetrievalUnavailableError(RetrievalError):
    """Raised when the vector store errs during a search; the search returns nothing (fail closed)."""

    code = "retrieval_unavailable"


class IngestionError(RetrievalError):
    """Raised when a document cannot be ingested or deleted."""

    code = "ingestion_failed"


class IncompleteListingError(RetrievalError):
    """Raised when an OpenFGA listing may have been cut short (result cap or deadline).

    Never reaches a caller: the retriever catches it and switches to a path that needs no listing.
    """

    code = "listing_incomplete"
