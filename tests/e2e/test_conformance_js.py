"""The official LangGraph JS SDK (``@langchain/langgraph-sdk``, pinned in ``tests/js``) works against Mandate.

A small Node script (``tests/js/conformance.mjs``) drives the key calls of assistants, threads and
runs with real tokens and prints what it got; this test checks it against the reference OpenAPI
document and Mandate's rules. ``npm ci`` installs the pinned SDK once, when ``node_modules`` is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mandate.runtime.settings import Settings
from tests.utils.conformance import assert_response_shape, assert_shape
from tests.utils.conformance_world import ASSISTANT_ADMINS, granted

JS = Path(__file__).resolve().parents[1] / "js"


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found is not None, f"{name} is not installed (Node.js 20 or newer runs the JS SDK)"
    return found


def _installed() -> None:
    """The pinned SDK in ``tests/js/node_modules`` (``npm ci`` from the lock file, once)."""
    if (JS / "node_modules" / "@langchain" / "langgraph-sdk" / "package.json").is_file():
        return
    result = subprocess.run(
        [_tool("npm"), "ci", "--no-audit", "--no-fund"], cwd=JS, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.fixture(scope="module")
async def admins(stack_settings: Settings) -> AsyncIterator[None]:
    async with granted(stack_settings, ASSISTANT_ADMINS):
        yield


@pytest.fixture(scope="module")
def js_run(base_url: str, token: Callable[..., str], admins: None) -> dict[str, Any]:
    """What the JS SDK got, one call each."""
    _installed()
    env = {
        **os.environ,
        "MANDATE_URL": base_url,
        "ALICE_TOKEN": token("alice"),
        "DAVE_TOKEN": token("dave"),
        "CAROL_TOKEN": token("carol"),
    }
    result = subprocess.run(
        [_tool("node"), "conformance.mjs"], cwd=JS, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    output: dict[str, Any] = json.loads(result.stdout)
    return output


def test_js_sdk_package_is_pinned() -> None:
    manifest = json.loads((JS / "package.json").read_text())
    lock = json.loads((JS / "package-lock.json").read_text())
    pinned = manifest["dependencies"]["@langchain/langgraph-sdk"]
    assert pinned[0].isdigit(), "an exact version, not a range"
    assert lock["packages"]["node_modules/@langchain/langgraph-sdk"]["version"] == pinned


def test_js_sdk_assistants(js_run: dict[str, Any]) -> None:
    assert_response_shape(js_run["assistants_search"], "POST", "/assistants/search")
    assert {"mandate", "supervisor"} <= {a["graph_id"] for a in js_run["assistants_search"]}
    for name in ("assistant_system", "assistant_created", "assistant_updated", "assistant_latest"):
        assert_shape(js_run[name], "Assistant")
    assert_shape(js_run["assistant_schemas"], "GraphSchema")
    assert_response_shape(js_run["assistant_graph"], "GET", "/assistants/{assistant_id}/graph")
    assert js_run["assistant_created"]["config"] == {"tags": ["js"]}
    assert (js_run["assistant_updated"]["version"], js_run["assistant_updated"]["name"]) == (2, "JS team 2")
    assert [v["version"] for v in js_run["assistant_versions"]] == [2, 1]
    assert (js_run["assistant_latest"]["version"], js_run["assistant_latest"]["name"]) == (1, "JS team")
    assert js_run["assistant_count"] == 1


def test_js_sdk_assistant_refusals_are_mandates_codes(js_run: dict[str, Any]) -> None:
    assert js_run["alice_create"] == {"status": 403, "code": "assistant_admin_required"}
    assert js_run["carol_get"] == {"status": 404, "code": "assistant_not_found"}
    assert js_run["control_field"] == {"status": 422, "code": "control_field_refused"}
    assert js_run["assistant_after_delete"] == {"status": 404, "code": "assistant_not_found"}


def test_js_sdk_threads(js_run: dict[str, Any]) -> None:
    assert_shape(js_run["thread_created"], "Thread")
    assert_shape(js_run["thread_updated"], "Thread")
    assert js_run["thread_updated"]["metadata"] == {"sdk": "js", "stage": "2"}
    assert_response_shape(js_run["threads_search"], "POST", "/threads/search")
    assert js_run["thread_created"]["thread_id"] in [t["thread_id"] for t in js_run["threads_search"]]
    assert_shape(js_run["state"], "ThreadState")
    assert js_run["state"]["interrupts"][0]["value"]["kind"] == "consent"
    assert_response_shape(js_run["history"], "POST", "/threads/{thread_id}/history")
    assert_shape(js_run["state_update"], "ThreadStateUpdateResponse")
    assert js_run["state_fork"] == {"status": 422, "code": "state_fork_refused"}
    assert js_run["carol_thread"] == {"status": 404, "code": "thread_not_found"}
    assert js_run["thread_after_delete"] == {"status": 404, "code": "thread_not_found"}


def test_js_sdk_runs_stream_with_events_and_wait_through_consent(js_run: dict[str, Any]) -> None:
    events = js_run["stream_events"]
    assert events[0] == "metadata" and events[-1] == "end"
    assert {"values", "updates", "events"} <= set(events)
    assert {"event", "name", "run_id", "data", "metadata", "tags"} <= set(js_run["stream_event_sample"])
    assert "js" in js_run["stream_event_sample"]["tags"], "the assistant's tags apply"
    assert "net 45" in js_run["stream_last_values"]["messages"][-1]["content"]
    assert js_run["stream_run_created"]["thread_id"] == js_run["thread_created"]["thread_id"]
    assert js_run["paused"]["__interrupt__"][0]["value"]["kind"] == "consent"
    assert "create_ticket: done" in js_run["resumed"]["messages"][-1]["content"]
    assert js_run["steering"] == {"status": 422, "code": "control_field_refused"}
    assistant = js_run["assistant_created"]["assistant_id"]
    assert {s["metadata"]["assistant_id"] for s in js_run["history"] if "run_id" in s["metadata"]} == {assistant}


def test_js_sdk_background_and_stateless_runs(js_run: dict[str, Any]) -> None:
    assert_shape(js_run["background"], "Run")
    assert_shape(js_run["run"], "Run")
    assert js_run["run"]["status"] == "success"
    assert_response_shape(js_run["runs_list"], "GET", "/threads/{thread_id}/runs")
    assert "net 45" in js_run["joined"]["messages"][-1]["content"]
    assert "net 45" in js_run["stateless_wait"]["messages"][-1]["content"]
    assert js_run["stateless_thread_after"] == {"status": 404, "code": "thread_not_found"}
    assert js_run["stateless_stream"][0] == "metadata" and js_run["stateless_stream"][-1] == "end"
