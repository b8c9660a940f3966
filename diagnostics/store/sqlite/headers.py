"""The `study_headers` table: each study's patient and study facts, for the worklist and search.

Written in the same transaction that records a received instance (so every listed study has
them without reading a file per page view), and by screening for studies received before the
table existed. Study-level facts keep the first non-empty value; modalities and views collect
every instance's. The JSON API's worklist does not read this table: patient data is for the
signed-in review pages only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import fields

from diagnostics.dicom.patient import StudyHeader
from diagnostics.store.records import StudyFacts
from diagnostics.store.sql import Connection

HEADERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS study_headers (
    study_instance_uid TEXT PRIMARY KEY,
    patient_name TEXT,
    patient_id TEXT,
    birth_date TEXT,
    sex TEXT,
    age TEXT,
    accession_number TEXT,
    study_date TEXT,
    study_time TEXT,
    description TEXT,
    institution TEXT,
    modalities TEXT,
    views TEXT,
    name_key TEXT,
    id_key TEXT,
    accession_key TEXT
);
CREATE INDEX IF NOT EXISTS study_headers_by_accession ON study_headers (accession_key);
CREATE INDEX IF NOT EXISTS study_headers_by_patient ON study_headers (id_key);
"""
"""Created (empty) in existing stores by `schema.create`; screening fills in older studies."""

SCALARS = (
    "patient_name",
    "patient_id",
    "birth_date",
    "sex",
    "age",
    "accession_number",
    "study_date",
    "study_time",
    "description",
    "institution",
)
LISTS = {"modalities": "modality", "views": "view"}
"""Columns that collect every instance's value (comma-separated), and the header field."""


def key(text: str | None) -> str | None:
    """Search form of a value: case-folded (Python's, which knows Cyrillic; SQLite's lower()
    knows only ASCII), name components and spaces as single spaces, with spaces around."""
    if not text:
        return None
    words = re.split(r"[\s^,=]+", text.casefold())
    return " " + " ".join(w for w in words if w) + " "


def merge(db: Connection, study_instance_uid: str, header: StudyHeader) -> None:
    """Add one instance's header to its study's row, inside the caller's transaction."""
    row = db.execute(
        "SELECT * FROM study_headers WHERE study_instance_uid = ?", (study_instance_uid,)
    ).fetchone()
    old = dict(row) if row is not None else {}
    values: dict[str, object] = {"study_instance_uid": study_instance_uid}
    for name in SCALARS:
        values[name] = old.get(name) or getattr(header, name)
    for column, name in LISTS.items():
        have = [v for v in (old.get(column) or "").split(",") if v]
        new = getattr(header, name)
        if new and new.replace(",", " ") not in have:
            have.append(new.replace(",", " "))
        values[column] = ",".join(have) or None
    values["name_key"] = key(str(values["patient_name"] or ""))
    values["id_key"] = (str(values["patient_id"] or "").casefold()) or None
    values["accession_key"] = (str(values["accession_number"] or "").casefold()) or None
    updates = ", ".join(f"{c} = excluded.{c}" for c in values if c != "study_instance_uid")
    db.execute(
        f"INSERT INTO study_headers ({', '.join(values)}) "
        f"VALUES ({', '.join('?' * len(values))}) "
        f"ON CONFLICT (study_instance_uid) DO UPDATE SET {updates}",
        tuple(values.values()),
    )


def has_header(db: Connection, study_instance_uid: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM study_headers WHERE study_instance_uid = ?", (study_instance_uid,)
    ).fetchone()
    return row is not None


def facts_of(db: Connection, uids: Sequence[str]) -> dict[str, StudyFacts]:
    """The facts of each of `uids` that has any (a page's worth: one query)."""
    if not uids:
        return {}
    names = [f.name for f in fields(StudyFacts)]
    rows = db.execute(
        f"SELECT study_instance_uid, {', '.join(names)} FROM study_headers "
        f"WHERE study_instance_uid IN ({', '.join('?' * len(uids))})",
        tuple(uids),
    ).fetchall()
    out = {}
    for r in rows:
        out[r["study_instance_uid"]] = StudyFacts(
            **{n: r[n] for n in SCALARS},
            modalities=_split(r["modalities"]),
            views=_split(r["views"]),
        )
    return out


def _split(joined: str | None) -> tuple[str, ...]:
    return tuple(v for v in (joined or "").split(",") if v)


def search_clause(text: str) -> tuple[str, list[object]]:
    """`study_instance_uid IN (...)` for a search box: the accession number or patient ID
    exactly (any case), or a name containing every word typed."""
    folded = text.strip().casefold()
    words = [w for w in re.split(r"[\s^,=]+", folded) if w]
    conditions = ["accession_key = ?", "id_key = ?"]
    params: list[object] = [folded, folded]
    if words:
        conditions.append("(" + " AND ".join("instr(name_key, ?) > 0" for _ in words) + ")")
        params += words
    sql = (
        "study_instance_uid IN (SELECT study_instance_uid FROM study_headers WHERE "
        + " OR ".join(conditions)
        + ")"
    )
    return sql, params
