"""The SQLite store's schema: every table of the intake database, and how older ones catch up.

Tables: `instances` (one row per stored file), `studies` (the work queue and the worklist),
`results` (every version), `cams` (the evidence behind each result), `outbox`, `audit` (its
hash chain is `audit.py`'s), `feedback`, `study_headers` (patient and study facts for the
worklist, `headers.py`), `users` and `api_tokens` (`users.py`), and `fhir_context` (created with
the first FHIR report context). The UI's signed-out sessions live in a database of their own
(`sessions.py`). `schema_migrations` records the versions applied (`create`); the PostgreSQL
schema is the same tables (`store.postgres`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence

from diagnostics.errors import StoreError
from diagnostics.store.sqlite import audit
from diagnostics.store.sqlite.headers import HEADERS_SCHEMA
from diagnostics.store.sqlite.worklist import INDEX_SQL

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at REAL NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances (study_instance_uid);
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'screening', 'done')),
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    instance_count INTEGER NOT NULL,
    claimed_at REAL,
    version INTEGER NOT NULL DEFAULT 0,
    status TEXT,
    priority TEXT,
    flagged TEXT,
    requested_priority TEXT,
    reviewed_at REAL,
    lease_until REAL,
    claimed_by TEXT,
    tries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS studies_by_state ON studies (state, last_received);
CREATE TABLE IF NOT EXISTS results (
    study_instance_uid TEXT NOT NULL,
    version INTEGER NOT NULL,
    created REAL NOT NULL,
    instance_count INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (study_instance_uid, version)
);
CREATE INDEX IF NOT EXISTS results_by_created ON results (created);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_instance_uid TEXT NOT NULL,
    version INTEGER NOT NULL,
    path TEXT NOT NULL,
    destination TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL,
    study_instance_uid TEXT,
    sop_instance_uid TEXT,
    address TEXT,
    outcome INTEGER NOT NULL DEFAULT 0,
    hash TEXT
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_instance_uid TEXT NOT NULL,
    version INTEGER NOT NULL,
    sop_instance_uid TEXT,
    code TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('agree', 'disagree', 'missed', 'comment')),
    comment TEXT NOT NULL DEFAULT '',
    x REAL,
    y REAL,
    box TEXT,
    actor TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_by_study ON feedback (study_instance_uid, id);
"""
"""`feedback` holds the verdicts of `diagnostics.service.review` (see there why it looks so)."""

ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("studies", "requested_priority", "TEXT"),
    ("studies", "reviewed_at", "REAL"),
    ("studies", "lease_until", "REAL"),
    ("studies", "claimed_by", "TEXT"),
    ("studies", "tries", "INTEGER NOT NULL DEFAULT 0"),
    ("instances", "digest", "TEXT"),
    ("instances", "image_bytes", "INTEGER"),
    ("studies", "purged_at", "REAL"),
)
"""Columns added since the first stores were written; `_migrate` adds them to older stores."""

CAMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS cams (
    study_instance_uid TEXT NOT NULL,
    version INTEGER NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    frame INTEGER NOT NULL,
    codes TEXT NOT NULL,
    height INTEGER NOT NULL,
    width INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (study_instance_uid, version, sop_instance_uid)
);
"""
"""Class activation maps kept with each result (`diagnostics.store.evidence` says why)."""

FHIR_CONTEXT_SCHEMA = """CREATE TABLE IF NOT EXISTS fhir_context (
    study_instance_uid TEXT NOT NULL,
    version INTEGER NOT NULL,
    context TEXT NOT NULL,
    PRIMARY KEY (study_instance_uid, version)
)"""
"""Created by the first result recorded with a FHIR report context; readers treat a missing
table as "no context"."""

USERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('radiologist', 'admin', 'integration')),
    password TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    locked_until REAL,
    last_login REAL,
    language TEXT
);
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    last_used REAL,
    revoked REAL
);
"""
"""Named users and per-integration API tokens (`users.py`); a store written before them gains
them at its next open (every statement is IF NOT EXISTS)."""


MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
)"""

Step = Callable[[sqlite3.Connection], None]


def _later() -> tuple[tuple[int, str, Step], ...]:
    """Versions after the baseline: (version, what it does, the step, run inside one write
    transaction). Forward only; a released step is never edited. None yet."""
    return ()


BASELINE = (1, "baseline: the tables and columns of stores before versioned migrations")


def create(db: sqlite3.Connection, later: Sequence[tuple[int, str, Step]] | None = None) -> None:
    """Bring the database up to date: the idempotent baseline (every open, as it always ran:
    it also upgrades stores older than the migrations table), then each later version it
    lacks, once, in order. A database written by a newer version is refused."""
    later = _later() if later is None else later
    _baseline(db)
    db.execute(MIGRATIONS_TABLE)
    known = [BASELINE[0], *(version for version, _, _ in later)]
    _refuse_newer(db, max(known))
    db.execute("INSERT OR IGNORE INTO schema_migrations VALUES (?, ?, ?)", (*BASELINE, time.time()))
    for version, name, step in later:
        db.execute("BEGIN IMMEDIATE")
        try:
            done = db.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
            ).fetchone()
            if done is None:  # another process may have applied it while we waited
                step(db)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, name, time.time())
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def versions(db: sqlite3.Connection) -> list[int]:
    """The versions applied to a database, in order."""
    return [int(r[0]) for r in db.execute("SELECT version FROM schema_migrations ORDER BY 1")]


def _refuse_newer(db: sqlite3.Connection, newest: int) -> None:
    row = db.execute("SELECT max(version) FROM schema_migrations").fetchone()
    if row[0] is not None and int(row[0]) > newest:
        raise StoreError(
            f"the database has schema version {row[0]}, newer than this version of diagnostics "
            f"knows ({newest}): upgrade diagnostics, never downgrade"
        )


def _baseline(db: sqlite3.Connection) -> None:
    """Create what is missing and bring a store written by an older version up to date
    (idempotent, race-safe)."""
    # executescript commits any open transaction itself, so it cannot run inside one;
    # every statement is idempotent (IF NOT EXISTS).
    db.executescript(SCHEMA + CAMS_SCHEMA + HEADERS_SCHEMA + USERS_SCHEMA)
    for table, column, kind in ADDED_COLUMNS:
        present = {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise StoreError(f"cannot update the intake database: {exc}") from exc
    # The first worklist index ordered by the model's priority only.
    db.execute("DROP INDEX IF EXISTS studies_worklist")
    db.execute(INDEX_SQL)
    # The audit trail's ATNA columns and hash chain (`audit.migrate` chains older rows once).
    audit.migrate(db)
