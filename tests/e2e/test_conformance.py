"""Every method of the official SDK's ``assistants``, ``threads`` and ``runs`` clients, against Mandate.

Each test calls one method through ``langgraph_sdk.get_client`` and checks the answer against the
reference server's OpenAPI document (shipped with ``langgraph-api``). Methods Mandate refuses by
design, or does not serve yet, are called too: they answer Mandate's JSON error with a stable code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import APIStatusError, ConflictError, NotFoundError, UnprocessableEntityError

from mandate.runtime.settings import Settings
from tests.utils.conformance import NOT_SERVED, assert_response_shape, assert_shape, reference_routes
from tests.utils.conformance_world import ASSISTANT_ADMINS, granted
from tests.utils.threads import bearer, new_thread

QUESTION = "What are the ACME contract terms?"
TICKET = "Open a ticket: projector in room 2 is dead"
MANDATE = "mandate"


def _user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture(scope="module")
async def admins(stack_settings: Settings) -> AsyncIterator[None]:
    """dave administers acme's assistants and carol globex's, in the real OpenFGA, for this module."""
    async with granted(stack_settings, ASSISTANT_ADMINS):
        yield


@pytest.fixture()
async def alice(base_url: str, token: Callable[..., str]) -> AsyncIterator[Any]:
    async with get_client(url=base_url, api_key=None, headers={"Authorization": f"Bearer {token('alice')}"}) as client:
        yield client


@pytest.fixture()
async def dave(base_url: str, token: Callable[..., str], admins: None) -> AsyncIterator[Any]:
    async with get_client(url=base_url, api_key=None, headers={"Authorization": f"Bearer {token('dave')}"}) as client:
        yield client


async def _ran(client: Any, text: str = QUESTION) -> str:
    thread = await client.threads.create()
    await client.runs.wait(thread["thread_id"], MANDATE, input=_user(text))
    return str(thread["thread_id"])


# Assistants.


async def test_sdk_assistants_get_answers_the_reference_assistant_shape(alice: Any) -> None:
    system = await alice.assistants.get(MANDATE)
    assert_shape(system, "Assistant")
    assert system["graph_id"] == MANDATE and system["metadata"] == {"created_by": "system"}
    assert (await alice.assistants.get(system["assistant_id"]))["assistant_id"] == system["assistant_id"]


async def test_sdk_assistants_get_graph_answers_nodes_and_edges(alice: Any) -> None:
    graph = await alice.assistants.get_graph(MANDATE, xray=True)
    assert_response_shape(graph, "GET", "/assistants/{assistant_id}/graph")
    assert {"planner", "consent", "tool_executor"} <= {n["id"] for n in graph["nodes"]}


async def test_sdk_assistants_get_schemas_publish_an_empty_settable_context(alice: Any) -> None:
    schemas = await alice.assistants.get_schemas(MANDATE)
    assert_shape(schemas, "GraphSchema")
    assert "messages" in schemas["input_schema"]["properties"]
    assert schemas["context_schema"] == {"type": "object", "properties": {}, "additionalProperties": False}
    assert set(schemas["config_schema"]["properties"]) == {"tags", "recursion_limit", "configurable"}


async def test_sdk_assistants_get_subgraphs_by_namespace(alice: Any) -> None:
    everything = await alice.assistants.get_subgraphs("supervisor", recurse=True)
    assert_shape(everything, "Subgraphs")
    assert everything, "the supervisor has subgraphs"
    namespace = next(iter(everything))
    one = await alice.assistants.get_subgraphs("supervisor", namespace=namespace)
    assert_shape(one, "Subgraphs")
    assert set(one) == {namespace}


async def test_sdk_assistants_create_update_versions_latest_delete(dave: Any) -> None:
    created = await dave.assistants.create(
        MANDATE, config={"tags": ["team-a"], "recursion_limit": 30}, metadata={"team": "a"}, name="Team A", description="first"
    )
    assert_shape(created, "Assistant")
    assert (created["version"], created["config"]["tags"], created["name"]) == (1, ["team-a"], "Team A")
    again = await dave.assistants.create(MANDATE, assistant_id=created["assistant_id"], if_exists="do_nothing", name="ignored")
    assert again["name"] == "Team A"
    with pytest.raises(ConflictError) as taken:
        await dave.assistants.create(MANDATE, assistant_id=created["assistant_id"])
    assert taken.value.code == "assistant_exists"

    updated = await dave.assistants.update(created["assistant_id"], config={"tags": ["team-b"]}, metadata={"stage": "b"})
    assert_shape(updated, "Assistant")
    assert (updated["version"], updated["config"], updated["metadata"]) == (2, {"tags": ["team-b"]}, {"team": "a", "stage": "b"})
    versions = await dave.assistants.get_versions(created["assistant_id"])
    assert_response_shape(versions, "POST", "/assistants/{assistant_id}/versions")
    assert [v["version"] for v in versions] == [2, 1]
    assert [v["version"] for v in await dave.assistants.get_versions(created["assistant_id"], metadata={"stage": "b"})] == [2]

    back = await dave.assistants.set_latest(created["assistant_id"], 1)
    assert_shape(back, "Assistant")
    assert (back["version"], back["config"]["tags"]) == (1, ["team-a"])
    with pytest.raises(NotFoundError) as missing:
        await dave.assistants.set_latest(created["assistant_id"], 9)
    assert missing.value.code == "assistant_version_not_found"

    assert await dave.assistants.delete(created["assistant_id"]) is None
    with pytest.raises(NotFoundError) as gone:
        await dave.assistants.get(created["assistant_id"])
    assert gone.value.code == "assistant_not_found"


async def test_sdk_assistants_search_filters_sorts_and_pages_to_an_end(dave: Any) -> None:
    tag = "search-probe"
    made = [
        await dave.assistants.create(MANDATE, name=f"Probe {n}", metadata={"probe": tag, "n": n}) for n in ("c", "a", "b")
    ]
    found = await dave.assistants.search(metadata={"probe": tag}, sort_by="name", sort_order="asc")
    assert_response_shape(found, "POST", "/assistants/search")
    assert [a["name"] for a in found] == ["Probe a", "Probe b", "Probe c"]
    assert [a["name"] for a in await dave.assistants.search(name="probe B")] == ["Probe b"]
    assert {a["graph_id"] for a in await dave.assistants.search(graph_id="supervisor")} == {"supervisor"}
    newest = await dave.assistants.search(metadata={"probe": tag})
    assert [a["assistant_id"] for a in newest] == [a["assistant_id"] for a in reversed(made)]

    pages, offset = [], 0
    while page := await dave.assistants.search(metadata={"probe": tag}, limit=2, offset=offset):
        pages.append(page)
        offset += len(page)
        assert len(pages) < 5, "paging never ends"
    assert [len(p) for p in pages] == [2, 1]
    paged = await dave.assistants.search(metadata={"probe": tag}, limit=2, response_format="object")
    assert paged["next"] == "2" and len(paged["assistants"]) == 2
    last = await dave.assistants.search(metadata={"probe": tag}, limit=2, offset=2, response_format="object")
    assert last["next"] is None
    selected = await dave.assistants.search(metadata={"probe": tag}, select=["assistant_id", "name"], limit=1)
    assert set(selected[0]) == {"assistant_id", "name"}
    for assistant in made:
        await dave.assistants.delete(assistant["assistant_id"])


async def test_sdk_assistants_count_matches_search(dave: Any) -> None:
    before = await dave.assistants.count(metadata={"probe": "count"})
    assert isinstance(before, int)
    assert_response_shape(before, "POST", "/assistants/count")
    made = await dave.assistants.create(MANDATE, name="Counted", metadata={"probe": "count"})
    assert await dave.assistants.count(metadata={"probe": "count"}) == before + 1
    assert await dave.assistants.count(graph_id="supervisor") == 1  # the system assistant only
    assert await dave.assistants.count(name="counted") == before + 1
    await dave.assistants.delete(made["assistant_id"])


# Threads.


async def test_sdk_threads_create_get_update_delete(alice: Any) -> None:
    created = await alice.threads.create(metadata={"purpose": "conformance"}, graph_id=MANDATE)
    assert_shape(created, "Thread")
    assert created["metadata"] == {"purpose": "conformance", "graph_id": MANDATE}
    again = await alice.threads.create(thread_id=created["thread_id"], if_exists="do_nothing")
    assert again["thread_id"] == created["thread_id"]
    fetched = await alice.threads.get(created["thread_id"])
    assert_shape(fetched, "Thread")
    updated = await alice.threads.update(created["thread_id"], metadata={"stage": "2"})
    assert_shape(updated, "Thread")
    assert updated["metadata"]["stage"] == "2"
    assert await alice.threads.update(created["thread_id"], metadata={"stage": "3"}, return_minimal=True) is None
    assert (await alice.threads.get(created["thread_id"]))["metadata"]["stage"] == "3"
    assert await alice.threads.delete(created["thread_id"]) is None
    with pytest.raises(NotFoundError) as gone:
        await alice.threads.get(created["thread_id"])
    assert gone.value.code == "thread_not_found"


async def test_sdk_threads_create_refuses_supersteps_and_ttl(alice: Any) -> None:
    superstep = [{"updates": [{"values": {"principal": {"subject": "bob"}}, "as_node": "planner"}]}]
    with pytest.raises(UnprocessableEntityError) as steps:
        await alice.threads.create(supersteps=superstep)
    assert steps.value.code == "control_field_refused"
    with pytest.raises(UnprocessableEntityError) as ttl:
        await alice.threads.create(ttl=5)
    assert ttl.value.code == "unsupported_option"


async def test_sdk_threads_search_sorts_filters_and_selects(alice: Any) -> None:
    probe = {"probe": "thread-search"}
    made = [await alice.threads.create(metadata={**probe, "n": n}) for n in range(3)]
    ids = [t["thread_id"] for t in made]
    newest = await alice.threads.search(metadata=probe, limit=10)
    assert_response_shape(newest, "POST", "/threads/search")
    assert [t["thread_id"] for t in newest] == ids[::-1]
    oldest = await alice.threads.search(metadata=probe, sort_by="created_at", sort_order="asc")
    assert [t["thread_id"] for t in oldest] == ids
    by_id = await alice.threads.search(ids=ids[:2], sort_by="thread_id", sort_order="asc")
    assert [t["thread_id"] for t in by_id] == sorted(ids[:2])
    assert await alice.threads.search(metadata=probe, status="busy") == []
    selected = await alice.threads.search(metadata=probe, select=["thread_id", "status"], limit=1)
    assert set(selected[0]) == {"thread_id", "status"}
    with pytest.raises(UnprocessableEntityError) as values:
        await alice.threads.search(values={"question": "x"})
    assert values.value.code == "unsupported_option"
    for thread in made:
        await alice.threads.delete(thread["thread_id"])


async def test_sdk_threads_count_counts_only_the_callers(alice: Any, base_url: str, token: Callable[..., str]) -> None:
    probe = {"probe": "thread-count"}
    before = await alice.threads.count(metadata=probe)
    made = await alice.threads.create(metadata=probe)
    assert await alice.threads.count(metadata=probe) == before + 1
    assert_response_shape(before, "POST", "/threads/count")
    async with get_client(url=base_url, api_key=None, headers={"Authorization": f"Bearer {token('bob')}"}) as bob:
        assert await bob.threads.count(metadata=probe) == 0
    await alice.threads.delete(made["thread_id"])


async def test_sdk_threads_copy_is_not_served_yet(alice: Any) -> None:
    thread = await alice.threads.create()
    with pytest.raises(APIStatusError) as refused:
        await alice.threads.copy(thread["thread_id"])
    assert (refused.value.status_code, refused.value.code) == (501, "not_implemented")


async def test_sdk_threads_prune_touches_only_the_callers_threads(alice: Any, base_url: str, token: Callable[..., str]) -> None:
    mine = await _ran(alice)
    kept = await _ran(alice)
    async with get_client(url=base_url, api_key=None, headers={"Authorization": f"Bearer {token('dave')}"}) as other:
        daves = await other.threads.create()
        pruned = await alice.threads.prune([mine, daves["thread_id"]])
        assert_shape(pruned, "ThreadPruneResponse")
        assert pruned == {"pruned_count": 1}
        assert (await other.threads.get(daves["thread_id"]))["thread_id"] == daves["thread_id"]
    with pytest.raises(NotFoundError):
        await alice.threads.get(mine)
    history = await alice.threads.get_history(kept, limit=50)
    assert len(history) > 1
    assert await alice.threads.prune([kept], strategy="keep_latest") == {"pruned_count": 1}
    latest = await alice.threads.get_history(kept, limit=50)
    assert [s["checkpoint"]["checkpoint_id"] for s in latest] == [history[0]["checkpoint"]["checkpoint_id"]]


async def test_sdk_threads_get_state_and_at_a_checkpoint(alice: Any) -> None:
    thread = await alice.threads.create()
    await alice.runs.wait(thread["thread_id"], MANDATE, input=_user(TICKET))
    state = await alice.threads.get_state(thread["thread_id"])
    assert_shape(state, "ThreadState")
    assert state["next"] == ["consent"] and state["interrupts"][0]["value"]["kind"] == "consent"
    with_subgraphs = await alice.threads.get_state(thread["thread_id"], subgraphs=True)
    assert_shape(with_subgraphs, "ThreadState")
    parent = state["parent_checkpoint"]
    at = await alice.threads.get_state(thread["thread_id"], checkpoint_id=parent["checkpoint_id"])
    assert_shape(at, "ThreadState")
    assert at["checkpoint"]["checkpoint_id"] == parent["checkpoint_id"]
    posted = await alice.threads.get_state(thread["thread_id"], checkpoint=parent)
    assert posted["checkpoint"]["checkpoint_id"] == parent["checkpoint_id"]


async def test_sdk_threads_update_state_adds_user_messages_on_the_latest_checkpoint(alice: Any) -> None:
    thread_id = await _ran(alice)
    state = await alice.threads.get_state(thread_id)
    written = await alice.threads.update_state(thread_id, _user("and the payment terms?"), checkpoint=state["checkpoint"])
    assert_shape(written, "ThreadStateUpdateResponse")
    assert written["checkpoint"]["checkpoint_id"] != state["checkpoint"]["checkpoint_id"]
    after = await alice.threads.get_state(thread_id)
    assert after["values"]["messages"][-1]["content"] == "and the payment terms?"
    assert after["metadata"]["source"] == "update" and after["metadata"]["user_id"]
    unchanged = await alice.threads.update_state(thread_id, None)
    assert unchanged["checkpoint"]["checkpoint_id"] == written["checkpoint"]["checkpoint_id"]


async def test_sdk_threads_update_state_refuses_forks_nodes_and_threads_that_never_ran(alice: Any) -> None:
    thread_id = await _ran(alice)
    state = await alice.threads.get_state(thread_id)
    with pytest.raises(UnprocessableEntityError) as fork:
        await alice.threads.update_state(thread_id, _user("x"), checkpoint=state["parent_checkpoint"])
    assert fork.value.code == "state_fork_refused"
    with pytest.raises(UnprocessableEntityError) as as_node:
        await alice.threads.update_state(thread_id, _user("x"), as_node="tool_executor")
    assert as_node.value.code == "invalid_request"
    with pytest.raises(UnprocessableEntityError) as control:
        await alice.threads.update_state(thread_id, {"principal": {"subject": "bob"}})
    assert control.value.code == "invalid_request"
    fresh = await alice.threads.create()
    with pytest.raises(APIStatusError) as never_ran:
        await alice.threads.update_state(fresh["thread_id"], None)
    assert (never_ran.value.status_code, never_ran.value.code) == (400, "invalid_state_update")


async def test_sdk_threads_get_history_filters_by_run(alice: Any) -> None:
    thread = await alice.threads.create()
    first = await alice.runs.create(thread["thread_id"], MANDATE, input=_user(QUESTION))
    await alice.runs.join(thread["thread_id"], first["run_id"])
    second = await alice.runs.create(thread["thread_id"], MANDATE, input=_user("And the notice period?"))
    await alice.runs.join(thread["thread_id"], second["run_id"])
    history = await alice.threads.get_history(thread["thread_id"], limit=100)
    assert_response_shape(history, "POST", "/threads/{thread_id}/history")
    assert {s["metadata"].get("run_id") for s in history} == {first["run_id"], second["run_id"]}
    of_first = await alice.threads.get_history(thread["thread_id"], limit=100, metadata={"run_id": first["run_id"]})
    assert of_first and {s["metadata"]["run_id"] for s in of_first} == {first["run_id"]}
    older = await alice.threads.get_history(thread["thread_id"], limit=100, before=history[0]["checkpoint"])
    assert len(older) == len(history) - 1


async def test_sdk_threads_state_and_history_of_a_subgraph(alice: Any) -> None:
    thread = await alice.threads.create()
    await alice.runs.wait(thread["thread_id"], "supervisor", input=_user(TICKET))
    state = await alice.threads.get_state(thread["thread_id"], subgraphs=True)
    assert_shape(state, "ThreadState")
    [paused] = [t for t in state["tasks"] if t["state"]]
    assert_shape(paused["state"], "ThreadState")
    namespace = paused["state"]["checkpoint"]["checkpoint_ns"]
    inner = await alice.threads.get_history(thread["thread_id"], checkpoint={"checkpoint_ns": namespace}, limit=50)
    assert inner and {s["checkpoint"]["checkpoint_ns"] for s in inner} == {namespace}
    assert await alice.threads.get_history(thread["thread_id"], checkpoint={"checkpoint_ns": "nope:1"}) == []


async def test_sdk_threads_join_stream_is_not_served_yet(alice: Any) -> None:
    thread = await alice.threads.create()
    with pytest.raises(APIStatusError) as refused:
        async for _ in await alice.threads.join_stream(thread["thread_id"]):
            pass
    assert (refused.value.status_code, refused.value.code) == (501, "not_implemented")


async def test_sdk_threads_stream_protocol_is_not_served_yet(alice: Any) -> None:
    thread = await alice.threads.create()
    with pytest.raises(Exception, match="501|not_implemented|not served"):  # noqa: PT011  (the protocol transport's own error type)
        async with alice.threads.stream(thread["thread_id"], assistant_id=MANDATE) as stream:
            await stream.run.start(input=_user(QUESTION))


# Runs.


async def test_sdk_runs_stream_on_a_thread(alice: Any) -> None:
    thread = await alice.threads.create()
    created: list[Any] = []
    parts = [
        part
        async for part in alice.runs.stream(
            thread["thread_id"], MANDATE, input=_user(QUESTION), stream_mode=["values", "updates"], on_run_created=created.append
        )
    ]
    assert [p.event for p in parts][0] == "metadata" and parts[-1].event == "end"
    assert {"values", "updates"} <= {p.event for p in parts}
    assert created[0]["thread_id"] == thread["thread_id"]
    run = await alice.runs.get(thread["thread_id"], created[0]["run_id"])
    assert_shape(run, "Run")
    assert run["status"] == "success"


async def test_sdk_runs_create_on_a_thread_and_join(alice: Any) -> None:
    thread = await alice.threads.create()
    run = await alice.runs.create(thread["thread_id"], MANDATE, input=_user(QUESTION), metadata={"probe": "create"})
    assert_shape(run, "Run")
    assert run["metadata"] == {"probe": "create"} and run["assistant_id"] == (await alice.assistants.get(MANDATE))["assistant_id"]
    values = await alice.runs.join(thread["thread_id"], run["run_id"])
    assert_response_shape(values, "GET", "/threads/{thread_id}/runs/{run_id}/join")
    assert "net 45" in values["messages"][-1]["content"]


async def test_sdk_runs_create_batch_runs_each_on_its_own_thread(alice: Any) -> None:
    runs = await alice.runs.create_batch(
        [{"assistant_id": MANDATE, "input": _user(QUESTION)}, {"assistant_id": MANDATE, "input": _user("What is on the roadmap?")}]
    )
    assert_response_shape(runs, "GET", "/threads/{thread_id}/runs")
    assert len({r["thread_id"] for r in runs}) == 2


async def test_sdk_runs_wait_on_a_thread(alice: Any) -> None:
    thread = await alice.threads.create()
    created: list[Any] = []
    values = await alice.runs.wait(thread["thread_id"], MANDATE, input=_user(QUESTION), on_run_created=created.append)
    assert_response_shape(values, "POST", "/threads/{thread_id}/runs/wait")
    assert "net 45" in values["messages"][-1]["content"]
    assert created and created[0]["thread_id"] == thread["thread_id"]


async def test_sdk_runs_list_and_get_filter_by_status(alice: Any) -> None:
    thread = await alice.threads.create()
    await alice.runs.wait(thread["thread_id"], MANDATE, input=_user(TICKET))
    await alice.runs.wait(thread["thread_id"], MANDATE, command={"resume": {"decisions": [{"type": "approve"}]}})
    runs = await alice.runs.list(thread["thread_id"])
    assert_response_shape(runs, "GET", "/threads/{thread_id}/runs")
    assert [r["status"] for r in runs] == ["success", "interrupted"]
    assert [r["status"] for r in await alice.runs.list(thread["thread_id"], status="interrupted")] == ["interrupted"]
    assert_shape(await alice.runs.get(thread["thread_id"], runs[0]["run_id"]), "Run")


async def test_sdk_runs_cancel_a_background_run(alice: Any) -> None:
    thread = await alice.threads.create()
    run = await alice.runs.create(thread["thread_id"], MANDATE, input=_user(TICKET), interrupt_before=["consent"])
    await alice.runs.join(thread["thread_id"], run["run_id"])
    cancelled = await alice.runs.cancel(thread["thread_id"], run["run_id"])
    assert_shape(cancelled, "Run")
    assert cancelled["run_id"] == run["run_id"]


async def test_sdk_runs_cancel_many_answers_204_for_the_callers_runs(alice: Any) -> None:
    thread = await alice.threads.create()
    run = await alice.runs.create(thread["thread_id"], MANDATE, input=_user(QUESTION))
    assert await alice.runs.cancel_many(thread_id=thread["thread_id"], run_ids=[run["run_id"]]) is None
    assert await alice.runs.cancel_many(status="all") is None
    final = await alice.runs.get(thread["thread_id"], run["run_id"])
    assert final["status"] in ("interrupted", "success")


async def test_sdk_runs_join_stream_relays_a_live_run_then_ends(alice: Any) -> None:
    thread = await alice.threads.create()
    run = await alice.runs.create(thread["thread_id"], MANDATE, input=_user(QUESTION), stream_mode=["values", "updates"])
    parts = [p async for p in alice.runs.join_stream(thread["thread_id"], run["run_id"], stream_mode="updates")]
    assert parts[-1].event == "end"
    assert {p.event for p in parts} <= {"metadata", "updates", "end"}
    after = [p async for p in alice.runs.join_stream(thread["thread_id"], run["run_id"])]
    assert [p.event for p in after] == ["values", "end"]
    assert "net 45" in after[0].data["messages"][-1]["content"]


async def test_sdk_runs_delete_removes_a_finished_run_only(alice: Any) -> None:
    thread = await alice.threads.create()
    run = await alice.runs.create(thread["thread_id"], MANDATE, input=_user(QUESTION))
    await alice.runs.join(thread["thread_id"], run["run_id"])
    assert await alice.runs.delete(thread["thread_id"], run["run_id"]) is None
    with pytest.raises(NotFoundError) as gone:
        await alice.runs.get(thread["thread_id"], run["run_id"])
    assert gone.value.code == "run_not_found"
    assert (await alice.threads.get(thread["thread_id"]))["values"]["messages"], "the thread keeps its state"


# The reference API, route by route.


def test_every_reference_route_is_served_or_answers_a_stable_not_served_code(
    client: httpx.Client, token: Callable[..., str]
) -> None:
    served = {(m.upper(), p) for p, ops in client.get("/openapi.json").json()["paths"].items() for m in ops}
    assert client.get("/docs").status_code == 200  # FastAPI's page, outside its own document
    served.add(("GET", "/docs"))
    missing = reference_routes() - served - set(NOT_SERVED)
    assert not missing, f"reference routes neither served nor listed as not served: {sorted(missing)}"
    assert not served & set(NOT_SERVED), "a route listed as not served is served"
    alice = token("alice")
    thread = new_thread(client, alice)
    for (method, path), (status, code) in NOT_SERVED.items():
        concrete = path.replace("{thread_id}", thread).replace("{cron_id}", thread).replace("{assistant_id}", MANDATE)
        response = client.request(method, concrete, json={}, headers=bearer(alice))
        assert (response.status_code, response.json()["code"]) == (status, code), f"{method} {path}: {response.text}"
