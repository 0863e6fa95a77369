"""A stack of its own for a drill module: the drills stop and restart its servers, never the session's."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mandate.devstack.stack import DevStack
from mandate.runtime.settings import DevSettings, Settings
from tests.utils.servers import free_port


@contextmanager
def dedicated_stack() -> Iterator[tuple[DevStack, Settings]]:
    """Embedded Postgres and OpenFGA under a new temporary directory; yields the stack and its settings."""
    # Not under pytest's tmp root (see tests/conftest.py: the Postgres server runs as its own user).
    data_dir = Path(tempfile.mkdtemp(prefix="mandate-drill-"))
    # Empty URLs, whatever the environment says (``mandate controls check`` points MANDATE_DATABASE_URL
    # and MANDATE_FGA_API_URL at shared servers): this stack starts and owns its own.
    settings = DevSettings(
        env="test", port=free_port(), data_dir=data_dir, tools_dir=Path(".tools").absolute(), fga_port=free_port(),
        database_url="", fga_api_url="", fga_store_name="mandate",
    )
    stack = DevStack(settings, fga_grpc_port=free_port())
    try:
        yield stack, stack.start()
    finally:
        stack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
