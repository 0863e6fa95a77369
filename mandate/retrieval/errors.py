"""Errors of the retrieval room.

    RetrievalError
    ├── RetrievalUnavailableError   code=retrieval_unavailable (the vector store failed; nothing returned)
    │   └── FeedPositionError       code=acl_feed_position_invalid (the stored change-log position is in the future)
    ├── IngestionError              code=ingestion_failed
    └── IncompleteListingError      code=listing_incomplete (internal: the retriever takes another path)
"""

from mandate.errors import AppError

__all__ = ["FeedPositionError", "IncompleteListingError", "IngestionError", "RetrievalError", "RetrievalUnavailableError"]


class RetrievalError(AppError):
    """Raised when retrieval or ingestion cannot complete."""

    code = "retrieval_error"


class RetrievalUnavailableError(RetrievalError):
    """Raised when the vector store errs during a search; the search returns nothing (fail closed)."""

    code = "retrieval_unavailable"


class FeedPositionError(RetrievalUnavailableError):
    """Raised when the stored position of OpenFGA's change log lies in the future; nothing is returned.

    Following the log from there would skip changes (revocations among them), so retrieval stops
    until an operator resets the position (an older one only costs a replay).
    """

    code = "acl_feed_position_invalid"


class IngestionError(RetrievalError):
    """Raised when a document cannot be ingested or deleted."""

    code = "ingestion_failed"


class IncompleteListingError(RetrievalError):
    """Raised when an OpenFGA listing may have been cut short (result cap or deadline).

    Never reaches a caller: the retriever catches it and switches to a path that needs no listing.
    """

    code = "listing_incomplete"
