"""SQL of the auth room (the token vault) and its numbered migrations."""

MIGRATIONS = [
    # 1: user tokens that must outlive a request (a long approval wait), encrypted, one per thread.
    """
    CREATE TABLE mandate.token_vault (
        issuer text NOT NULL,
        subject text NOT NULL,
        thread_id text NOT NULL,
        nonce bytea NOT NULL,
        ciphertext bytea NOT NULL,
        expires_at timestamptz NOT NULL,
        stored_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (issuer, subject, thread_id)
    );
    CREATE INDEX token_vault_expiry ON mandate.token_vault (expires_at);
    """,
]

UPSERT_VAULT_ENTRY = """
INSERT INTO mandate.token_vault (issuer, subject, thread_id, nonce, ciphertext, expires_at)
VALUES (%(issuer)s, %(subject)s, %(thread_id)s, %(nonce)s, %(ciphertext)s, to_timestamp(%(expires_at)s))
ON CONFLICT (issuer, subject, thread_id) DO UPDATE SET
    nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, expires_at = EXCLUDED.expires_at, stored_at = now()
"""

SELECT_VAULT_ENTRY = """
SELECT nonce, ciphertext, extract(epoch FROM expires_at) AS expires_at FROM mandate.token_vault
WHERE issuer = %(issuer)s AND subject = %(subject)s AND thread_id = %(thread_id)s
"""

DELETE_EXPIRED_VAULT_ENTRIES = "DELETE FROM mandate.token_vault WHERE expires_at <= now()"
