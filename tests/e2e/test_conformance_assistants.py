"""Assistants are tenant-scoped, managed only by OpenFGA's assistant admins, and never touch a control.

A run on an assistant applies its vetted configuration (``tags``, ``recursion_limit``) and nothing a
client could use to steer around identity, grants or gates.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError, PermissionDeniedError, RateLimitError, UnprocessableEntityError

from mandate.auth import Relationship
from mandate.auth import vocabulary as fga
from mandate.runtime.assistants import MAX_ASSISTANTS_PER_TENANT
from mandate.runtime.settings import DEV_ISSUER_KEY, Settings
from tests.utils.conformance import assert_shape, error_of
from tests.utils.conformance_world import ASSISTANT_ADMINS, granted

QUESTION = "What are the ACME contract terms?"
TICKET = "Open a ticket: projector in room 2 is dead"


def _user(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture(scope="module")
async def admins(stack_settings: Settings) -> AsyncIterator[None]:
    async with granted(stack_settings, ASSISTANT_ADMINS):
        yield


def _client(base_url: str, token: str) -> Any:
    return get_client(url=base_url, api_key=None, headers={"Authorization": f"Bearer {token}"})


@pytest.fixture()
async def dave(base_url: str, token: Callable[..., str], admins: None) -> AsyncIterator[Any]:
    async with _client(base_url, token("dave")) as client:
        yield client


@pytest.fixture()
async def alice(base_url: str, token: Callable[..., str]) -> AsyncIterator[Any]:
    async with _client(base_url, token("alice")) as client:
        yield client


@pytest.fixture()
async def carol(base_url: str, token: Callable[..., str], admins: None) -> AsyncIterator[Any]:
    async with _client(base_url, token("carol")) as client:
        yield client


@pytest.fixture()
async def team(dave: Any) -> AsyncIterator[dict[str, Any]]:
    """An acme assistant on the ``mandate`` graph, made by dave (acme's assistant admin)."""
    assistant = await dave.assistants.create("mandate", name="Team", config={"tags": ["team"]}, metadata={"owner": "team"})
    yield assistant
    try:
        await dave.assistants.delete(assistant["assistant_id"])
    except NotFoundError:
        pass


async def test_assistant_users_of_the_tenant_read_and_run_but_only_admins_manage(alice: Any, team: dict[str, Any]) -> None:
    assert (await alice.assistants.get(team["assistant_id"]))["name"] == "Team"
    assert team["assistant_id"] in {a["assistant_id"] for a in await alice.assistants.search(limit=100)}
    thread = await alice.threads.create()
    values = await alice.runs.wait(thread["thread_id"], team["assistant_id"], input=_user(QUESTION))
    assert "net 45" in values["messages"][-1]["content"]
    for attempt in (
        alice.assistants.create("mandate", name="Mine"),
        alice.assistants.update(team["assistant_id"], name="Hijacked"),
        alice.assistants.set_latest(team["assistant_id"], 1),
        alice.assistants.delete(team["assistant_id"]),
    ):
        with pytest.raises(PermissionDeniedError) as refused:
            await attempt
        assert refused.value.code == "assistant_admin_required"
    assert (await alice.assistants.get(team["assistant_id"]))["name"] == "Team"


async def test_assistant_of_another_tenant_does_not_exist_for_them(carol: Any, team: dict[str, Any]) -> None:
    assistant_id = team["assistant_id"]
    for attempt in (
        carol.assistants.get(assistant_id),
        carol.assistants.update(assistant_id, name="Hijacked"),
        carol.assistants.delete(assistant_id),
        carol.assistants.get_versions(assistant_id),
        carol.assistants.set_latest(assistant_id, 1),
        carol.assistants.get_graph(assistant_id),
        carol.assistants.get_schemas(assistant_id),
    ):
        with pytest.raises(NotFoundError) as hidden:
            await attempt
        assert hidden.value.code == "assistant_not_found"
    assert assistant_id not in {a["assistant_id"] for a in await carol.assistants.search(limit=1000)}
    assert await carol.assistants.count(metadata={"owner": "team"}) == 0
    thread = await carol.threads.create()
    with pytest.raises(httpx.HTTPStatusError) as run:
        await carol.runs.wait(thread["thread_id"], assistant_id, input=_user(QUESTION))
    assert error_of(run.value) == (404, "assistant_not_found")


async def test_assistant_id_taken_in_one_tenant_is_free_and_separate_in_another(
    carol: Any, dave: Any, team: dict[str, Any]
) -> None:
    theirs = await carol.assistants.create("mandate", assistant_id=team["assistant_id"], name="Globex's own")
    assert theirs["assistant_id"] == team["assistant_id"]
    assert (await dave.assistants.get(team["assistant_id"]))["name"] == "Team"
    assert (await carol.assistants.get(team["assistant_id"]))["name"] == "Globex's own"
    await carol.assistants.delete(team["assistant_id"])
    assert (await dave.assistants.get(team["assistant_id"]))["name"] == "Team"


async def test_assistant_admin_grant_revoked_takes_effect_at_once(stack_settings: Settings, alice: Any) -> None:
    grant = Relationship(fga.user(DEV_ISSUER_KEY, "alice"), fga.ASSISTANT_ADMIN, fga.tenant("acme"))
    async with granted(stack_settings, [grant]):
        made = await alice.assistants.create("mandate", name="Alice's, briefly")
    with pytest.raises(PermissionDeniedError) as revoked:
        await alice.assistants.update(made["assistant_id"], name="Still mine?")
    assert revoked.value.code == "assistant_admin_required"
    async with granted(stack_settings, [grant]):
        await alice.assistants.delete(made["assistant_id"])


async def test_system_assistants_are_shared_and_read_only(dave: Any, carol: Any) -> None:
    system = await dave.assistants.get("mandate")
    assert (await carol.assistants.get(system["assistant_id"]))["assistant_id"] == system["assistant_id"]
    for attempt in (
        dave.assistants.update(system["assistant_id"], name="Renamed"),
        dave.assistants.delete("mandate"),
        dave.assistants.set_latest("mandate", 1),
    ):
        with pytest.raises(PermissionDeniedError) as refused:
            await attempt
        assert refused.value.code == "assistant_readonly"
    with pytest.raises(ConflictError) as taken:
        await dave.assistants.create("mandate", assistant_id=system["assistant_id"])
    assert taken.value.code == "assistant_exists"
    assert [v["version"] for v in await dave.assistants.get_versions("mandate")] == [1]


@pytest.mark.parametrize(
    ("config", "context", "where"),
    [
        ({"configurable": {"thread_id": "someone-elses"}}, {}, "config.configurable.thread_id"),
        ({}, {"principal": {"subject": "bob", "tenant": "acme"}}, "context.principal"),
        ({}, {"subject_token": "eyJhbGciOi.forged.token"}, "context.subject_token"),
        ({"configurable": {"__pregel_runtime": {}}}, {}, "config.configurable.__pregel_runtime"),
        ({"configurable": {"model": {"tools": ["send_payment"]}}}, {}, "config.configurable.model.tools"),
        ({}, {"policies": {"send_payment": "none"}}, "context.policies"),
        ({}, {"gates": []}, "context.gates"),
        ({"callbacks": []}, {}, "config.callbacks"),
        ({}, {"nested": [{"grants": ["document:acme-payroll"]}]}, "context.nested[0].grants"),
        ({}, {"Principal": {}}, "context.Principal"),
    ],
)
async def test_assistant_configuration_naming_a_control_is_refused(
    dave: Any, config: dict[str, Any], context: dict[str, Any], where: str
) -> None:
    with pytest.raises(UnprocessableEntityError) as refused:
        await dave.assistants.create("mandate", config=config, context=context, name="Steering")
    assert refused.value.code == "control_field_refused"
    assert where in refused.value.message
    assert "eyJ" not in json.dumps(refused.value.body)
    assert await dave.assistants.count(name="Steering") == 0


@pytest.mark.parametrize(
    ("config", "context", "where"),
    [
        ({}, {"model_name": "gpt-5"}, "context"),
        ({"configurable": {"temperature": 0.2}}, {}, "config.configurable"),
        ({"recursion_limit": 10_000}, {}, "config.recursion_limit"),
        ({"recursion_limit": "many"}, {}, "config.recursion_limit"),
        ({"tags": ["x" * 65]}, {}, "config.tags[0]"),
        ({"max_concurrency": 1000}, {}, "config"),
    ],
)
async def test_assistant_configuration_outside_the_graphs_schema_is_refused(
    dave: Any, config: dict[str, Any], context: dict[str, Any], where: str
) -> None:
    with pytest.raises(UnprocessableEntityError) as refused:
        await dave.assistants.create("mandate", config=config, context=context, name="Off-schema")
    assert refused.value.code == "invalid_assistant_config"
    assert refused.value.message.startswith(where)
    assert "gpt-5" not in refused.value.message and "many" not in refused.value.message


async def test_assistant_change_naming_a_control_adds_no_version(dave: Any, team: dict[str, Any]) -> None:
    with pytest.raises(UnprocessableEntityError) as refused:
        await dave.assistants.update(team["assistant_id"], context={"caller": "bob"})
    assert refused.value.code == "control_field_refused"
    with pytest.raises(NotFoundError) as graph:
        await dave.assistants.update(team["assistant_id"], graph_id="not-a-graph")
    assert graph.value.code == "graph_not_found"
    assert [v["version"] for v in await dave.assistants.get_versions(team["assistant_id"])] == [1]


@pytest.mark.parametrize(
    "body",
    [
        {"graph_id": "mandate", "name": "n" * 201},
        {"graph_id": "mandate", "config": {"tags": ["t" * 60] * 300}},
        {"graph_id": "mandate", "assistant_id": "not-a-uuid"},
        {"graph_id": "mandate", "metadata": {"note": "x" * 20_000}},
        {"graph_id": ""},
        {"graph_id": "mandate", "name": "nul\u0000name"},
        {"graph_id": "mandate", "context": {"k\u0000": 1}},
        {"graph_id": "mandate", "config": {"tags": ["a\u0000"]}},
        {"graph_id": "mandate\u0000"},
    ],
)
async def test_assistant_oversized_or_malformed_input_is_422(dave: Any, body: dict[str, Any]) -> None:
    with pytest.raises(UnprocessableEntityError) as refused:
        await dave.http.post("/assistants", json=body)
    assert refused.value.code == "invalid_request"


@pytest.mark.parametrize("body", [{"name": "x\u0000"}, {"graph_id": "\u0000"}, {"metadata": {"a": "\u0000"}}])
async def test_assistant_search_and_count_with_nul_characters_are_422_not_500(dave: Any, body: dict[str, Any]) -> None:
    for path in ("/assistants/search", "/assistants/count"):
        with pytest.raises(UnprocessableEntityError) as refused:
            await dave.http.post(path, json=body)
        assert refused.value.code == "invalid_request"


async def test_assistant_unknown_graph_is_404(dave: Any) -> None:
    with pytest.raises(NotFoundError) as refused:
        await dave.assistants.create("not-a-graph", name="Nowhere")
    assert refused.value.code == "graph_not_found"


async def test_assistant_quota_per_tenant_is_429(carol: Any, db: psycopg.Connection) -> None:
    db.execute(
        """INSERT INTO mandate.assistants (tenant, assistant_id, graph_id, name, created_by)
           SELECT 'globex', gen_random_uuid(), 'mandate', 'filler', 'test' FROM generate_series(1, %s)""",
        (MAX_ASSISTANTS_PER_TENANT,),
    )
    try:
        with pytest.raises(RateLimitError) as full:
            await carol.assistants.create("mandate", name="One too many")
        assert full.value.code == "assistant_quota_exceeded"
    finally:
        db.execute("DELETE FROM mandate.assistants WHERE tenant = 'globex' AND name = 'filler'")
    made = await carol.assistants.create("mandate", name="Fits again")
    await carol.assistants.delete(made["assistant_id"])


async def test_run_on_an_assistant_applies_its_tags_and_names_it_in_every_checkpoint(
    alice: Any, team: dict[str, Any]
) -> None:
    thread = await alice.threads.create()
    parts = [
        p
        async for p in alice.runs.stream(thread["thread_id"], team["assistant_id"], input=_user(QUESTION), stream_mode=["events"])
    ]
    events = [p.data for p in parts if p.event == "events"]
    assert events and all("team" in e["tags"] for e in events if e["run_id"] == events[0]["run_id"])
    run = (await alice.runs.list(thread["thread_id"]))[0]
    assert_shape(run, "Run")
    assert (run["assistant_id"], run["status"]) == (team["assistant_id"], "success")
    history = await alice.threads.get_history(thread["thread_id"], limit=50)
    assert {s["metadata"]["assistant_id"] for s in history} == {team["assistant_id"]}


async def test_run_on_an_assistant_stops_at_its_recursion_limit(dave: Any, alice: Any) -> None:
    short = await dave.assistants.create("mandate", name="Short", config={"recursion_limit": 2})
    thread = await alice.threads.create()
    with pytest.raises(httpx.HTTPStatusError) as stopped:
        await alice.runs.wait(thread["thread_id"], short["assistant_id"], input=_user(QUESTION))
    assert error_of(stopped.value) == (422, "recursion_limit_reached")
    [run] = await alice.runs.list(thread["thread_id"])
    assert (run["status"], run["assistant_id"]) == ("error", short["assistant_id"])
    system = await alice.runs.wait(thread["thread_id"], "mandate", input=_user(QUESTION))
    assert "net 45" in system["messages"][-1]["content"]
    await dave.assistants.delete(short["assistant_id"])


async def test_run_without_an_assistant_reuses_the_threads_and_survives_its_deletion(
    dave: Any, alice: Any, team: dict[str, Any]
) -> None:
    thread = await alice.threads.create()
    paused = await alice.runs.wait(thread["thread_id"], team["assistant_id"], input=_user(TICKET))
    assert paused["__interrupt__"][0]["value"]["kind"] == "consent"
    await dave.assistants.delete(team["assistant_id"])
    done = await alice.http.post(
        f"/threads/{thread['thread_id']}/runs/wait", json={"command": {"resume": {"decisions": [{"type": "approve"}]}}}
    )
    assert "create_ticket: done" in done["messages"][-1]["content"]
    resumed, first = await alice.runs.list(thread["thread_id"])
    assert first["assistant_id"] == team["assistant_id"]
    assert resumed["assistant_id"] == (await alice.assistants.get("mandate"))["assistant_id"]


async def test_run_on_an_assistant_of_another_graph_than_the_threads_is_409(alice: Any) -> None:
    thread = await alice.threads.create()
    await alice.runs.wait(thread["thread_id"], "mandate", input=_user(QUESTION))
    with pytest.raises(httpx.HTTPStatusError) as bound:
        await alice.runs.wait(thread["thread_id"], "supervisor", input=_user(QUESTION))
    assert error_of(bound.value) == (409, "thread_bound")


async def test_run_with_a_forged_assistant_id_is_404(alice: Any) -> None:
    thread = await alice.threads.create()
    for forged in (str(uuid.uuid4()), "../../assistants", "mandate' OR '1'='1"):
        with pytest.raises(httpx.HTTPStatusError) as missing:
            await alice.runs.wait(thread["thread_id"], forged, input=_user(QUESTION))
        assert error_of(missing.value) == (404, "assistant_not_found")
