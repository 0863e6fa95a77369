"""Serving an example project (``examples/<name>/langgraph.json``) on the session's Postgres and OpenFGA."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient

from mandate.api.app import create_app
from mandate.audit import build_tracer_provider
from mandate.runtime.settings import DevSettings, Settings
from tests.utils.servers import serve_in_thread
from tests.utils.threads import bearer
from tests.utils.tokens import login

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@contextmanager
def served_project(stack_settings: Settings, project: str | Path, *, port: int, env: dict[str, str]) -> Iterator[str]:
    """Mandate serving ``examples/<project>`` (or the ``langgraph.json`` at a path) at ``port``, with ``env``
    set while it runs (the project's ``${NAME}`` values); yields its URL."""
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        settings = DevSettings(
            env="test", port=port, data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
            fga_api_url=stack_settings.fga_api_url,
            project=project if isinstance(project, Path) else EXAMPLES / project / "langgraph.json",
        )
        with serve_in_thread(create_app(settings, tracer_provider=build_tracer_provider()), port=port) as url:
            yield url


@contextmanager
def sdk_clients(url: str) -> Iterator[object]:
    """A factory of the official SDK's clients signed in as demo users; all closed on exit."""
    opened: list[SyncLangGraphClient] = []

    def signed_in(user: str, *, otp: str | None = None) -> SyncLangGraphClient:
        opened.append(get_sync_client(url=url, api_key=None, headers=bearer(login(url, user, otp=otp))))
        return opened[-1]

    try:
        yield signed_in
    finally:
        for client in opened:
            client.close()
