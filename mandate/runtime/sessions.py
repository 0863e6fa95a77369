"""Who may still act: the approver page's server-side sessions and the operator's revocation list.

A page session is a row keyed by the SHA-256 of a random session id; the browser's cookie holds
only that id, so a copy of the table cannot be replayed as cookies. The access token the page
needs (a decision resumes the run as the decider) is sealed in the token vault under the
pseudo-thread ``ui-session:<key>``, never stored in clear. Signing out marks the row revoked and
discards the sealed token.

An operator cuts a user off with a revocation entry keyed by (issuer, subject): while it is in
force every token of that user is refused; once restored, tokens issued before its ``not_before``
stay refused, so a token copied before the cut-off never works again. Revoking also ends the
user's page sessions and discards every token of theirs the vault holds, in one transaction.

    ServiceError
    ├── RevocationUnavailableError  code=revocation_unavailable (503: fail closed)
    └── SessionsUnavailableError    code=sessions_unavailable   (503: fail closed)
    TokenError
    └── TokenRevokedError           code=token_revoked          (401)
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from joserfc.errors import JoseError
from joserfc.jws import extract_compact
from psycopg import Error as PsycopgError

from mandate._db import Pool
from mandate.auth import Principal, TokenError, TokenVault
from mandate.runtime.errors import ServiceError

__all__ = [
    "IDLE_TIMEOUT_SECONDS",
    "MAX_SESSION_SECONDS",
    "MIGRATIONS",
    "LiveSession",
    "NewSession",
    "Revocation",
    "RevocationUnavailableError",
    "SessionStore",
    "SessionsUnavailableError",
    "TokenRevokedError",
    "issued_at",
    "restore_user",
    "revoke_user",
    "revoked_users",
]

IDLE_TIMEOUT_SECONDS = 1800
"""A page session not used for this long ends, even if its token is still valid."""
MAX_SESSION_SECONDS = 12 * 3600
"""No page session lasts longer than this, nor longer than its token."""
_VAULT_PREFIX = "ui-session:"
"""Pseudo-thread under which a session's token is vaulted; thread ids are UUIDs, so no clash."""

MIGRATIONS = [
    # 1: approver page sessions (the cookie holds the id, the row its SHA-256) and the revocation list.
    """
    CREATE TABLE mandate.ui_sessions (
        session_key text PRIMARY KEY,
        issuer text NOT NULL,
        subject text NOT NULL,
        tenant text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        last_seen_at timestamptz NOT NULL DEFAULT now(),
        revoked_at timestamptz
    );
    CREATE INDEX ui_sessions_user ON mandate.ui_sessions (issuer, subject);
    CREATE INDEX ui_sessions_expiry ON mandate.ui_sessions (expires_at);
    CREATE TABLE mandate.revoked_users (
        issuer text NOT NULL,
        subject text NOT NULL,
        not_before timestamptz NOT NULL,
        revoked_at timestamptz NOT NULL,
        revoked_by text NOT NULL,
        restored_at timestamptz,
        restored_by text,
        PRIMARY KEY (issuer, subject)
    );
    """,
]

INSERT_SESSION = """
INSERT INTO mandate.ui_sessions (session_key, issuer, subject, tenant, expires_at)
VALUES (%(key)s, %(issuer)s, %(subject)s, %(tenant)s, to_timestamp(%(expires_at)s))
"""

DELETE_EXPIRED_SESSIONS = "DELETE FROM mandate.ui_sessions WHERE expires_at <= now()"

TOUCH_LIVE_SESSION = """
UPDATE mandate.ui_sessions SET last_seen_at = now()
WHERE session_key = %(key)s AND revoked_at IS NULL AND expires_at > now()
  AND last_seen_at > now() - make_interval(secs => %(idle)s)
RETURNING issuer, subject, tenant, extract(epoch FROM expires_at)::float8 AS expires_at
"""

END_SESSION = """
UPDATE mandate.ui_sessions SET revoked_at = now()
WHERE session_key = %(key)s AND revoked_at IS NULL
RETURNING issuer, subject
"""

END_USER_SESSIONS = """
UPDATE mandate.ui_sessions SET revoked_at = now()
WHERE issuer = %(issuer)s AND subject = %(subject)s AND revoked_at IS NULL AND expires_at > now()
"""

# The vault (auth room) has no delete yet; the audit room's erase deletes the same way.
DISCARD_SESSION_TOKEN = """
DELETE FROM mandate.token_vault WHERE issuer = %(issuer)s AND subject = %(subject)s AND thread_id = %(thread_id)s
"""

DISCARD_USER_TOKENS = "DELETE FROM mandate.token_vault WHERE issuer = %(issuer)s AND subject = %(subject)s"

SELECT_REVOCATION_CHECK = """
SELECT extract(epoch FROM not_before)::float8 AS not_before, restored_at IS NOT NULL AS restored
FROM mandate.revoked_users WHERE issuer = %(issuer)s AND subject = %(subject)s
"""

_REVOCATION_COLUMNS = "issuer, subject, not_before, revoked_at, revoked_by, restored_at, restored_by"

UPSERT_REVOCATION = f"""
INSERT INTO mandate.revoked_users (issuer, subject, not_before, revoked_at, revoked_by)
VALUES (%(issuer)s, %(subject)s, now(), now(), %(by)s)
ON CONFLICT (issuer, subject) DO UPDATE SET
    not_before = now(), revoked_at = now(), revoked_by = EXCLUDED.revoked_by, restored_at = NULL, restored_by = NULL
RETURNING {_REVOCATION_COLUMNS}
"""

RESTORE_REVOCATION = f"""
UPDATE mandate.revoked_users SET restored_at = now(), restored_by = %(by)s
WHERE issuer = %(issuer)s AND subject = %(subject)s AND restored_at IS NULL
RETURNING {_REVOCATION_COLUMNS}
"""

SELECT_REVOCATIONS = f"""
SELECT {_REVOCATION_COLUMNS} FROM mandate.revoked_users ORDER BY revoked_at DESC, issuer, subject
"""


class TokenRevokedError(TokenError):
    """Raised when an operator has cut the token's user off (revoked, or issued before ``not_before``)."""

    code = "token_revoked"
    description = "The access token has been revoked."


class RevocationUnavailableError(ServiceError):
    """Raised when the revocation list cannot be read or written; the request is refused (fail closed)."""

    code = "revocation_unavailable"


class SessionsUnavailableError(ServiceError):
    """Raised when page sessions cannot be read or written; nobody is signed in meanwhile (fail closed)."""

    code = "sessions_unavailable"


@dataclass(frozen=True, kw_only=True, slots=True)
class NewSession:
    """A page session just started."""

    session_id: str = field(repr=False)
    """The opaque id for the cookie; only its SHA-256 is stored."""
    expires_at: float
    """Epoch seconds; never later than the token's ``exp``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveSession:
    """A page session that is neither revoked, expired nor idle, with its unsealed token."""

    issuer: str
    subject: str
    tenant: str
    expires_at: float
    """Epoch seconds."""
    token: str = field(repr=False)
    """The signed-in user's access token (to verify now and to decide with)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Revocation:
    """An entry of the revocation list."""

    issuer: str
    subject: str
    not_before: datetime
    """Tokens of this user issued (``iat``) before this moment are refused, even after a restore."""
    revoked_at: datetime
    revoked_by: str
    restored_at: datetime | None
    """``None`` while the cut-off is in force: then every token of the user is refused."""
    restored_by: str | None
    sessions_ended: int = 0
    """Page sessions the revocation ended (set by :func:`revoke_user` only)."""
    tokens_discarded: int = 0
    """Vaulted tokens (page sessions and paused runs) the revocation discarded (:func:`revoke_user` only)."""


def issued_at(token: str) -> float | None:
    """``iat`` of a token the verifier has already accepted, or ``None`` if it carries none.

    The principal does not carry ``iat``, so the verified token's payload is read once more;
    it is never trusted for anything the signature check did not cover.
    """
    try:
        claims = json.loads(extract_compact(token.encode("ascii")).payload)
    except (JoseError, ValueError, UnicodeError):
        return None
    iat = claims.get("iat") if isinstance(claims, dict) else None
    return float(iat) if isinstance(iat, (int, float)) and not isinstance(iat, bool) else None


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """The page's sessions in ``mandate.ui_sessions``, their tokens in the vault, and the revocation check."""

    def __init__(self, *, pool: Pool, vault: TokenVault, idle_timeout: int = IDLE_TIMEOUT_SECONDS) -> None:
        self._pool = pool
        self._vault = vault
        self._idle = idle_timeout

    async def check_not_revoked(self, principal: Principal, *, issued_at: float | None) -> None:
        """Refuse a verified token whose user an operator has cut off (one primary-key lookup).

        Args:
            principal: The principal the token was verified as.
            issued_at: The token's ``iat``; a token without one counts as issued before any cut-off.

        Raises:
            TokenRevokedError: The user is revoked, or was and the token predates ``not_before``.
            RevocationUnavailableError: The database failed (the request is refused, never allowed).
        """
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    SELECT_REVOCATION_CHECK, {"issuer": principal.issuer, "subject": principal.subject}
                )
                row = await cur.fetchone()
        except PsycopgError as exc:
            raise RevocationUnavailableError("The revocation list could not be checked.") from exc
        if row is None:
            return
        if not row["restored"] or issued_at is None or issued_at < float(row["not_before"]):
            raise TokenRevokedError("This token has been revoked; sign in again.")

    async def start(self, principal: Principal, token: str, *, now: float | None = None) -> NewSession:
        """Start a session for a verified ``token``; its expiry is capped by the token's own.

        Raises:
            SessionsUnavailableError: The database refused the write.
            VaultUnavailableError: The token could not be sealed into the vault.
        """
        now = time.time() if now is None else now
        session_id = secrets.token_urlsafe(32)
        key = _key(session_id)
        expires_at = float(min(principal.expires_at, now + MAX_SESSION_SECONDS))
        params = {
            "key": key,
            "issuer": principal.issuer,
            "subject": principal.subject,
            "tenant": principal.tenant,
            "expires_at": expires_at,
        }
        try:
            async with self._pool.connection() as conn:
                await conn.execute(DELETE_EXPIRED_SESSIONS)
                await conn.execute(INSERT_SESSION, params)
        except PsycopgError as exc:
            raise SessionsUnavailableError("Sessions are unavailable; try again later.") from exc
        # Row first: if sealing fails the row has no token and resumes as signed out.
        await self._vault.put(
            issuer=principal.issuer,
            subject=principal.subject,
            thread_id=_VAULT_PREFIX + key,
            token=token,
            expires_at=expires_at,
        )
        return NewSession(session_id=session_id, expires_at=expires_at)

    async def resume(self, session_id: str) -> LiveSession | None:
        """The live session of ``session_id`` (its last-seen time updated), or ``None``.

        ``None`` when the id is unknown, revoked, expired, idle too long, or its token is gone
        from the vault (expired, or discarded by an erasure or a revocation).

        Raises:
            SessionsUnavailableError: The database failed.
            VaultUnavailableError: The vault failed.
        """
        key = _key(session_id)
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(TOUCH_LIVE_SESSION, {"key": key, "idle": self._idle})
                row = await cur.fetchone()
        except PsycopgError as exc:
            raise SessionsUnavailableError("Sessions are unavailable; try again later.") from exc
        if row is None:
            return None
        token = await self._vault.get(
            issuer=row["issuer"], subject=row["subject"], thread_id=_VAULT_PREFIX + key, now=time.time()
        )
        if token is None:
            return None
        return LiveSession(
            issuer=row["issuer"],
            subject=row["subject"],
            tenant=row["tenant"],
            expires_at=float(row["expires_at"]),
            token=token,
        )

    async def end(self, session_id: str) -> bool:
        """Revoke the session of ``session_id`` and discard its sealed token; ``False`` if it was not live.

        Raises:
            SessionsUnavailableError: The database failed.
        """
        key = _key(session_id)
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = await conn.execute(END_SESSION, {"key": key})
                row = await cur.fetchone()
                if row is not None:
                    owner = {"issuer": row["issuer"], "subject": row["subject"], "thread_id": _VAULT_PREFIX + key}
                    await conn.execute(DISCARD_SESSION_TOKEN, owner)
        except PsycopgError as exc:
            raise SessionsUnavailableError("Sessions are unavailable; try again later.") from exc
        return row is not None


def _revocation(row: dict[str, Any], **counts: int) -> Revocation:
    return Revocation(
        issuer=row["issuer"],
        subject=row["subject"],
        not_before=row["not_before"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
        restored_at=row["restored_at"],
        restored_by=row["restored_by"],
        **counts,
    )


async def revoke_user(pool: Pool, *, issuer: str, subject: str, by: str) -> Revocation:
    """Cut a user off now: refuse all their tokens, end their page sessions, discard their vaulted tokens.

    Args:
        pool: The service's database.
        issuer: The issuer that names the user (exact ``iss``).
        subject: Their ``sub`` at that issuer.
        by: Who revokes (recorded).

    Returns:
        The entry, with how many sessions ended and vaulted tokens were discarded.

    Raises:
        RevocationUnavailableError: The database failed; nothing changed.
    """
    user = {"issuer": issuer, "subject": subject}
    try:
        async with pool.connection() as conn, conn.transaction():
            row = await (await conn.execute(UPSERT_REVOCATION, {**user, "by": by})).fetchone()
            ended = (await conn.execute(END_USER_SESSIONS, user)).rowcount
            discarded = (await conn.execute(DISCARD_USER_TOKENS, user)).rowcount
    except PsycopgError as exc:
        raise RevocationUnavailableError("The revocation list could not be written.") from exc
    assert row is not None
    return _revocation(row, sessions_ended=ended, tokens_discarded=discarded)


async def restore_user(pool: Pool, *, issuer: str, subject: str, by: str) -> Revocation | None:
    """Lift a cut-off: tokens issued from its ``not_before`` on work again; older ones never do.

    Returns:
        The restored entry, or ``None`` if the user was not revoked (or already restored).

    Raises:
        RevocationUnavailableError: The database failed; nothing changed.
    """
    try:
        async with pool.connection() as conn:
            cur = await conn.execute(RESTORE_REVOCATION, {"issuer": issuer, "subject": subject, "by": by})
            row = await cur.fetchone()
    except PsycopgError as exc:
        raise RevocationUnavailableError("The revocation list could not be written.") from exc
    return None if row is None else _revocation(row)


async def revoked_users(pool: Pool) -> list[Revocation]:
    """Every entry of the revocation list, newest first (restored ones too: their floor still holds).

    Raises:
        RevocationUnavailableError: The database failed.
    """
    try:
        async with pool.connection() as conn:
            rows = await (await conn.execute(SELECT_REVOCATIONS)).fetchall()
    except PsycopgError as exc:
        raise RevocationUnavailableError("The revocation list could not be read.") from exc
    return [_revocation(row) for row in rows]
