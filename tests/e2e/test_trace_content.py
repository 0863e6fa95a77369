"""With MANDATE_TRACE_CONTENT on, spans carry the user's message and tool arguments, redacted."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate.audit import build_tracer_provider
from mandate.runtime.settings import DevSettings, Settings
from mandate.api.app import create_app
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.threads import ask, new_thread, resume
from tests.utils.tokens import login


@pytest.fixture(scope="module")
def capturing_app(stack_settings: Settings) -> Iterator[tuple[str, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    port = free_port()
    settings = DevSettings(
        env="test", port=port, data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
        fga_api_url=stack_settings.fga_api_url, trace_content=True,
    )
    with serve_in_thread(create_app(settings, tracer_provider=build_tracer_provider(spans)), port=port) as url:
        yield url, spans


def test_opt_in_capture_records_redacted_message_and_arguments(capturing_app: tuple[str, InMemorySpanExporter]) -> None:
    url, spans = capturing_app
    alice = login(url, "alice")
    with httpx.Client(base_url=url, timeout=60) as client:
        thread = new_thread(client, alice)
        ask(client, alice, thread, "Open a ticket: mail from mallory@evil.example about card 4111 1111 1111 1111")
        resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
    finished = spans.get_finished_spans()
    inputs = [s.attributes["gen_ai.input.messages"] for s in finished if "gen_ai.input.messages" in (s.attributes or {})]
    arguments = [s.attributes["gen_ai.tool.call.arguments"] for s in finished if "gen_ai.tool.call.arguments" in (s.attributes or {})]
    assert inputs and arguments
    for captured in [*inputs, *arguments]:
        assert "Open a ticket" in captured or "create" in captured or "title" in captured
        assert "mallory@evil.example" not in captured and "4111" not in captured and "[REDACTED]" in captured
