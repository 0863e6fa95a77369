"""The approver page's production sign-in: OIDC code flow + PKCE at Keycloak, in headless Chromium and over HTTP.

bob signs in on Keycloak's own login page (password, then the one-time code), sees only what he
may decide, approves alice's payment once; alice cannot approve her own; signing out ends the
page session (a copied cookie is refused) and, by RP-initiated logout, the Keycloak session too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
from selenium.common.exceptions import NoSuchElementException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from mandate.runtime.settings import Settings
from mandate.devstack.keycloak import EmbeddedKeycloak
from tests.keycloak.helpers import Jar, login_pages, otp_secret, totp
from tests.utils.approvals import payments_of, pending_payment
from tests.utils.browser import PAGE_TIMEOUT, headless_chromium, submit
from tests.utils.threads import ask, bearer, new_thread

_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture(scope="module")
def browser(kc_base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One headless Chromium for this module; each sign-in starts from cleared cookies."""
    with headless_chromium(tmp_path_factory.mktemp("chromium-keycloak")) as driver:
        yield driver


def _wait_for(browser: WebDriver, selector: str) -> None:
    WebDriverWait(browser, PAGE_TIMEOUT).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector))
    )


def _sign_in_at_keycloak(browser: WebDriver, base_url: str, keycloak: EmbeddedKeycloak, user: str) -> None:
    """From the page's sign-in link to Keycloak's login page, password and one-time code, back to the queue."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # Mandate's and Keycloak's alike
    browser.get(f"{base_url}/ui/oidc/login")
    _wait_for(browser, "#username")
    assert browser.current_url.startswith(f"{keycloak.issuer}/"), "the password is typed at Keycloak, never at Mandate"
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys("demo")
    submit(browser, "#kc-login")
    _wait_for(browser, "#otp")  # the page asks for MFA (acr_values), so Keycloak asks for the second factor
    browser.find_element(By.ID, "otp").send_keys(totp(otp_secret(user)))
    submit(browser, "#kc-login")
    _wait_for(browser, "#signed-in-as")
    assert browser.current_url.rstrip("/").endswith("/ui")


def _listed(browser: WebDriver, thread: str) -> bool:
    try:
        browser.find_element(By.CSS_SELECTOR, f"article.item[data-thread-id='{thread}']")
    except NoSuchElementException:
        return False
    return True


def _session_key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def test_bob_signs_in_at_keycloak_with_otp_and_approves_alices_payment_once(
    browser: WebDriver,
    kc_base_url: str,
    keycloak: EmbeddedKeycloak,
    kc_client: httpx.Client,
    kc_token: Callable[..., str],
    kc_db: psycopg.Connection,
    sub: Callable[[str], str],
) -> None:
    thread = pending_payment(kc_client, kc_token)
    alice = kc_token("alice")
    consent_thread = new_thread(kc_client, alice)  # alice's own consent: hers to give, never bob's
    assert ask(kc_client, alice, consent_thread, "Open a ticket: projector broken").json()["__interrupt__"]
    _sign_in_at_keycloak(browser, kc_base_url, keycloak, "bob")
    assert not _listed(browser, consent_thread)
    bobs = {a["thread_id"] for a in kc_client.get("/approvals", headers=bearer(kc_token("bob", otp=True))).json()}
    shown = {e.get_attribute("data-thread-id") for e in browser.find_elements(By.CSS_SELECTOR, "article.item")}
    assert thread in shown and shown <= bobs, "the page shows exactly what bob may decide"
    who = browser.find_element(By.ID, "signed-in-as").text
    assert who == f"{sub('bob')} · acme · urn:mandate:acr:mfa"
    session = browser.get_cookie("mandate_ui")
    assert session is not None and browser.get_cookie("mandate_ui_oidc") is None
    assert (session["httpOnly"], session["sameSite"], session["path"]) == (True, "Strict", "/ui")
    assert not session["value"].startswith("eyJ") and session["value"] not in browser.page_source
    row = kc_db.execute(
        "SELECT issuer, subject, tenant, revoked_at FROM mandate.ui_sessions WHERE session_key = %s",
        (_session_key(session["value"]),),
    ).fetchone()
    assert row == (keycloak.issuer, sub("bob"), "acme", None)

    item = browser.find_element(By.CSS_SELECTOR, f"article.item[data-thread-id='{thread}']")
    assert item.find_element(By.CSS_SELECTOR, "dd.requester").text == sub("alice")
    item.find_element(By.CSS_SELECTOR, "form.decide textarea[name=comment]").send_keys("invoice checked")
    submit(browser, f"article.item[data-thread-id='{thread}'] form.decide button[value=approve]")
    outcome = browser.find_element(By.ID, "outcome").text
    assert outcome.startswith("Approved: send_payment")
    assert re.search(r"send_payment: succeeded \(PAY-\w+\)", outcome)
    assert not _listed(browser, thread)
    [(subject, actor, _, body)] = payments_of(kc_db, thread)
    assert (subject, actor, body["amount"]) == (sub("alice"), "agent-executor", 250.0)
    decided_by = kc_db.execute(
        "SELECT decided_by_subject, comment FROM mandate.tool_calls WHERE thread_id = %s "
        "ORDER BY created_at DESC LIMIT 1",
        (thread,),
    ).fetchone()
    assert decided_by == (sub("bob"), "invoice checked")


def test_alice_signed_in_at_keycloak_cannot_approve_her_own_payment(
    browser: WebDriver,
    kc_base_url: str,
    keycloak: EmbeddedKeycloak,
    kc_client: httpx.Client,
    kc_token: Callable[..., str],
    kc_db: psycopg.Connection,
) -> None:
    thread = pending_payment(kc_client, kc_token)
    _sign_in_at_keycloak(browser, kc_base_url, keycloak, "alice")
    assert not _listed(browser, thread)
    [item] = [
        a
        for a in kc_client.get("/approvals", headers=bearer(kc_token("bob", otp=True))).json()
        if a["thread_id"] == thread
    ]
    cookie = browser.get_cookie("mandate_ui")
    assert cookie is not None
    csrf = _CSRF.search(browser.page_source)
    assert csrf is not None
    forced = kc_client.post(
        f"/ui/approvals/{item['id']}/decision",
        data={"type": "approve", "csrf": csrf.group(1)},
        headers={"Cookie": f"mandate_ui={cookie['value']}"},
    )
    assert forced.status_code == 403 and "not_allowed_to_decide" in forced.text
    assert payments_of(kc_db, thread) == []


def test_sign_out_ends_the_page_session_and_the_keycloak_session(
    browser: WebDriver, kc_base_url: str, keycloak: EmbeddedKeycloak, kc_client: httpx.Client, kc_db: psycopg.Connection
) -> None:
    _sign_in_at_keycloak(browser, kc_base_url, keycloak, "dave")
    cookie = browser.get_cookie("mandate_ui")
    assert cookie is not None
    copied = {"Cookie": f"mandate_ui={cookie['value']}"}
    assert 'id="signed-in-as"' in kc_client.get("/ui", headers=copied).text, "a copied cookie works until sign-out"
    key = _session_key(cookie["value"])
    assert kc_db.execute(
        "SELECT count(*) FROM mandate.token_vault WHERE thread_id IN (%s, %s)",
        (f"ui-session:{key}", f"ui-oidc-id:{key}"),
    ).fetchone() == (2,)

    browser.get(f"{kc_base_url}/ui/oidc/sign-out")
    submit(browser, "#confirm-sign-out")
    _wait_for(browser, "#signed-out")  # back from Keycloak's end_session_endpoint (RP-initiated logout)
    assert browser.current_url == f"{kc_base_url}/ui/oidc/signed-out"
    assert browser.get_cookie("mandate_ui") is None

    replayed = kc_client.get("/ui", headers=copied)
    assert replayed.status_code == 200 and "signed-in-as" not in replayed.text
    [(revoked_at,)] = kc_db.execute(
        "SELECT revoked_at FROM mandate.ui_sessions WHERE session_key = %s", (key,)
    ).fetchall()
    assert revoked_at is not None
    assert kc_db.execute(
        "SELECT count(*) FROM mandate.token_vault WHERE thread_id IN (%s, %s)",
        (f"ui-session:{key}", f"ui-oidc-id:{key}"),
    ).fetchone() == (0,)
    # Keycloak's own session ended too: signing in again asks for the password again.
    browser.get(f"{kc_base_url}/ui/oidc/login")
    _wait_for(browser, "#username")
    assert browser.current_url.startswith(f"{keycloak.issuer}/")


def _start(kc_base_url: str, http: httpx.Client, **params: str) -> tuple[str, dict[str, list[str]], str]:
    """GET /ui/oidc/login: the authorization URL, its query, and the sealed sign-in cookie."""
    answer = http.get(f"{kc_base_url}/ui/oidc/login", params=params)
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    return location, parse_qs(urlsplit(location).query), answer.cookies["mandate_ui_oidc"]


def test_sign_in_request_uses_pkce_state_nonce_and_asks_for_mfa(
    kc_base_url: str, keycloak: EmbeddedKeycloak, kc_settings: Settings
) -> None:
    with httpx.Client(timeout=60) as http:
        location, query, sealed = _start(kc_base_url, http)
        assert location.startswith(f"{keycloak.issuer}/protocol/openid-connect/auth?")
        assert query["response_type"] == ["code"] and query["client_id"] == ["mandate-approver-page"]
        assert query["redirect_uri"] == [f"{kc_base_url}/ui/oidc/callback"]
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
        assert len(query["state"][0]) >= 43 and len(query["nonce"][0]) >= 43 and query["state"] != query["nonce"]
        assert query["acr_values"] == ["urn:mandate:acr:mfa"] and "max_age" not in query
        for secret in (query["state"][0], query["nonce"][0]):
            assert secret not in sealed  # the cookie is sealed, not signed
        _, stepped, _ = _start(kc_base_url, http, step_up="1")
        assert stepped["max_age"] == ["300"] and stepped["acr_values"] == ["urn:mandate:acr:mfa"]
    assert kc_settings.ui_client_secret.get_secret_value() not in location


def test_callback_refuses_missing_sign_in_wrong_state_other_issuer_and_a_replayed_code(
    kc_base_url: str, keycloak: EmbeddedKeycloak, kc_db: psycopg.Connection
) -> None:
    with httpx.Client(timeout=60, follow_redirects=False) as http:
        missing = http.get(f"{kc_base_url}/ui/oidc/callback", params={"code": "x", "state": "y"})
        assert missing.status_code == 400 and "sign_in_expired" in missing.text

        location, query, sealed = _start(kc_base_url, http)
        state = query["state"][0]
        pending = {"Cookie": f"mandate_ui_oidc={sealed}"}
        wrong_state = http.get(f"{kc_base_url}/ui/oidc/callback", params={"code": "x", "state": "y"}, headers=pending)
        assert wrong_state.status_code == 400 and "state_mismatch" in wrong_state.text
        mixed_up = http.get(
            f"{kc_base_url}/ui/oidc/callback",
            params={"code": "x", "state": state, "iss": "https://evil.example"},
            headers=pending,
        )
        assert mixed_up.status_code == 400 and "issuer_mismatch" in mixed_up.text

        # The real thing, driven over HTTP: Keycloak's pages, then the callback with the sealed cookie.
        callback = login_pages(http, Jar(), location, "bob")
        assert callback.startswith(f"{kc_base_url}/ui/oidc/callback?")
        signed_in = http.get(callback, headers=pending)
        assert signed_in.status_code == 200, signed_in.text
        assert 'http-equiv="refresh" content="0;url=/ui"' in signed_in.text
        session = signed_in.cookies["mandate_ui"]
        assert 'id="signed-in-as"' in http.get(f"{kc_base_url}/ui", headers={"Cookie": f"mandate_ui={session}"}).text

        replay = http.get(callback, headers=pending)  # same code, same state, same sealed cookie
        assert (
            replay.status_code == 401
            and "invalid_grant" in replay.text
            and "mandate_ui=" not in replay.headers.get("set-cookie", "")
        )
        forged_code = http.get(
            f"{kc_base_url}/ui/oidc/callback", params={"code": "forged", "state": state}, headers=pending
        )
        assert forged_code.status_code == 401
    assert kc_db.execute(
        "SELECT count(*) FROM mandate.ui_sessions WHERE session_key = %s",
        (hashlib.sha256(session.encode()).hexdigest(),),
    ).fetchone() == (1,)
