"""The peer benchmark's short version: one run of the bench agent through each server, answers and
Mandate's audit rows checked (never its timings). aegra runs from its bench-only virtualenv
(``.bench-venvs/aegra``, made from PyPI on first use, never a project dependency)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from langgraph_sdk import get_client

from bench.peers import servers
from bench.peers.double import QUESTION, ConversionDouble, expected_answer
from bench.peers.drive import WrongAnswerError, check_answer, measure, sdk_runner
from bench.peers.floor import floor_runner
from mandate.runtime.settings import Settings
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.tokens import login


@pytest.fixture(scope="module")
def model_url() -> Iterator[str]:
    with serve_in_thread(ConversionDouble().app()) as url:
        yield url


def _database(url: str, name: str) -> str:
    """A database of its own on the stack's Postgres (created once), as the bench gives each peer."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def _one_run(url: str, headers: dict[str, str]) -> None:
    phase = asyncio.run(measure(sdk_runner(url, lambda _: headers, "bench"), lambda: 0.0, concurrency=1, runs=1, rng=random.Random(1)))
    assert phase.runs == 1 and len(phase.latencies) == 1


def test_the_double_answers_the_script_and_a_wrong_answer_is_caught() -> None:
    assert expected_answer(100) == "100 EUR is 110.00 USD."
    check_answer({"messages": [{"content": "100 EUR is 110.00 USD."}]}, 100)
    with pytest.raises(WrongAnswerError):
        check_answer({"messages": [{"content": "100 EUR is 111.00 USD."}]}, 100)


def test_mandate_serve_runs_the_gated_agent_and_audits_each_tool_call(
    stack_settings: Settings, model_url: str, db: psycopg.Connection, tmp_path: Path
) -> None:
    served = servers.start_mandate(
        database_url=stack_settings.database_url, fga_api_url=stack_settings.fga_api_url, data_dir=stack_settings.data_dir,
        port=free_port(), model_url=model_url, log=tmp_path / "mandate.log",
    )
    try:
        headers = {"Authorization": f"Bearer {login(served.url, 'alice')}"}

        async def ask() -> tuple[str, dict]:
            async with get_client(url=served.url, api_key=None, headers=headers) as client:
                thread = (await client.threads.create())["thread_id"]
                values = await client.runs.wait(thread, "bench", input={"messages": [{"role": "user", "content": QUESTION.format(amount=100)}]})
                return thread, values  # type: ignore[return-value]

        thread, values = asyncio.run(ask())
        check_answer(values, 100)
        assert values["principal"]["subject"] == "alice"
        rows = db.execute(
            "SELECT event, agent, tool, decision FROM mandate.audit_records WHERE thread_id = %s ORDER BY seq", (thread,)
        ).fetchall()
        assert rows == [
            ("tool.started", "agent:bench", "lookup_rate", "allowed"),
            ("tool.succeeded", "agent:bench", "lookup_rate", "ok"),
            ("tool.started", "agent:bench", "convert_currency", "allowed"),
            ("tool.succeeded", "agent:bench", "convert_currency", "ok"),
        ]
        _one_run(served.url, headers)  # the bench's own client path
        # carol (globex) has no grant on the tools: the gate refuses, and the model reports it.
        carol = {"Authorization": f"Bearer {login(served.url, 'carol')}"}
        with pytest.raises(WrongAnswerError):
            _one_run(served.url, carol)
    finally:
        served.stop()
    assert served.cpu_seconds() == 0.0  # a stopped server's tree is gone, not mismeasured


def test_langgraph_dev_runs_the_plain_agent(model_url: str, tmp_path: Path) -> None:
    served = servers.start_langgraph_dev(port=free_port(), model_url=model_url, log=tmp_path / "langgraph-dev.log")
    try:
        assert served.cpu_seconds() > 0
        _one_run(served.url, {})
    finally:
        served.stop()


def test_the_floor_runs_the_plain_agent_in_process(stack_settings: Settings, model_url: str) -> None:
    async def go() -> None:
        async with floor_runner(_database(stack_settings.database_url, "bench_floor"), model_url) as new_client:
            phase = await measure(new_client, lambda: 0.0, concurrency=2, runs=3, rng=random.Random(2))
            assert len(phase.latencies) == 3

    asyncio.run(go())


def test_aegra_runs_the_plain_agent(stack_settings: Settings, model_url: str, tmp_path: Path) -> None:
    aegra = servers.ensure_aegra(tmp_path / "aegra-install.log")  # its bench-only virtualenv, made once (~10 s)
    served = servers.start_aegra(
        aegra=aegra, database_url=_database(stack_settings.database_url, "bench_aegra"),
        port=free_port(), model_url=model_url, workdir=tmp_path, log=tmp_path / "aegra.log",
    )
    try:
        _one_run(served.url, {})
    finally:
        served.stop()
