"""GDPR Art. 30: the record of processing names every table in which Mandate keeps personal data.

Every table the running service creates is either named in ``docs/record-of-processing.md`` or
listed here as holding no personal data, with the reason. A new table fails this test until
someone decides which it is (and, if it holds personal data, adds it to the record).
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

RECORD = Path(__file__).resolve().parents[2] / "docs" / "record-of-processing.md"
NO_PERSONAL_DATA = {
    "mandate.migrations": "the migration versions applied",
    "mandate.audit_checkpoints": "signed chain heads: sequence numbers, hashes, signatures",
    "mandate.acl_sync_cursors": "the position in OpenFGA's change log",
    "mandate.demo_effects": "the demo APIs' records (dev and test only, never in production)",
    "public.checkpoint_migrations": "LangGraph's migration versions",
}
"""Tables that hold no personal data, and why."""
_NAMED = re.compile(r"`([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)?)`")


def _tables(db: psycopg.Connection) -> set[str]:
    rows = db.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema IN ('mandate', 'public')"
    ).fetchall()
    return {name for (name,) in rows}


def test_record_of_processing_names_every_table_with_personal_data(base_url: str, db: psycopg.Connection) -> None:
    tables = _tables(db)  # base_url: the service has started, so every room has created its tables
    named = set(_NAMED.findall(RECORD.read_text(encoding="utf-8")))
    unnamed = sorted(
        table for table in tables - NO_PERSONAL_DATA.keys()
        if table not in named and not (table.startswith("public.") and table.removeprefix("public.") in named)
    )
    assert not unnamed, f"docs/record-of-processing.md does not name these tables of personal data: {unnamed}"
    stale = sorted(name for name in named if name.startswith("mandate.") and name not in tables)
    assert not stale, f"docs/record-of-processing.md names tables that do not exist: {stale}"
    assert NO_PERSONAL_DATA.keys() <= tables, "a table listed as holding no personal data no longer exists"
