"""The embedded dev stack: starts whatever the settings leave unset (Postgres, OpenFGA).

Used by ``mandate dev`` and by the test fixtures, so both run the same real components.
"""

from __future__ import annotations

from pathlib import Path

from mandate.service._openfga import EmbeddedOpenFGA, ensure_openfga_binary
from mandate.service._postgres import EmbeddedPostgres
from mandate.service.settings import Settings

__all__ = ["DevStack"]

APP_DATABASE = "mandate"
FGA_DATABASE = "openfga"


class DevStack:
    """Embedded Postgres 18 + pgvector and the real OpenFGA server, under ``settings.data_dir``."""

    def __init__(self, settings: Settings, *, fga_grpc_port: int | None = None) -> None:
        self._settings = settings
        self._grpc_port = fga_grpc_port or settings.fga_port + 1
        self._postgres: EmbeddedPostgres | None = None
        self._openfga: EmbeddedOpenFGA | None = None

    def start(self) -> Settings:
        """Start the missing components (idempotent) and return settings that point at them.

        If any component fails to start, the ones already started are stopped again.
        """
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Settings:
        settings = self._settings
        data_dir = Path(settings.data_dir).absolute()
        data_dir.mkdir(parents=True, exist_ok=True)
        update: dict[str, str] = {}
        if not settings.database_url or not settings.fga_api_url:
            self._postgres = EmbeddedPostgres(data_dir)
            self._postgres.start()
        if not settings.database_url:
            assert self._postgres is not None
            update["database_url"] = self._postgres.ensure_database(APP_DATABASE)
        if not settings.fga_api_url:
            assert self._postgres is not None
            self._openfga = EmbeddedOpenFGA(
                binary=ensure_openfga_binary(settings.tools_dir),
                datastore_uri=self._postgres.ensure_database(FGA_DATABASE),
                http_port=settings.fga_port,
                grpc_port=self._grpc_port,
                log_path=data_dir / "openfga.log",
            )
            update["fga_api_url"] = self._openfga.start()
        return settings.model_copy(update=update)

    def stop(self) -> None:
        """Stop what :meth:`start` started (safe to call twice)."""
        if self._openfga is not None:
            self._openfga.stop()
        if self._postgres is not None:
            self._postgres.stop()
