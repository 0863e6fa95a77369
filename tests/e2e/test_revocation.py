"""Sign-out and operator cut-off: server-side page sessions and the revocation list, over real HTTP."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import psycopg
import pytest

from mandate._db import open_pool
from mandate.auth import TokenVaultStore
from mandate.runtime.settings import Settings
from mandate.runtime.sessions import IDLE_TIMEOUT_SECONDS
from mandate.cli.users import add_users_commands
from tests.e2e.test_approver_page import PageSession, approval_id_on, page_sign_in, session_key
from tests.utils.approvals import OTP, payments_of, pending_payment
from tests.utils.threads import bearer
from tests.utils.tokens import claims_of

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture()
def users(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stack_settings: Settings) -> Run:
    """``users("revoke", "--issuer", …)``: the ``mandate users`` commands as an operator runs them."""

    def run(*argv: str) -> tuple[int, str, str]:
        monkeypatch.setenv("MANDATE_ENV", "test")
        monkeypatch.setenv("MANDATE_DATA_DIR", str(stack_settings.data_dir))
        monkeypatch.setenv("MANDATE_DATABASE_URL", stack_settings.database_url)
        parser = argparse.ArgumentParser(prog="mandate")
        add_users_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["users", *argv])
        code = args.run(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture()
def issuer(token: Callable[..., str]) -> str:
    """The dev issuer's exact ``iss``, as an operator names it."""
    return str(claims_of(token("dave"))["iss"])


@contextmanager
def _revoked(users: Run, issuer: str, subject: str) -> Iterator[str]:
    """Revoke ``subject`` for the block (yields the CLI's output); restored afterwards whatever happens."""
    code, out, err = users("revoke", "--issuer", issuer, "--subject", subject)
    assert code == 0, err
    try:
        yield out
    finally:
        users("restore", "--issuer", issuer, "--subject", subject)


def _search(client: httpx.Client, token: str) -> httpx.Response:
    return client.post("/threads/search", json={}, headers=bearer(token))


def _signed_in(client: httpx.Client, session: PageSession) -> bool:
    page = client.get("/ui", headers=session.headers)
    assert page.status_code == 200
    return 'id="signed-in-as"' in page.text


def _wait_past_not_before(db: psycopg.Connection, issuer: str, subject: str) -> None:
    """Tokens carry whole-second ``iat``: wait until a new token's ``iat`` cannot precede the cut-off."""
    row = db.execute(
        "SELECT extract(epoch FROM not_before)::float8 FROM mandate.revoked_users WHERE issuer = %s AND subject = %s",
        (issuer, subject),
    ).fetchone()
    assert row is not None
    while int(time.time()) <= row[0]:
        time.sleep(0.2)


def test_sign_out_revokes_session_so_a_replayed_cookie_and_csrf_do_nothing(
    base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    thread = pending_payment(client, token)
    bob = page_sign_in(base_url, "bob", otp=OTP)
    approval_id = approval_id_on(client.get("/ui", headers=bob.headers).text, thread)

    signed_out = client.post("/ui/sign-out", data={"csrf": bob.csrf}, headers=bob.headers)
    assert signed_out.status_code == 303
    assert 'mandate_ui=""' in signed_out.headers["set-cookie"] or "mandate_ui=;" in signed_out.headers["set-cookie"]

    replayed = client.get("/ui", headers=bob.headers)
    assert replayed.status_code == 200 and 'name="username"' in replayed.text and "signed-in-as" not in replayed.text
    decision = client.post(
        f"/ui/approvals/{approval_id}/decision", data={"type": "approve", "csrf": bob.csrf}, headers=bob.headers
    )
    assert decision.status_code == 401 and "signed_out" in decision.text
    status = db.execute("SELECT status FROM mandate.tool_calls WHERE id = %s", (approval_id,)).fetchone()
    assert status == ("pending",) and payments_of(db, thread) == []
    key = session_key(bob.cookie)
    [(revoked_at,)] = db.execute("SELECT revoked_at FROM mandate.ui_sessions WHERE session_key = %s", (key,)).fetchall()
    assert revoked_at is not None
    vault_query = "SELECT count(*) FROM mandate.token_vault WHERE thread_id = %s"
    sealed = db.execute(vault_query, (f"ui-session:{key}",)).fetchone()
    assert sealed == (0,), "sign-out discards the session's sealed token"


def test_sign_out_without_the_sessions_csrf_token_is_refused_and_the_session_lives(
    base_url: str, client: httpx.Client
) -> None:
    bob = page_sign_in(base_url, "bob")
    dave = page_sign_in(base_url, "dave")
    for forged in ({}, {"csrf": dave.csrf}):
        refused = client.post("/ui/sign-out", data=forged, headers=bob.headers)
        assert refused.status_code == 403 and "csrf_failed" in refused.text
    assert _signed_in(client, bob)


def test_stolen_session_cookie_stops_working_when_an_operator_revokes_its_owner(
    base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection, users: Run, issuer: str
) -> None:
    thread = pending_payment(client, token)
    bob = page_sign_in(base_url, "bob", otp=OTP)
    carol = page_sign_in(base_url, "carol")
    with httpx.Client(base_url=base_url, timeout=60) as thief:
        stolen = thief.get("/ui", headers=bob.headers)
        assert f'data-thread-id="{thread}"' in stolen.text, "before the cut-off a copied cookie is bob"
        approval_id = approval_id_on(stolen.text, thread)

        live = db.execute(
            "SELECT count(*) FROM mandate.ui_sessions WHERE issuer = %s AND subject = 'bob' AND revoked_at IS NULL "
            "AND expires_at > now()",
            (issuer,),
        ).fetchone()
        assert live is not None and live[0] >= 1
        with _revoked(users, issuer, "bob") as out:
            assert f"ended {live[0]} page sessions" in out
            replayed = thief.get("/ui", headers=bob.headers)
            assert 'name="username"' in replayed.text and "signed-in-as" not in replayed.text
            decision = thief.post(
                f"/ui/approvals/{approval_id}/decision", data={"type": "approve", "csrf": bob.csrf}, headers=bob.headers
            )
            assert decision.status_code == 401
            assert _signed_in(client, carol), "another user's session (another tenant) is unaffected"
            # Users are issuer-qualified: bob of another issuer (another app on this database) is not cut off.
            assert db.execute(
                "SELECT count(*) FROM mandate.ui_sessions WHERE issuer = %s AND subject = 'bob' AND revoked_at IS NULL",
                (issuer,),
            ).fetchone() == (0,)
            kept = db.execute(
                "SELECT thread_id, expires_at FROM mandate.token_vault WHERE issuer = %s AND subject = 'bob'", (issuer,)
            ).fetchall()
            assert kept == [], kept

        assert not _signed_in(thief, bob), "a restore never brings an old session back"
    status = db.execute("SELECT status FROM mandate.tool_calls WHERE id = %s", (approval_id,)).fetchone()
    assert status == ("pending",) and payments_of(db, thread) == []


def test_revoked_users_bearer_token_is_refused_until_restore_and_old_tokens_stay_refused(
    base_url: str, client: httpx.Client, token: Callable[..., str], db: psycopg.Connection, users: Run, issuer: str
) -> None:
    old = token("alice")
    dave = token("dave")
    assert _search(client, old).status_code == 200

    with _revoked(users, issuer, "alice"):
        refused = _search(client, old)
        assert refused.status_code == 401 and refused.json()["code"] == "token_revoked"
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert old not in refused.text
        assert _search(client, dave).status_code == 200, "another user is unaffected"
        fresh_while_revoked = _search(client, token("alice"))
        assert fresh_while_revoked.status_code == 401 and fresh_while_revoked.json()["code"] == "token_revoked"
        code, out, _ = users("list-revoked")
        assert code == 0 and f"{issuer} alice:" in out and "IN FORCE" in out
        with httpx.Client(base_url=base_url, timeout=60) as http:
            form = http.get("/ui").text
            csrf = form.split('name="csrf" value="')[1].split('"')[0]
            page = http.post("/ui/sign-in", data={"username": "alice", "password": "demo", "csrf": csrf})
        assert page.status_code == 401 and "token_revoked" in page.text and page.cookies.get("mandate_ui") is None
        _wait_past_not_before(db, issuer, "alice")

    assert _search(client, token("alice")).status_code == 200, "a token issued after not_before works after restore"
    stale = _search(client, old)
    assert stale.status_code == 401 and stale.json()["code"] == "token_revoked", "a restore never revives old tokens"
    code, out, _ = users("list-revoked")
    assert code == 0 and "restored" in out and "IN FORCE" not in out.split(f"{issuer} alice:")[1].split("\n")[0]


def test_revocation_is_keyed_by_issuer_and_subject(
    client: httpx.Client, token: Callable[..., str], users: Run, issuer: str
) -> None:
    with _revoked(users, "https://other-issuer.example", "dave"):
        assert _search(client, token("dave")).status_code == 200, "dave at another issuer is someone else"
    code, _, err = users("restore", "--issuer", issuer, "--subject", "nobody")
    assert code == 1 and "not revoked" in err
    with pytest.raises(SystemExit):
        users("revoke", "--issuer", issuer, "--subject", " ")


def test_revocation_check_fails_closed_when_the_database_fails(
    client: httpx.Client, token: Callable[..., str], db: psycopg.Connection
) -> None:
    dave = token("dave")
    db.execute("ALTER TABLE mandate.revoked_users RENAME TO revoked_users_away")
    try:
        answer = _search(client, dave)
    finally:
        db.execute("ALTER TABLE mandate.revoked_users_away RENAME TO revoked_users")
    assert answer.status_code == 503 and answer.json()["code"] == "revocation_unavailable"
    assert _search(client, dave).status_code == 200


def test_session_rows_hold_no_token_and_end_no_later_than_it(
    base_url: str, db: psycopg.Connection, stack_settings: Settings
) -> None:
    bob = page_sign_in(base_url, "bob")
    key = session_key(bob.cookie)
    rows = db.execute("SELECT row_to_json(s)::text FROM mandate.ui_sessions s").fetchall()
    assert rows and not [row for (row,) in rows if "eyJ" in row or bob.cookie in row]
    vaulted = db.execute("SELECT ciphertext FROM mandate.token_vault WHERE thread_id LIKE 'ui-session:%'").fetchall()
    assert vaulted and not [c for (c,) in vaulted if b"eyJ" in bytes(c)]

    [(issuer, expires_at)] = db.execute(
        "SELECT issuer, extract(epoch FROM expires_at)::float8 FROM mandate.ui_sessions WHERE session_key = %s", (key,)
    ).fetchall()
    sealed = asyncio.run(_unseal(stack_settings, issuer=issuer, subject="bob", thread_id=f"ui-session:{key}"))
    assert sealed is not None and claims_of(sealed)["sub"] == "bob"
    assert expires_at <= claims_of(sealed)["exp"]


async def _unseal(settings: Settings, *, issuer: str, subject: str, thread_id: str) -> str | None:
    pool = await open_pool(settings.database_url, max_size=1)
    try:
        vault = TokenVaultStore(pool=pool, secret=settings.vault_key.get_secret_value().encode())
        return await vault.get(issuer=issuer, subject=subject, thread_id=thread_id, now=time.time())
    finally:
        await pool.close()


def test_idle_session_ends(base_url: str, client: httpx.Client, db: psycopg.Connection) -> None:
    bob = page_sign_in(base_url, "bob")
    db.execute(
        "UPDATE mandate.ui_sessions SET last_seen_at = now() - make_interval(secs => %s) WHERE session_key = %s",
        (IDLE_TIMEOUT_SECONDS + 1, session_key(bob.cookie)),
    )
    assert not _signed_in(client, bob)
