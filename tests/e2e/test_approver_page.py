"""The approver page in headless Chromium against the running service, real issuer, OpenFGA, Postgres."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import httpx
import psycopg
import pytest
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.utils.approvals import OTP, PAYMENT, payments_of, pending_payment
from tests.utils.browser import element, headless_chromium, sign_in, submit, text_of
from tests.utils.threads import ask, bearer, new_thread, resume

SCREENSHOT = "/tmp/approver-page.png"
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass(frozen=True, kw_only=True, slots=True)
class PageSession:
    """A page session opened over plain HTTP: the cookie's value and the CSRF token its page carries."""

    cookie: str
    csrf: str

    @property
    def headers(self) -> dict[str, str]:
        """The Cookie header that presents this session (from any client: that is what a thief does)."""
        return {"Cookie": f"mandate_ui={self.cookie}"}


def page_sign_in(base_url: str, user: str, *, otp: str | None = None) -> PageSession:
    """Sign in on the approver page the way its form does (login nonce, CSRF), over plain HTTP."""
    with httpx.Client(base_url=base_url, timeout=60) as http:
        form = http.get("/ui")
        answer = http.post(
            "/ui/sign-in",
            data={"username": user, "password": "demo", "otp": otp or "", "csrf": _csrf_of(form.text)},
        )
        assert answer.status_code == 303, answer.text
        cookie = answer.cookies["mandate_ui"]
        queue = http.get("/ui")
        assert queue.status_code == 200 and 'id="signed-in-as"' in queue.text
        return PageSession(cookie=cookie, csrf=_csrf_of(queue.text))


def approval_id_on(page: str, thread: str) -> str:
    """The id of the approval of ``thread`` listed on ``page``."""
    match = re.search(rf'id="approval-([^"]+)" data-thread-id="{thread}"', page)
    assert match is not None, f"thread {thread} is not listed"
    return match.group(1)


def session_key(cookie: str) -> str:
    """How the session row names a cookie's session (its SHA-256; the id itself is never stored)."""
    return hashlib.sha256(cookie.encode()).hexdigest()


def _csrf_of(page: str) -> str:
    match = _CSRF.search(page)
    assert match is not None, page
    return match.group(1)


@pytest.fixture(scope="module")
def browser(base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for this module; each test signs in on a cleared session."""
    assert httpx.get(f"{base_url}/ui").status_code == 200, "create_app must include mandate.api.routes.ui.router"
    with headless_chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def _item(browser: WebDriver, thread: str) -> WebElement:
    return browser.find_element(By.CSS_SELECTOR, f"article.item[data-thread-id='{thread}']")


def _listed(browser: WebDriver, thread: str) -> bool:
    try:
        _item(browser, thread)
    except NoSuchElementException:
        return False
    return True


def _approval_row(db: psycopg.Connection, thread: str) -> tuple[str, datetime, str | None, str | None]:
    row = db.execute(
        "SELECT status, expires_at, decided_by_subject, comment FROM mandate.tool_calls WHERE thread_id = %s "
        "ORDER BY created_at DESC LIMIT 1",
        (thread,),
    ).fetchone()
    assert row is not None
    return row


def _decide(browser: WebDriver, thread: str, decision: str, comment: str = "") -> str:
    """Decide on the page; returns the outcome panel's text."""
    if comment:
        element(browser, f"article.item[data-thread-id='{thread}'] form.decide textarea[name=comment]").send_keys(comment)
    submit(browser, f"article.item[data-thread-id='{thread}'] form.decide button[value={decision}]")
    return text_of(browser, "#outcome")


def _shown_threads(browser: WebDriver) -> list[str]:
    return [str(a.get_attribute("data-thread-id")) for a in browser.find_elements(By.CSS_SELECTOR, "article.item")]


def _queue_of(client: httpx.Client, token: str) -> list[dict[str, object]]:
    """The caller's queue from the JSON API: what the page must show (all of it, or the filtered part)."""
    response = client.get("/approvals", headers=bearer(token))
    assert response.status_code == 200, response.text
    return list(response.json())


def test_approver_page_bob_approves_alice_payment_once(
    browser: WebDriver, base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    sign_in(browser, base_url, "bob", otp=OTP)
    session = browser.get_cookie("mandate_ui")
    assert session is not None
    assert (session["httpOnly"], session["sameSite"], session["path"], session["secure"]) == (True, "Strict", "/ui", False)
    assert session["value"] not in browser.page_source
    assert not session["value"].startswith("eyJ"), "the cookie must hold an opaque session id, not the token"
    row = db.execute(
        "SELECT subject, tenant, revoked_at FROM mandate.ui_sessions WHERE session_key = %s", (session_key(session["value"]),)
    ).fetchone()
    assert row == ("bob", "acme", None)

    item = _item(browser, thread)
    assert item.find_element(By.TAG_NAME, "h2").text == "send_payment risk: financial"
    assert item.find_element(By.CSS_SELECTOR, "dd.requester").text == "alice"
    assert item.find_element(By.CSS_SELECTOR, "dd.agent").text == "agent:executor"
    args = {cell.get_attribute("data-name"): cell.text for cell in item.find_elements(By.CSS_SELECTOR, "td.arg")}
    assert args == {"amount": "250.00 EUR", "currency": "EUR", "recipient": "Initech Services GmbH", "reference": ""}
    assert not item.find_elements(By.CSS_SELECTOR, ".step-up-note"), "bob signed in with MFA: nothing stands in his way"
    assert "Send 250 EUR" not in browser.page_source, "the page shows the call, never the requester's conversation"
    _, expires_at, _, _ = _approval_row(db, thread)
    shown = item.find_element(By.CSS_SELECTOR, "dd.expires time")
    assert datetime.fromisoformat(str(shown.get_attribute("datetime"))) == expires_at
    assert re.search(r"UTC \(in 5\d min\)", shown.find_element(By.XPATH, "..").text)

    item.find_element(By.CSS_SELECTOR, "form.decide textarea[name=comment]").send_keys("invoice 2026-118 checked")
    browser.save_screenshot(SCREENSHOT)
    outcome = _decide(browser, thread, "approve")
    assert outcome.startswith("Approved: send_payment")
    assert re.search(r"send_payment: succeeded \(PAY-\w+\)", outcome), "the outcome, not the conversation"
    assert not _listed(browser, thread)
    status, _, decided_by, comment = _approval_row(db, thread)
    assert (status, decided_by, comment) == ("approved", "bob", "invoice 2026-118 checked")
    [(subject, _, _, body)] = payments_of(db, thread)
    assert subject == "alice" and body["amount"] == 250.0


def test_approver_page_non_approver_sees_nothing_and_sign_out_revokes_the_session(
    browser: WebDriver, base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    sign_in(browser, base_url, "dave", otp=OTP)
    assert not _listed(browser, thread)
    cookie = browser.get_cookie("mandate_ui")
    assert cookie is not None
    copied = {"Cookie": f"mandate_ui={cookie['value']}"}
    assert 'id="signed-in-as"' in client.get("/ui", headers=copied).text, "a copied cookie works until sign-out"
    submit(browser, "#sign-out")
    assert browser.get_cookie("mandate_ui") is None
    signed_out = WebDriverWait(browser, 10).until(expected_conditions.visibility_of_element_located((By.NAME, "username")))
    assert signed_out.is_displayed()
    replayed = client.get("/ui", headers=copied)
    assert replayed.status_code == 200 and 'name="username"' in replayed.text and "signed-in-as" not in replayed.text
    [(revoked_at,)] = db.execute(
        "SELECT revoked_at FROM mandate.ui_sessions WHERE session_key = %s", (session_key(cookie["value"]),)
    ).fetchall()
    assert revoked_at is not None


def test_approver_page_rejected_item_disappears_and_pays_nothing(
    browser: WebDriver, base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    sign_in(browser, base_url, "bob", otp=OTP)
    outcome = _decide(browser, thread, "reject", comment="unknown supplier")
    assert outcome.startswith("Rejected: send_payment")
    assert not _listed(browser, thread)
    browser.get(f"{base_url}/ui")
    assert not _listed(browser, thread)
    status, _, decided_by, comment = _approval_row(db, thread)
    assert (status, decided_by, comment) == ("rejected", "bob", "unknown supplier")
    assert payments_of(db, thread) == []


def test_approver_page_edit_pays_the_edited_amount(
    browser: WebDriver, base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    sign_in(browser, base_url, "bob", otp=OTP)
    item = _item(browser, thread)
    item.find_element(By.TAG_NAME, "summary").click()
    amount = item.find_element(By.NAME, "arg:amount")
    amount.clear()
    amount.send_keys("200")
    submit(browser, f"article.item[data-thread-id='{thread}'] form.edit button[value=edit]")
    assert text_of(browser, "#outcome").startswith("Approved with edits: send_payment")
    [(_, _, _, body)] = payments_of(db, thread)
    assert body["amount"] == 200.0


def test_approver_page_without_mfa_shows_rfc9470_step_up_need(
    browser: WebDriver, base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    sign_in(browser, base_url, "bob")
    note = _item(browser, thread).find_element(By.CSS_SELECTOR, ".step-up-note").text
    assert "second factor" in note and "You can reject without it" in note
    outcome = _decide(browser, thread, "approve")
    assert "insufficient_user_authentication" in outcome
    assert "urn:mandate:acr:mfa" in outcome and "300 seconds" in outcome
    assert "Rejecting it does not" in outcome
    assert _listed(browser, thread)
    assert _approval_row(db, thread)[0] == "pending"
    assert payments_of(db, thread) == []


def test_approver_page_rejects_without_mfa_and_says_so_truly(
    browser: WebDriver, base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    sign_in(browser, base_url, "bob")  # password only: enough to say no, as in the JSON route
    outcome = _decide(browser, thread, "reject", comment="not ours")
    assert outcome.startswith("Rejected: send_payment"), outcome
    assert "Approving" not in outcome and "needs" not in outcome
    assert not _listed(browser, thread)
    status, _, decided_by, _ = _approval_row(db, thread)
    assert (status, decided_by) == ("rejected", "bob")
    assert payments_of(db, thread) == []
    # Another user without MFA (dave, no approver) still cannot reject: the page lists nothing, the route refuses.
    other = pending_payment(client, token)
    dave = page_sign_in(base_url, "dave")
    bob = page_sign_in(base_url, "bob", otp=OTP)
    approval_id = approval_id_on(client.get("/ui", headers=bob.headers).text, other)
    refused = client.post(
        f"/ui/approvals/{approval_id}/decision", data={"type": "reject", "csrf": dave.csrf}, headers=dave.headers
    )
    assert refused.status_code == 403 and "not_allowed_to_decide" in refused.text
    assert _approval_row(db, other)[0] == "pending"


def test_approver_page_shows_the_requesters_reason_as_text(
    browser: WebDriver, base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    plain = pending_payment(client, token)
    # How a requester attaches a reason is the API's job; the page shows what the ledger holds.
    reason = 'Invoice 2026-118 <img src=x id="injected"> due Friday & "urgent"'
    db.execute("UPDATE mandate.tool_calls SET reason = %s WHERE thread_id = %s", (reason, thread))
    sign_in(browser, base_url, "bob", otp=OTP)
    item = _item(browser, thread)
    assert item.find_element(By.CSS_SELECTOR, "dd.reason").text == reason
    assert not browser.find_elements(By.ID, "injected"), "the reason is text, never markup"
    assert not _item(browser, plain).find_elements(By.CSS_SELECTOR, "dd.reason"), "no reason given, none shown"


def test_approver_page_counts_and_filters_the_queue(
    browser: WebDriver, base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    payments = [pending_payment(client, token), pending_payment(client, token)]
    bob_token = token("bob", otp=OTP)
    ticket = new_thread(client, bob_token)
    assert ask(client, bob_token, ticket, "Open a ticket: badge reader at door 3").json()["__interrupt__"][0]["value"]["kind"] == "consent"
    queue = _queue_of(client, bob_token)
    sign_in(browser, base_url, "bob", otp=OTP)
    assert text_of(browser, "#count").startswith(f"{len(queue)} waiting for your decision")
    assert sorted(_shown_threads(browser)) == sorted(str(i["thread_id"]) for i in queue)

    for name, value, expected in (
        ("action", "create_ticket", {ticket}),
        ("requester", "alice", set(payments)),
    ):
        browser.get(f"{base_url}/ui?{urlencode({name: value})}")
        matching = [str(i["thread_id"]) for i in queue if i[name] == value]
        shown = _shown_threads(browser)
        assert expected <= set(shown) and sorted(shown) == sorted(matching), (name, value)
        assert text_of(browser, "#count") == f"{len(queue)} waiting for your decision; {len(matching)} shown."
        selected = element(browser, f"select[name={name}] option[selected]").get_attribute("value")
        assert selected == value

    # Deciding keeps the filter: the page after the decision shows the same slice.
    browser.get(f"{base_url}/ui?{urlencode({'requester': 'bob'})}")
    outcome = _decide(browser, ticket, "reject")
    assert outcome.startswith("Rejected: create_ticket")
    assert all(dd.text == "bob" for dd in browser.find_elements(By.CSS_SELECTOR, "article.item dd.requester"))
    assert element(browser, "select[name=requester] option[selected]").get_attribute("value") == "bob"

    # A filter only narrows what is shown: markup in it stays text, and it reveals nothing to a non-approver.
    browser.get(f"{base_url}/ui?{urlencode({'requester': '<b id=forged>alice</b>'})}")
    assert not browser.find_elements(By.ID, "forged") and not _shown_threads(browser)
    assert text_of(browser, "#none-match").startswith("None of the")
    sign_in(browser, base_url, "dave", otp=OTP)
    browser.get(f"{base_url}/ui?{urlencode({'requester': 'alice', 'action': 'send_payment'})}")
    assert not set(payments) & set(_shown_threads(browser))
    assert [_approval_row(db, t)[0] for t in payments] == ["pending", "pending"]


def test_approver_page_refuses_forged_post_without_csrf_token(
    base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    bob = page_sign_in(base_url, "bob", otp=OTP)
    dave = page_sign_in(base_url, "dave")
    page = client.get("/ui", headers=bob.headers)
    assert page.status_code == 200 and f'data-thread-id="{thread}"' in page.text
    approval_id = approval_id_on(page.text, thread)
    # No token, a made-up one, and another user's genuine one (CSRF is bound to the session id).
    for forged in ({"type": "approve"}, {"type": "approve", "csrf": "0" * 64}, {"type": "approve", "csrf": dave.csrf}):
        response = client.post(f"/ui/approvals/{approval_id}/decision", data=forged, headers=bob.headers)
        assert response.status_code == 403 and "csrf_failed" in response.text
    raw_token = {"Cookie": f"mandate_ui={token('bob', otp=OTP)}"}
    assert "signed-in-as" not in client.get("/ui", headers=raw_token).text, "a raw token is no session id"
    sign_in_without_nonce = client.post("/ui/sign-in", data={"username": "bob", "password": "demo"})
    assert sign_in_without_nonce.status_code == 403 and "mandate_ui=" not in sign_in_without_nonce.headers.get("set-cookie", "")
    assert _approval_row(db, thread)[0] == "pending"
    assert payments_of(db, thread) == []


def _pending_interrupts(client: httpx.Client, token: str, thread: str) -> list[dict[str, object]]:
    """The values the thread's pending interrupts carry, as its owner reads them."""
    answer = client.get(f"/threads/{thread}", headers=bearer(token))
    assert answer.status_code == 200, answer.text
    return [i["value"] for pending in answer.json()["interrupts"].values() for i in pending]


def test_approver_page_pauses_say_the_true_reason(
    browser: WebDriver, base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    alice = token("alice")
    thread = new_thread(client, alice)
    [step_up] = ask(client, alice, thread, PAYMENT).json()["__interrupt__"]
    assert step_up["value"]["kind"] == "step_up"
    assert "second factor (acr urn:mandate:acr:mfa)" in step_up["value"]["description"]
    assert "weaker or older" in step_up["value"]["description"] and "expired" not in step_up["value"]["description"]
    assert resume(client, token("alice", otp=OTP), thread, {}).json()["__interrupt__"][0]["value"]["kind"] == "approval"
    # alice's sign-in, kept for the thread while bob had not decided, expires before he does.
    db.execute("UPDATE mandate.token_vault SET expires_at = now() - interval '1 second' WHERE thread_id = %s", (thread,))
    sign_in(browser, base_url, "bob", otp=OTP)
    assert _decide(browser, thread, "approve").startswith("Approved: send_payment")
    assert "the requester to sign in again" in text_of(browser, "#waiting-for")
    [expired] = _pending_interrupts(client, alice, thread)
    assert (expired["kind"], expired["reason"]) == ("reauthenticate", "token_expired")
    assert "has expired" in str(expired["description"])
    # Resumed with a password-only sign-in: the reason is now its strength, not its age.
    [weak] = resume(client, token("alice"), thread, {}).json()["__interrupt__"]
    assert (weak["value"]["reason"], weak["value"]["acr_values"]) == ("token_too_weak", "urn:mandate:acr:mfa")
    assert "weaker" in weak["value"]["description"] and "expired" not in weak["value"]["description"]
    assert payments_of(db, thread) == []
