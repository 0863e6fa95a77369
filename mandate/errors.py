"""The root of every error tree in Mandate.

Each room has its own ``errors.py`` whose base class derives from :class:`AppError`;
``api/errors.py`` maps each error class to an HTTP status, once.

    AppError
    ├── auth.errors.AuthError
    ├── retrieval.errors.RetrievalError
    ├── tools.errors.ToolError
    ├── contract.errors.GraphError
    ├── audit.errors.AuditError
    └── runtime.errors.ServiceError
"""

__all__ = ["AppError"]


class AppError(Exception):
    """Raised for every failure Mandate reports to a caller; carries a stable ``code``."""

    code: str = "internal_error"
    """Stable, documented machine code; clients match on this, never on the message."""

    def __init__(self, message: str = "", *, code: str | None = None) -> None:
        super().__init__(message or self.__doc__ or self.code)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        """The human-readable message, safe to show a client (never a token or a third-party body)."""
        return str(self.args[0]) if self.args else self.code
