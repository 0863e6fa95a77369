"""``/ui/audit``: the payment run as a timeline, for auditors of the tenant only, over real HTTP and in Chromium."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver

from mandate.api.routes.ui import SECURITY_HEADERS
from mandate.auth import Relationship, ensure_store_and_model
from mandate.auth import vocabulary as fga
from mandate.runtime.services import MODEL_PATH
from mandate.runtime.settings import DEV_ISSUER_KEY, Settings
from tests.e2e.test_approver_page import PageSession, page_sign_in
from tests.utils.approvals import OTP, pending_payment
from tests.utils.browser import element, headless_chromium, sign_in, submit, text_of
from tests.utils.services import authorizer
from tests.utils.threads import bearer

SCREENSHOT = Path("/tmp/audit-timeline.png")
PAYMENT_EVENTS = [
    "step_up.required", "step_up.satisfied", "consent.requested", "consent.decided", "tool.started", "tool.succeeded",
]
_ENTRY = re.compile(
    r'<li class="card entry (gate|effect)" id="record-([0-9a-f-]+)" data-event="([^"]+)" data-seq="(\d+)" '
    r'data-trace-id="([0-9a-f]*)" data-chain="([a-z]+)">(.*?)</li>',
    re.S,
)
GLOBEX_AUDITOR = Relationship(fga.user(DEV_ISSUER_KEY, "carol"), fga.AUDITOR, fga.tenant("globex"))


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One timeline entry as the page shows it."""

    record_id: str
    event: str
    seq: int
    trace_id: str
    chain: str
    gate: bool
    text: str
    """Its visible text, tags stripped."""


def _entries(page: str) -> list[Entry]:
    return [
        Entry(record_id=record_id, event=event, seq=int(seq), trace_id=trace_id, chain=chain, gate=kind == "gate",
              text=html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))))
        for kind, record_id, event, seq, trace_id, chain, body in _ENTRY.findall(page)
    ]


def _page(base_url: str, session: PageSession | None, **params: str) -> httpx.Response:
    headers = session.headers if session else {}
    return httpx.get(f"{base_url}/ui/audit", params=params, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def paid_thread(base_url: str, token: Callable[..., str]) -> str:
    """The payment demo, run to its end: alice asks and steps up, bob approves, the payment is made."""
    with httpx.Client(base_url=base_url, timeout=60) as client:
        thread = pending_payment(client, token)
        bob = token("bob", otp=OTP)
        [item] = [a for a in client.get("/approvals", headers=bearer(bob)).json() if a["thread_id"] == thread]
        decided = client.post(f"/approvals/{item['id']}/decision", json={"type": "approve"}, headers=bearer(bob))
        assert decided.status_code == 200 and decided.json()["approval"]["outcome"]["status"] == "succeeded"
    return thread


@pytest.fixture(scope="module")
async def globex_auditor(stack_settings: Settings) -> AsyncIterator[None]:
    """carol audits globex, in the real OpenFGA, for this module only."""
    store_id, model_id = await ensure_store_and_model(
        api_url=stack_settings.fga_api_url, store_name=stack_settings.fga_store_name, model_path=MODEL_PATH
    )
    authz = authorizer(stack_settings.fga_api_url, store_id, model_id)
    await authz.write(writes=[GLOBEX_AUDITOR])
    try:
        yield
    finally:
        await authz.write(deletes=[GLOBEX_AUDITOR])
        await authz._client.close()  # noqa: SLF001  (test teardown of the SDK client)


def _records(db: psycopg.Connection, thread: str) -> list[tuple[str, str, int, str]]:
    return db.execute(
        "SELECT id::text, event, seq, trace_id FROM mandate.audit_records WHERE thread_id = %s ORDER BY seq", (thread,)
    ).fetchall()


def test_audit_page_shows_the_payment_run_to_an_auditor_linked_to_records_and_traces(
    base_url: str, paid_thread: str, db: psycopg.Connection
) -> None:
    answer = _page(base_url, page_sign_in(base_url, "bob"), thread_id=paid_thread)
    assert answer.status_code == 200, answer.text
    for header, value in SECURITY_HEADERS.items():
        assert answer.headers[header] == value
    assert "<script" not in answer.text
    entries = _entries(answer.text)
    assert [(e.record_id, e.event, e.seq, e.trace_id) for e in entries] == _records(db, paid_thread)
    assert [e.event for e in entries] == PAYMENT_EVENTS
    assert all(e.gate for e in entries[:5]) and not entries[5].gate
    assert len({e.trace_id for e in entries}) == 1, "one trace across the pause and bob's resume"
    asked_by = re.search(r'<dd id="asked-by">(.*?)</dd>', answer.text, re.S)
    assert asked_by is not None and asked_by.group(1).startswith("alice")
    step_up, _, asked, decided, started, succeeded = entries
    assert "Step-up asked" in step_up.text and "urn:mandate:acr:mfa" in step_up.text
    assert "Approval asked" in asked.text
    assert "Approval decided: approved" in decided.text and "By bob" in decided.text and "On behalf of alice" in decided.text
    assert f"audience {base_url}/demo/payments, scope payments:write" in started.text
    assert "Decided by bob" in started.text and "Agent agent:executor" in started.text
    assert "Tool succeeded" in succeeded.text and "Outcome" in succeeded.text
    assert {e.chain for e in entries} <= {"sealed", "chained"}
    chain = re.search(r'<dd id="chain-status" class="ok">\s*intact: (\d+) records verified', answer.text)
    assert chain is not None and int(chain.group(1)) >= entries[-1].seq
    assert "Initech" not in answer.text and "EUR" not in answer.text, "records hold no argument values"


def test_audit_page_shows_nothing_to_a_non_auditor(base_url: str, paid_thread: str, db: psycopg.Connection) -> None:
    answer = _page(base_url, page_sign_in(base_url, "alice"), thread_id=paid_thread)
    assert answer.status_code == 403
    assert 'id="refused"' in answer.text and "audit_forbidden" in answer.text
    assert _entries(answer.text) == [] and paid_thread not in answer.text and "psn_" not in answer.text
    assert not any(record_id in answer.text for record_id, *_ in _records(db, paid_thread))


@pytest.mark.usefixtures("globex_auditor")
def test_audit_page_of_another_tenant_shows_none_of_its_records(base_url: str, paid_thread: str) -> None:
    answer = _page(base_url, page_sign_in(base_url, "carol"), thread_id=paid_thread)
    assert answer.status_code == 200, answer.text
    assert _entries(answer.text) == [] and 'id="no-records"' in answer.text
    wide = _page(base_url, page_sign_in(base_url, "carol"), since=(datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
    assert paid_thread not in wide.text and "send_payment" not in wide.text


def test_audit_page_signed_out_or_with_a_revoked_session_shows_only_sign_in(base_url: str, paid_thread: str) -> None:
    anonymous = _page(base_url, None, thread_id=paid_thread)
    assert anonymous.status_code == 200 and 'action="/ui/sign-in"' in anonymous.text
    assert _entries(anonymous.text) == [] and paid_thread not in anonymous.text
    bob = page_sign_in(base_url, "bob")
    signed_out = httpx.post(f"{base_url}/ui/sign-out", data={"csrf": bob.csrf}, headers=bob.headers, timeout=60)
    assert signed_out.status_code == 303
    replayed = _page(base_url, bob, thread_id=paid_thread)  # the copied cookie of an ended session
    assert 'action="/ui/sign-in"' in replayed.text and _entries(replayed.text) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [({"thread_id": "x" * 201}, "thread_id"), ({"since": "yesterday"}, "since"), ({"until": "2026-13-40T99:99"}, "until")],
)
def test_audit_page_refuses_an_oversized_or_malformed_filter(base_url: str, params: dict[str, str], field: str) -> None:
    answer = _page(base_url, page_sign_in(base_url, "bob"), **params)
    assert answer.status_code == 422 and "invalid_request" in answer.text and field in answer.text
    assert _entries(answer.text) == []


def test_audit_page_shows_a_time_range_oldest_first(base_url: str, paid_thread: str, db: psycopg.Connection) -> None:
    bob = page_sign_in(base_url, "bob")
    [(first_at,)] = db.execute(
        "SELECT min(recorded_at) FROM mandate.audit_records WHERE thread_id = %s", (paid_thread,)
    ).fetchall()
    since = first_at.astimezone(UTC).replace(second=0, microsecond=0)
    answer = _page(base_url, bob, since=since.strftime("%Y-%m-%dT%H:%M"))
    entries = _entries(answer.text)
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    ours = {record_id for record_id, *_ in _records(db, paid_thread)}
    assert ours <= {e.record_id for e in entries}
    assert f'href="/ui/audit?thread_id={paid_thread}"' in answer.text
    before = _page(base_url, bob, until=since.strftime("%Y-%m-%dT%H:%M"))
    assert ours.isdisjoint(e.record_id for e in _entries(before.text))


@pytest.fixture(scope="module")
def browser(base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for this module."""
    with headless_chromium(tmp_path_factory.mktemp("chromium-audit")) as driver:
        yield driver


def test_audit_page_in_chromium_from_the_approver_page_to_the_timeline(
    browser: WebDriver, base_url: str, paid_thread: str
) -> None:
    sign_in(browser, base_url, "bob")
    assert element(browser, "#to-audit").get_attribute("href") == f"{base_url}/ui/audit"
    browser.get(f"{base_url}/ui/audit")
    element(browser, "form#filter input[name=thread_id]").send_keys(paid_thread)
    submit(browser, "form#filter button#show")
    assert text_of(browser, "#thread") == paid_thread
    assert text_of(browser, "#asked-by").startswith("alice")
    steps = [link.text for link in browser.find_elements("css selector", "#timeline li.entry h2 a.permalink")]
    assert steps[:4] == ["Step-up asked", "Step-up satisfied", "Approval asked", "Approval decided: approved"]
    assert steps[-1] == "Tool succeeded"
    assert text_of(browser, "#chain-status").startswith("intact")
    browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
