"""The SQLite side of `diagnostics.store.Transaction`: the steps callers compose into one unit.

A caller that must commit several things together (a verdict and its audit record; a read
mark, its audit record and the final FHIR report it queues) runs them on one of these inside
`SqliteStore.transaction()`; `SqliteStore.view()` gives the same reads outside a transaction.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from pathlib import Path

from diagnostics.errors import StoreError
from diagnostics.fhir import ReportContext
from diagnostics.results import StudyResult
from diagnostics.store.records import Feedback, feedback_from_row
from diagnostics.store.sql import Connection
from diagnostics.store.sqlite import audit
from diagnostics.store.sqlite.schema import FHIR_CONTEXT_SCHEMA


def audit_row(db: Connection, actor: str, action: str, **detail: object) -> None:
    """An audit record inside the caller's transaction, so it commits with what it records.

    `study`, `sop`, `address` and `outcome` fill the ATNA columns (`diagnostics.store.audit`);
    the other keywords are the row's `detail`.
    """
    audit.write(db, actor, action, **detail)


class SqliteTransaction:
    """Store steps on one connection: inside a transaction, or plain reads (`view`)."""

    def __init__(self, db: Connection) -> None:
        self.db = db

    # -- audit ----------------------------------------------------------------------------

    def audit(self, actor: str, action: str, **detail: object) -> None:
        audit_row(self.db, actor, action, **detail)

    def last_actor(self, action: str, study_instance_uid: str) -> str | None:
        """Who last did `action` on a study, from the audit log."""
        row = self.db.execute(
            "SELECT actor FROM audit WHERE action = ? "
            "AND study_instance_uid = ? ORDER BY id DESC LIMIT 1",
            (action, study_instance_uid),
        ).fetchone()
        return str(row["actor"]) if row is not None else None

    # -- studies --------------------------------------------------------------------------

    def requested_priority(self, study_instance_uid: str) -> tuple[bool, str | None]:
        """(whether the study exists, its requested priority)."""
        row = self.db.execute(
            "SELECT requested_priority FROM studies WHERE study_instance_uid = ?",
            (study_instance_uid,),
        ).fetchone()
        return (False, None) if row is None else (True, row["requested_priority"])

    def set_requested_priority(self, study_instance_uid: str, priority: str | None) -> None:
        self.db.execute(
            "UPDATE studies SET requested_priority = ? WHERE study_instance_uid = ?",
            (priority, study_instance_uid),
        )

    def set_reviewed(self, study_instance_uid: str, at: float | None) -> bool:
        """Set (or clear, with None) a study's read mark; False when there is no such study."""
        cursor = self.db.execute(
            "UPDATE studies SET reviewed_at = ? WHERE study_instance_uid = ?",
            (at, study_instance_uid),
        )
        return cursor.rowcount != 0

    def reviewed_at(self, study_instance_uid: str) -> float | None:
        row = self.db.execute(
            "SELECT reviewed_at FROM studies WHERE study_instance_uid = ?", (study_instance_uid,)
        ).fetchone()
        return float(row["reviewed_at"]) if row is not None and row["reviewed_at"] else None

    def read_since_result(self, study_instance_uid: str, version: int) -> bool:
        """Whether the study's read mark is not older than this result version."""
        row = self.db.execute(
            """SELECT s.reviewed_at, r.created FROM studies s JOIN results r
               ON r.study_instance_uid = s.study_instance_uid AND r.version = ?
               WHERE s.study_instance_uid = ?""",
            (version, study_instance_uid),
        ).fetchone()
        return not (
            row is None or row["reviewed_at"] is None or row["reviewed_at"] < row["created"]
        )

    # -- results --------------------------------------------------------------------------

    def newest_result_version(self, study_instance_uid: str) -> int | None:
        """The newest recorded result version (None before the first result)."""
        row = self.db.execute(
            "SELECT version FROM results WHERE study_instance_uid = ? "
            "ORDER BY version DESC LIMIT 1",
            (study_instance_uid,),
        ).fetchone()
        return int(row["version"]) if row is not None else None

    def result_version(self, study_instance_uid: str, version: int) -> StudyResult | None:
        row = self.db.execute(
            "SELECT result FROM results WHERE study_instance_uid = ? AND version = ?",
            (study_instance_uid, version),
        ).fetchone()
        return StudyResult.from_json(row["result"]) if row is not None else None

    # -- FHIR report context and the outbox ----------------------------------------------

    def record_fhir_context(
        self, study_instance_uid: str, version: int, context: ReportContext
    ) -> None:
        self.db.execute(FHIR_CONTEXT_SCHEMA)
        self.db.execute(
            "INSERT INTO fhir_context VALUES (?, ?, ?) ON CONFLICT (study_instance_uid, version) "
            "DO UPDATE SET context = excluded.context",
            (study_instance_uid, version, context.model_dump_json()),
        )

    def fhir_context(self, study_instance_uid: str, version: int) -> ReportContext | None:
        try:
            row = self.db.execute(
                "SELECT context FROM fhir_context WHERE study_instance_uid = ? AND version = ?",
                (study_instance_uid, version),
            ).fetchone()
        except sqlite3.OperationalError as exc:  # a store that has recorded no report yet
            if "no such table" in str(exc):
                return None
            raise StoreError(f"cannot read the FHIR report context: {exc}") from exc
        return ReportContext.model_validate_json(row["context"]) if row is not None else None

    def destinations_of(self, study_instance_uid: str, version: int, prefix: str) -> list[str]:
        """The destinations starting with `prefix` that a result version was queued for."""
        return [
            r["destination"]
            for r in self.db.execute(
                "SELECT DISTINCT destination FROM outbox WHERE study_instance_uid = ? "
                "AND version = ? AND destination LIKE ? ORDER BY destination",
                (study_instance_uid, version, prefix + "%"),
            )
        ]

    def queue(self, study_instance_uid: str, version: int, path: Path, destination: str) -> None:
        """Queue one output of a result version for one destination."""
        self.db.execute(
            """INSERT INTO outbox (study_instance_uid, version, path, destination, state,
               next_attempt) VALUES (?, ?, ?, ?, 'pending', ?)""",
            (study_instance_uid, version, str(path), destination, time.time()),
        )

    # -- feedback -------------------------------------------------------------------------

    def add_feedback(self, entry: Feedback) -> int:
        """Store a verdict (its `id` is ignored); returns the id it was given."""
        row = dataclasses.asdict(entry)
        del row["id"]
        row["box"] = json.dumps(list(entry.box)) if entry.box is not None else None
        cursor = self.db.execute(
            f"INSERT INTO feedback ({', '.join(row)}) VALUES ({', '.join('?' * len(row))}) "
            "RETURNING id",
            tuple(row.values()),
        )
        return int(cursor.fetchone()[0])

    def feedback_for(self, study_instance_uid: str) -> list[Feedback]:
        rows = self.db.execute(
            "SELECT * FROM feedback WHERE study_instance_uid = ? ORDER BY id",
            (study_instance_uid,),
        ).fetchall()
        return [feedback_from_row(dict(r)) for r in rows]
