"""``/audit``: only OpenFGA auditors of the caller's tenant read its trail, resolved and in order.

Refused reads are recorded without letting a refused caller flood the trail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mandate.audit import DENIAL_WINDOW, Pseudonymizer, build_tracer_provider
from mandate.auth import Relationship, ensure_store_and_model
from mandate.auth import vocabulary as fga
from mandate.runtime.settings import DevSettings, Settings
from mandate.api.app import create_app
from mandate.runtime.services import MODEL_PATH
from mandate.runtime.settings import DEV_ISSUER_KEY, DEV_SECRET_PLACEHOLDER
from tests.audit.helpers import audit_store_refuses
from tests.utils.servers import free_port, serve_in_thread
from tests.utils.services import authorizer
from tests.utils.threads import ask, bearer, new_thread, resume
from tests.utils.tokens import login

AUDITORS = [
    Relationship(fga.user(DEV_ISSUER_KEY, "dave"), fga.AUDITOR, fga.tenant("acme")),
    Relationship(fga.user(DEV_ISSUER_KEY, "carol"), fga.AUDITOR, fga.tenant("globex")),
]


@pytest.fixture(scope="module")
async def auditors(stack_settings: Settings) -> AsyncIterator[None]:
    """dave audits acme and carol audits globex, in the real OpenFGA, for this module only."""
    store_id, model_id = await ensure_store_and_model(
        api_url=stack_settings.fga_api_url, store_name=stack_settings.fga_store_name, model_path=MODEL_PATH
    )
    authz = authorizer(stack_settings.fga_api_url, store_id, model_id)
    await authz.write(writes=AUDITORS)
    try:
        yield
    finally:
        await authz.write(deletes=AUDITORS)
        await authz._client.close()  # noqa: SLF001  (test teardown of the SDK client)


def _pseudonym(settings: Settings, user: str) -> str:
    return Pseudonymizer(DEV_SECRET_PLACEHOLDER.encode())(settings.dev_issuer_url, user)


def _ticket_thread(client: httpx.Client, token: Callable[..., str], title: str) -> str:
    alice = token("alice")
    thread = new_thread(client, alice)
    ask(client, alice, thread, f"Open a ticket: {title}")
    resume(client, alice, thread, {"decisions": [{"type": "approve"}]})
    return thread


def _get(client: httpx.Client, token: str, path: str, **params: Any) -> httpx.Response:
    return client.get(path, params=params, headers=bearer(token))


def _denied_reads(db: psycopg.Connection, actor: str) -> list[tuple[dict[str, Any], datetime]]:
    """``actor``'s refused reads as stored: (detail, recorded_at), in chain order."""
    rows = db.execute(
        "SELECT detail, recorded_at FROM mandate.audit_records"
        " WHERE event = 'audit.read' AND decision = 'denied' AND actor = %s ORDER BY seq",
        (actor,),
    ).fetchall()
    return [(detail, recorded_at) for detail, recorded_at in rows]


def _attempts(details: list[dict[str, Any]]) -> int:
    """The refused reads records stand for: one each, or the repeats a summary counts."""
    return sum(detail.get("repeated", 1) for detail in details)


# First in the module: dave must not be an auditor yet (the ``auditors`` fixture makes him one).
def test_audit_api_coalesces_a_flood_of_refused_reads_and_counts_them_all_at_shutdown(
    stack_settings: Settings, db: psycopg.Connection
) -> None:
    port = free_port()
    settings = DevSettings(
        env="test", port=port, data_dir=stack_settings.data_dir, database_url=stack_settings.database_url,
        fga_api_url=stack_settings.fga_api_url,
    )
    alice, dave = _pseudonym(settings, "alice"), _pseudonym(settings, "dave")
    app = create_app(settings, tracer_provider=build_tracer_provider(InMemorySpanExporter()))
    with serve_in_thread(app, port=port) as url, httpx.Client(base_url=url, timeout=60) as client:
        flooder = login(url, "alice")
        assert _get(client, flooder, "/audit").status_code == 403
        assert [detail for detail, _ in _denied_reads(db, alice)] == [{}]  # the first, written at once
        assert all(_get(client, flooder, "/audit").status_code == 403 for _ in range(499))
        assert _get(client, login(url, "dave"), "/audit/open").status_code == 403
        assert [detail for detail, _ in _denied_reads(db, dave)] == [{}]  # another member's first, at once
        seen = _get(client, login(url, "bob"), "/audit", event="audit.read", decision="denied",
                    user="alice").json()["records"]
        assert (seen[-1]["detail"], seen[-1]["actor_identity"]["subject"]) == ({}, "alice")
    stored = _denied_reads(db, alice)  # the service wrote the last window's count as it shut down
    details = [detail for detail, _ in stored]
    assert details[0] == {} and all(detail["repeated"] > 0 for detail in details[1:])
    assert _attempts(details) == 500
    flood_took = stored[-1][1] - stored[0][1]
    assert len(details) <= 2 + flood_took / DENIAL_WINDOW  # the first, then one summary per window at most


@pytest.mark.usefixtures("auditors")
def test_audit_api_refuses_non_auditors_and_records_the_attempt(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings
) -> None:
    def alices_refusals() -> list[dict[str, object]]:
        return _get(client, token("dave"), "/audit", event="audit.read", decision="denied",
                    user=_pseudonym(stack_settings, "alice")).json()["records"]

    # The API fuzzer may have been refused as alice in this session already, so count what these add.
    before = _attempts([record["detail"] for record in alices_refusals()])
    alice = token("alice")
    for path in ("/audit", "/audit/threads/any/timeline", "/audit/open"):
        response = _get(client, alice, path)
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "audit_forbidden"
    assert _get(client, "not-a-token", "/audit").status_code == 401
    denied = alices_refusals()
    assert denied and denied[-1]["detail"] == {}  # the first refusal is written in full, at once
    # Repeats within a window are counted into its summary, written when the window closes: never more.
    assert _attempts([record["detail"] for record in denied]) - before <= 3


@pytest.mark.usefixtures("auditors")
def test_audit_api_shows_only_the_auditors_tenant(client: httpx.Client, token: Callable[..., str]) -> None:
    thread = _ticket_thread(client, token, "toner empty on floor 2")
    acme = _get(client, token("dave"), "/audit", thread_id=thread).json()["records"]
    assert {r["event"] for r in acme} == {"consent.requested", "consent.decided", "tool.started", "tool.succeeded"}
    assert all(r["tenant"] == "acme" for r in acme)
    assert _get(client, token("carol"), "/audit", thread_id=thread).json()["records"] == []
    assert _get(client, token("carol"), f"/audit/threads/{thread}/timeline").json()["entries"] == []


@pytest.mark.usefixtures("auditors")
def test_audit_api_filters_pages_and_resolves_pseudonyms(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings
) -> None:
    since = datetime.now(UTC).isoformat()
    threads = [_ticket_thread(client, token, f"desk lamp {n}") for n in range(2)]
    dave = token("dave")
    mine = _get(client, dave, "/audit", user="alice", tool="create_ticket", since=since).json()["records"]
    assert {r["thread_id"] for r in mine} == set(threads)
    assert all(r["actor"] == _pseudonym(stack_settings, "alice") for r in mine)
    assert all(r["actor_identity"] == {"issuer": stack_settings.dev_issuer_url, "subject": "alice"} for r in mine)
    started = _get(client, dave, "/audit", agent="agent:executor", event="tool.started", decision="allowed",
                   since=since).json()["records"]
    assert [r["thread_id"] for r in started] == threads[::-1]
    assert _get(client, dave, "/audit", since=since, until=since).json()["records"] == []
    first = _get(client, dave, "/audit", since=since, tool="create_ticket", limit=4).json()
    rest = _get(client, dave, "/audit", since=since, tool="create_ticket", cursor=first["next_cursor"]).json()
    seqs = [r["seq"] for r in first["records"] + rest["records"]]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) == len(set(seqs)) == 8  # 4 records per ticket
    assert rest["next_cursor"] is None
    assert _get(client, dave, "/audit", limit=0).status_code == 422


@pytest.mark.usefixtures("auditors")
def test_audit_api_shows_no_identity_for_a_tampered_directory_entry(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection, stack_settings: Settings
) -> None:
    thread = _ticket_thread(client, token, "chair squeaks")
    alice = _pseudonym(stack_settings, "alice")
    db.execute("UPDATE mandate.audit_subjects SET subject = 'bob' WHERE pseudonym = %s", (alice,))
    try:
        records = _get(client, token("dave"), "/audit", thread_id=thread).json()["records"]
    finally:
        db.execute("UPDATE mandate.audit_subjects SET subject = 'alice' WHERE pseudonym = %s", (alice,))
    assert records and all(r["actor"] == alice and r["actor_identity"] is None for r in records)


@pytest.mark.usefixtures("auditors")
def test_audit_timeline_says_who_did_what_in_order(
    client: httpx.Client, token: Callable[..., str], stack_settings: Settings
) -> None:
    thread = _ticket_thread(client, token, "window will not close")
    body = _get(client, token("dave"), f"/audit/threads/{thread}/timeline").json()
    entries = [(e["event"], e["actor_identity"]["subject"], e["decision"]) for e in body["entries"]]
    assert entries == [("consent.requested", "alice", "asked"), ("consent.decided", "alice", "approve"), ("tool.started", "alice", "allowed"),
                       ("tool.succeeded", "alice", "ok")]
    assert body["open_tool_calls"] == 0
    assert [e["seq"] for e in body["entries"]] == sorted(e["seq"] for e in body["entries"])


@pytest.mark.usefixtures("auditors")
def test_audit_crash_between_start_and_end_leaves_a_visible_open_record(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    ask(client, alice, thread, "Open a ticket: fire door jammed")
    with audit_store_refuses(db, "tool.succeeded"):  # the tool ran; its end never reached the log
        assert resume(client, alice, thread, {"decisions": [{"type": "approve"}]}).status_code == 503
    dave = token("dave")
    timeline = _get(client, dave, f"/audit/threads/{thread}/timeline").json()
    assert timeline["open_tool_calls"] == 1
    assert [e["open"] for e in timeline["entries"] if e["event"] == "tool.started"] == [True]
    still_open = _get(client, dave, "/audit/open", older_than=0).json()["records"]
    assert thread in {r["thread_id"] for r in still_open}
