"""Durable intake: every acknowledged instance is on disk and recorded before the sender hears OK.

One SQLite database in WAL mode (several processes may read and write it: the HTTP workers
and the DICOM listener) beside a folder of instance files named by our own identifiers, never
by anything read from a DICOM header. A study moves `waiting` -> `screening` -> `done`; an
instance arriving for a study that is already done sends it back to `waiting`, and the next
result gets the next version and supersedes the previous one.

A claim (`screening`) is a lease: the process holding it renews `lease_until` while it screens
(`diagnostics.intake.claims.Leases`), so a claim whose process died runs out within one lease
and the next claim takes it over; nothing acknowledged is lost. `tries` counts claims since
the study's last result: a study that keeps killing its screener is failed, not retried forever.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from diagnostics.constants import DATABASE_FILE
from diagnostics.dicom.header import ReadLimits
from diagnostics.dicom.reader import read_info
from diagnostics.durable import replace_synced, write_synced
from diagnostics.errors import DuplicateInstanceError, StoreError, TooLargeError
from diagnostics.intake import evidence
from diagnostics.intake.evidence import InstanceMaps
from diagnostics.intake.priority import (
    INDEX_SQL,
    EffectivePriority,
    WorklistFilter,
    effective_priority,
    worklist_page,
)
from diagnostics.intake.sender import carries
from diagnostics.results import StudyResult

log = logging.getLogger(__name__)

CLAIM_LEASE_S = 45.0
"""How long a claim holds without renewal. The holder renews it every third of this while it
screens, so only a claim whose process died runs out, and it is taken over within this time
(plus one poll): within the promised bound of the stable time + 60 s."""

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
    detail TEXT NOT NULL
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
"""`feedback` is written by `diagnostics.intake.review` (see there why it looks like this)."""

ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("studies", "requested_priority", "TEXT"),
    ("studies", "reviewed_at", "REAL"),
    ("studies", "lease_until", "REAL"),
    ("studies", "claimed_by", "TEXT"),
    ("studies", "tries", "INTEGER NOT NULL DEFAULT 0"),
    ("instances", "digest", "TEXT"),
    ("instances", "image_bytes", "INTEGER"),
)
"""Columns added since the first stores were written; `_migrate` adds them to older stores."""


@dataclass(frozen=True)
class Received:
    """What intake recorded for one instance."""

    sop_instance_uid: str
    study_instance_uid: str
    duplicate: bool
    sop_class_uid: str | None = None
    """For STOW-RS responses, which name each instance by class and instance UID."""


@dataclass(frozen=True)
class WorklistRow:
    """One study as the worklist shows it (no patient data: UIDs and our own fields only)."""

    study_instance_uid: str
    state: str
    status: str | None
    priority: str | None
    """The model's priority (from the latest result); None before screening."""
    flagged: tuple[str, ...]
    first_received: float
    last_received: float
    version: int
    requested_priority: str | None = None
    """What the PACS or a person asked for (`stat`, `urgent`, `routine`)."""
    effective_priority: EffectivePriority = "routine"
    """The higher of the two, or `escalated` for a routine study left waiting too long."""
    reviewed_at: float | None = None


@dataclass(frozen=True)
class Claim:
    """A study taken for screening: `claimed_at` identifies the claim, `paths` what it covers."""

    study_instance_uid: str
    claimed_at: float
    paths: tuple[Path, ...]
    tries: int = 1
    """Claims of this study since its last result, this one included: more than one means
    earlier claims ended without a result (their process died, or could not record it)."""


@dataclass(frozen=True)
class OutboxItem:
    id: int
    study_instance_uid: str
    path: Path
    destination: str
    attempts: int


def open_read_only(storage: Path) -> sqlite3.Connection:
    """A read-only connection to a store's database, for exports that must never write it."""
    db_path = storage / DATABASE_FILE
    try:
        db = sqlite3.connect(db_path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the intake database: {exc}") from exc
    db.row_factory = sqlite3.Row
    return db


class IntakeStore:
    """The intake database and instance folder under one storage root."""

    def __init__(
        self,
        root: str | Path,
        *,
        limits: ReadLimits | None = None,
        lease_s: float = CLAIM_LEASE_S,
    ) -> None:
        self.root = Path(root)
        self.lease_s = lease_s
        self.instances_dir = self.root / "instances"
        self.results_dir = self.root / "results"
        self.incoming_dir = self.root / "incoming"
        for folder in (self.instances_dir, self.results_dir, self.incoming_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / DATABASE_FILE
        self.limits = limits or ReadLimits()
        self._local = threading.local()
        # executescript commits any open transaction itself, so it cannot run inside one;
        # every statement is idempotent (IF NOT EXISTS).
        self._connection().executescript(SCHEMA + evidence.SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring a store written by an older version up to date (idempotent, race-safe)."""
        db = self._connection()
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

    # -- connections ----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed transaction survives power loss, not only a process crash;
            # an acknowledgement is a promise.
            db.execute("PRAGMA synchronous=FULL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"intake database unavailable: {exc}") from exc
        try:
            yield db
        except sqlite3.Error as exc:  # a read-only, full or damaged database mid-transaction
            _rollback(db)
            raise StoreError(f"intake database could not record it: {exc}") from exc
        except BaseException:
            _rollback(db)
            raise
        else:
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(db)
                raise StoreError(f"intake database could not commit: {exc}") from exc

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction, for the store's companion modules (`review`)."""
        return self._transaction()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, for reads by the store's companion modules."""
        return self._connection()

    def close(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- intake ---------------------------------------------------------------------------

    def receive(self, data: bytes, source: str, requested_priority: str | None = None) -> Received:
        """Validate, write and record one instance; return only once it is durable.

        `requested_priority` is what the sender asked for (the C-STORE Priority); it raises
        the study's requested priority and never lowers it.

        Raises an `InputError` for data that is not a usable DICOM image (nothing is stored)
        and `StoreError` when it cannot be stored (the sender must retry).
        """
        info = read_info(data, self.limits)
        uids = info.uids
        digest = content_digest(data)
        name = f"{uuid.uuid4().hex}.dcm"
        partial = self.incoming_dir / (name + ".partial")
        try:
            write_synced(partial, data)
        except OSError as exc:
            with contextlib.suppress(OSError):  # the folder itself may be what failed
                partial.unlink(missing_ok=True)
            raise StoreError(f"could not write the instance to storage: {_os_reason(exc)}") from exc
        now = time.time()
        try:
            with self._transaction() as db:
                known = db.execute(
                    "SELECT study_instance_uid, path, digest FROM instances "
                    "WHERE sop_instance_uid = ?",
                    (uids.sop_instance_uid,),
                ).fetchone()
                if known is not None:
                    partial.unlink(missing_ok=True)
                    self._check_resend(
                        known, uids.study_instance_uid, uids.sop_instance_uid, digest
                    )
                    return Received(
                        uids.sop_instance_uid, uids.study_instance_uid, True, uids.sop_class_uid
                    )
                self._check_study_budget(db, uids.study_instance_uid, info.image_bytes)
                # the file exists before the row says so
                replace_synced(partial, self.instances_dir / name)
                db.execute(
                    """INSERT INTO instances (sop_instance_uid, study_instance_uid,
                       series_instance_uid, sop_class_uid, path, size, received_at, source,
                       digest, image_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        uids.sop_instance_uid,
                        uids.study_instance_uid,
                        uids.series_instance_uid,
                        uids.sop_class_uid,
                        name,
                        len(data),
                        now,
                        source,
                        digest,
                        info.image_bytes,
                    ),
                )
                db.execute(
                    """INSERT INTO studies (study_instance_uid, state, first_received,
                       last_received, instance_count, requested_priority)
                       VALUES (?, 'waiting', ?, ?, 1, ?)
                       ON CONFLICT (study_instance_uid) DO UPDATE SET
                         last_received = excluded.last_received,
                         instance_count = instance_count + 1,
                         state = CASE WHEN state = 'done' THEN 'waiting' ELSE state END,
                         requested_priority = CASE
                           WHEN requested_priority = 'stat' THEN requested_priority
                           WHEN excluded.requested_priority IN ('stat', 'urgent')
                             THEN excluded.requested_priority
                           ELSE coalesce(requested_priority, excluded.requested_priority) END""",
                    (uids.study_instance_uid, now, now, requested_priority),
                )
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return Received(uids.sop_instance_uid, uids.study_instance_uid, False, uids.sop_class_uid)

    def _check_resend(
        self, known: sqlite3.Row, study_instance_uid: str, sop_instance_uid: str, digest: str
    ) -> None:
        """An instance sent again is idempotent only when it is the same instance: a second,
        different copy under the same SOP Instance UID is refused, never silently dropped."""
        if known["study_instance_uid"] != study_instance_uid:
            raise DuplicateInstanceError(  # the reason first: STOW-RS cuts it to 64 characters
                f"already stored in another study: SOP Instance UID {sop_instance_uid} "
                f"(in study {known['study_instance_uid']}); a corrected instance needs a new "
                "SOP Instance UID"
            )
        stored = known["digest"]
        if stored is None:  # stored before digests were kept
            try:
                stored = content_digest((self.instances_dir / known["path"]).read_bytes())
            except OSError as exc:
                reason = _os_reason(exc)
                raise StoreError(f"could not read the stored copy to compare: {reason}") from exc
        if stored != digest:
            raise DuplicateInstanceError(
                f"different content under SOP Instance UID {sop_instance_uid}, already stored "
                "in this study; the stored copy is kept (a corrected instance needs a new SOP "
                "Instance UID)"
            )

    def _check_study_budget(
        self, db: sqlite3.Connection, study_instance_uid: str, image_bytes: int
    ) -> None:
        """Refuse an instance that would take its study past the per-study decode budget:
        screening and the review page decode a study's images together."""
        row = db.execute(
            "SELECT coalesce(sum(image_bytes), 0) AS held FROM instances "
            "WHERE study_instance_uid = ?",
            (study_instance_uid,),
        ).fetchone()
        held = int(row["held"])
        budget = self.limits.max_study_decoded_bytes
        if held + image_bytes > budget:
            raise TooLargeError(
                f"the study would decode to {held + image_bytes:,} bytes of images with this "
                f"instance ({image_bytes:,} of them), over the per-study budget of {budget:,}"
            )

    # -- what clients may see -------------------------------------------------------------

    def without_paths(self, text: str) -> str:
        """`text` without this store's folders: a reason names the instance file, never where
        the server keeps it (a client learns nothing of the server's layout)."""
        for folder in (self.instances_dir, self.root):
            text = text.replace(f"{folder}/", "")
        return text

    def result_without_paths(self, result: StudyResult) -> StudyResult:
        """The result with `without_paths` applied to every reason in it, before it is
        recorded, written into DICOM outputs or sent anywhere."""
        encoded = result.to_json()
        for folder in (self.instances_dir, self.root):
            escaped = json.dumps(f"{folder}/")[1:-1]  # as the folder appears inside JSON strings
            encoded = encoded.replace(escaped, "")
        return result if encoded == result.to_json() else StudyResult.from_json(encoded)

    # -- screening queue ------------------------------------------------------------------

    def recover(self, stray_age_s: float = 3600.0) -> int:
        """At start-up: claims of processes that are gone wait again; old partial files go.

        Only the process that runs the screening loop calls this. A claim whose lease ran out,
        or whose process on this machine no longer exists (a restart after a crash), waits
        again at once; a claim of a live process (a synchronous screening in another HTTP
        worker) is left alone. `tries` stay, so a study that keeps killing the service is
        noticed. Partial files younger than `stray_age_s` may belong to an upload still being
        written.
        """
        cutoff = time.time() - stray_age_s
        for stray in self.incoming_dir.glob("*.partial"):
            try:
                if stray.stat().st_mtime < cutoff:
                    stray.unlink(missing_ok=True)
            except FileNotFoundError:
                continue
        now = time.time()
        with self._transaction() as db:
            rows = db.execute(
                f"""SELECT study_instance_uid, claimed_at, claimed_by,
                   {_LEASE_OVER} AS over FROM studies WHERE state = 'screening'""",
                {"now": now, "lease": self.lease_s},
            ).fetchall()
            gone = [r for r in rows if r["over"] or not _alive(r["claimed_by"])]
            for row in gone:
                db.execute(
                    "UPDATE studies SET state = 'waiting', claimed_at = NULL, lease_until = NULL "
                    "WHERE study_instance_uid = ? AND claimed_at = ?",
                    (row["study_instance_uid"], row["claimed_at"]),
                )
            return len(gone)

    def claim_due(self, stable_s: float, limit: int = 8) -> list[Claim]:
        """Take up to `limit` studies that have been quiet for `stable_s` seconds, and claims
        whose lease ran out (their process died mid-screening)."""
        now = time.time()
        with self._transaction() as db:
            rows = db.execute(
                f"""SELECT study_instance_uid FROM studies
                   WHERE (state = 'waiting' AND last_received <= :quiet)
                      OR (state = 'screening' AND {_LEASE_OVER})
                   ORDER BY last_received LIMIT :limit""",
                {"quiet": now - stable_s, "now": now, "lease": self.lease_s, "limit": limit},
            ).fetchall()
            return [self._claim(db, row["study_instance_uid"], now) for row in rows]

    def claim_study(self, study_instance_uid: str) -> Claim | None:
        """Take one waiting study now, however recently it received an instance."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT 1 FROM studies WHERE study_instance_uid = ? AND state = 'waiting'",
                (study_instance_uid,),
            ).fetchone()
            return None if row is None else self._claim(db, study_instance_uid, now)

    def _claim(self, db: sqlite3.Connection, study: str, now: float) -> Claim:
        row = db.execute(
            """UPDATE studies SET state = 'screening', claimed_at = ?, lease_until = ?,
               claimed_by = ?, tries = tries + 1 WHERE study_instance_uid = ? RETURNING tries""",
            (now, now + self.lease_s, _owner(), study),
        ).fetchone()
        paths = tuple(
            self.instances_dir / r["path"]
            for r in db.execute(
                "SELECT path FROM instances WHERE study_instance_uid = ? ORDER BY received_at",
                (study,),
            )
        )
        return Claim(study, now, paths, int(row["tries"]))

    def renew(self, claims: Sequence[Claim]) -> list[Claim]:
        """Extend the lease of claims still held; returns those that are no longer ours."""
        if not claims:
            return []
        lost = []
        until = time.time() + self.lease_s
        with self._transaction() as db:
            for claim in claims:
                cursor = db.execute(
                    "UPDATE studies SET lease_until = ? WHERE study_instance_uid = ? "
                    "AND state = 'screening' AND claimed_at = ?",
                    (until, claim.study_instance_uid, claim.claimed_at),
                )
                if cursor.rowcount == 0:
                    lost.append(claim)
        return lost

    def complete(
        self,
        claim: Claim,
        result: StudyResult,
        outputs: Sequence[Path],
        destinations: Sequence[str],
        maps: Sequence[InstanceMaps] = (),
        on_record: Callable[[sqlite3.Connection, int], None] | None = None,
    ) -> int | None:
        """Record a result (with the class activation maps behind it, for the review page) and
        queue its outputs for every destination that carries them (`sender.carries`), in one
        transaction. `on_record(db, version)` writes a companion module's records in it too
        (the FHIR report context).

        Returns the new version, or None when instances arrived during screening: then the
        study waits again and the stale result is dropped (the next one will cover them).
        """
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT claimed_at, version, instance_count, state FROM studies "
                "WHERE study_instance_uid = ?",
                (claim.study_instance_uid,),
            ).fetchone()
            if row is None or row["state"] != "screening" or row["claimed_at"] != claim.claimed_at:
                return None  # no longer ours: released, or taken over after the lease ran out
            if int(row["instance_count"]) != len(claim.paths):
                # Not a failed try: the study changed under it.
                db.execute(
                    "UPDATE studies SET state = 'waiting', claimed_at = NULL, lease_until = NULL, "
                    "tries = 0 WHERE study_instance_uid = ?",
                    (claim.study_instance_uid,),
                )
                return None
            version = int(row["version"]) + 1
            db.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?)",
                (claim.study_instance_uid, version, now, len(claim.paths), result.to_json()),
            )
            flagged = ",".join(f.code for f in result.flagged)
            db.execute(
                """UPDATE studies SET state = 'done', claimed_at = NULL, lease_until = NULL,
                   tries = 0, version = ?, status = ?, priority = ?, flagged = ?
                   WHERE study_instance_uid = ?""",
                (version, result.status, result.priority, flagged, claim.study_instance_uid),
            )
            for item in maps:
                db.execute(
                    "INSERT INTO cams VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    evidence.to_row(claim.study_instance_uid, version, item),
                )
            if on_record is not None:
                on_record(db, version)
            for destination in destinations:
                for path in (p for p in outputs if carries(destination, p)):
                    db.execute(
                        """INSERT INTO outbox (study_instance_uid, version, path, destination,
                           state, next_attempt) VALUES (?, ?, ?, ?, 'pending', ?)""",
                        (claim.study_instance_uid, version, str(path), destination, now),
                    )
        return version

    def release(self, claim: Claim, *, failed: bool = False) -> None:
        """Give a claimed study back to the queue.

        At shutdown (`failed` False) the claim does not count as a try; after a failure to
        record its result (`failed` True) it does, so a study that can never be recorded ends
        as a `failed` result instead of being retried forever.
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE studies SET state = 'waiting', claimed_at = NULL, lease_until = NULL, "
                "tries = CASE WHEN ? THEN tries ELSE max(tries - 1, 0) END "
                "WHERE study_instance_uid = ? AND state = 'screening' AND claimed_at = ?",
                (failed, claim.study_instance_uid, claim.claimed_at),
            )

    # -- results --------------------------------------------------------------------------

    def latest_version(self, study_instance_uid: str) -> int:
        row = (
            self._connection()
            .execute(
                "SELECT version FROM studies WHERE study_instance_uid = ?", (study_instance_uid,)
            )
            .fetchone()
        )
        return int(row["version"]) if row is not None else 0

    def latest_result(self, study_instance_uid: str) -> tuple[int, StudyResult] | None:
        row = (
            self._connection()
            .execute(
                "SELECT version, result FROM results WHERE study_instance_uid = ? "
                "ORDER BY version DESC LIMIT 1",
                (study_instance_uid,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return int(row["version"]), StudyResult.from_json(row["result"])

    def study_state(self, study_instance_uid: str) -> dict[str, object] | None:
        row = (
            self._connection()
            .execute("SELECT * FROM studies WHERE study_instance_uid = ?", (study_instance_uid,))
            .fetchone()
        )
        return dict(row) if row is not None else None

    def worklist(
        self,
        *,
        status: str | None = None,
        finding: str | None = None,
        limit: int = 50,
        offset: int = 0,
        where: WorklistFilter | None = None,
        now: float | None = None,
        escalate_after_s: float = 3600.0,
    ) -> tuple[int, list[WorklistRow]]:
        """One page of studies in priority order (`diagnostics.intake.priority`): stat, then
        urgent and escalated, then routine, each longest waiting first; and how many match.

        `status` is a result status (`analyzed`, `not_analyzed`, `failed`) or `pending` for
        studies without a result yet; `finding` keeps studies with that finding flagged;
        `where` gives every filter at once (and wins over the two).
        """
        where = where or WorklistFilter(status=status, finding=finding)
        now = time.time() if now is None else now
        total, rows = worklist_page(
            self._connection(),
            where,
            now=now,
            escalate_after_s=escalate_after_s,
            limit=limit,
            offset=offset,
        )
        return total, [_worklist_row(r, now, escalate_after_s) for r in rows]

    def instances_of(self, study_instance_uid: str) -> list[tuple[str, Path]]:
        """(SOP Instance UID, file) of each stored instance of a study, in arrival order."""
        rows = (
            self._connection()
            .execute(
                "SELECT sop_instance_uid, path FROM instances WHERE study_instance_uid = ? "
                "ORDER BY received_at, sop_instance_uid",
                (study_instance_uid,),
            )
            .fetchall()
        )
        return [(r["sop_instance_uid"], self.instances_dir / r["path"]) for r in rows]

    def instance_path(self, study_instance_uid: str, sop_instance_uid: str) -> Path | None:
        for sop, path in self.instances_of(study_instance_uid):
            if sop == sop_instance_uid:
                return path
        return None

    def result_version(self, study_instance_uid: str, version: int) -> StudyResult | None:
        row = (
            self._connection()
            .execute(
                "SELECT result FROM results WHERE study_instance_uid = ? AND version = ?",
                (study_instance_uid, version),
            )
            .fetchone()
        )
        return StudyResult.from_json(row["result"]) if row is not None else None

    def class_maps(self, study_instance_uid: str, version: int) -> list[InstanceMaps]:
        """The class activation maps stored with a result (none for results stored before
        maps were kept, or for studies that were not analysed)."""
        rows = (
            self._connection()
            .execute(
                "SELECT sop_instance_uid, frame, codes, height, width, data FROM cams "
                "WHERE study_instance_uid = ? AND version = ? ORDER BY rowid",
                (study_instance_uid, version),
            )
            .fetchall()
        )
        return [evidence.from_row(tuple(r)) for r in rows]

    def counts(self) -> dict[str, int]:
        """Queue and outbox depths, for metrics and readiness."""
        db = self._connection()
        out = {f"studies_{s}": 0 for s in ("waiting", "screening", "done")}
        for row in db.execute("SELECT state, COUNT(*) AS n FROM studies GROUP BY state"):
            out[f"studies_{row['state']}"] = int(row["n"])
        pending = db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()
        out["outbox_pending"] = int(pending[0])
        oldest = db.execute(  # when the result an undelivered file carries was recorded
            "SELECT MIN(r.created) FROM outbox o JOIN results r USING (study_instance_uid, "
            "version) WHERE o.state = 'pending'"
        ).fetchone()[0]
        out["outbox_oldest_age_s"] = max(int(time.time() - oldest), 0) if oldest else 0
        out["instances"] = int(db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
        return out

    # -- outbox ---------------------------------------------------------------------------

    def due_outbox(self, limit: int = 16) -> list[OutboxItem]:
        rows = (
            self._connection()
            .execute(
                "SELECT id, study_instance_uid, path, destination, attempts FROM outbox "
                "WHERE state = 'pending' AND next_attempt <= ? ORDER BY id LIMIT ?",
                (time.time(), limit),
            )
            .fetchall()
        )
        return [
            OutboxItem(
                int(r["id"]),
                r["study_instance_uid"],
                Path(r["path"]),
                r["destination"],
                r["attempts"],
            )
            for r in rows
        ]

    def mark_sent(self, item: OutboxItem) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                (time.time(), item.id),
            )

    def mark_failed(self, item: OutboxItem, error: str, retry_in_s: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ? "
                "WHERE id = ?",
                (error[:500], time.time() + retry_in_s, item.id),
            )

    # -- audit ----------------------------------------------------------------------------

    def audit(self, actor: str, action: str, **detail: object) -> None:
        """Who did what: never patient names, IDs or birth dates, only our identifiers and UIDs."""
        with self._transaction() as db:
            audit_row(db, actor, action, **detail)

    def audit_entries(self, action: str | None = None) -> list[dict[str, object]]:
        query = "SELECT at, actor, action, detail FROM audit"
        params: tuple[str, ...] = ()
        if action is not None:
            query += " WHERE action = ?"
            params = (action,)
        rows = self._connection().execute(query + " ORDER BY id", params).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


_LEASE_OVER = "coalesce(lease_until, claimed_at + :lease) < :now"
"""A claim whose lease ran out (claims written before leases existed: `claimed_at` + lease)."""


def _owner() -> str:
    """Who holds a claim: lets a restarted service tell its dead predecessor's claims at once."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str | None) -> bool:
    """Whether a claim's process may still run: only one on this machine can be known dead
    (a process id reused since only delays the takeover to the lease)."""
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _rollback(db: sqlite3.Connection) -> None:
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        log.warning("intake database: rollback failed (the transaction is dropped anyway)")


def audit_row(db: sqlite3.Connection, actor: str, action: str, **detail: object) -> None:
    """An audit record inside the caller's transaction, so it commits with what it records."""
    db.execute(
        "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
        (time.time(), actor, action, json.dumps(detail, sort_keys=True, default=str)),
    )


def _worklist_row(r: sqlite3.Row, now: float, escalate_after_s: float) -> WorklistRow:
    reviewed = float(r["reviewed_at"]) if r["reviewed_at"] is not None else None
    return WorklistRow(
        study_instance_uid=r["study_instance_uid"],
        state=r["state"],
        status=r["status"],
        priority=r["priority"],
        flagged=tuple(c for c in (r["flagged"] or "").split(",") if c),
        first_received=float(r["first_received"]),
        last_received=float(r["last_received"]),
        version=int(r["version"]),
        requested_priority=r["requested_priority"],
        effective_priority=effective_priority(
            r["requested_priority"],
            r["priority"],
            float(r["first_received"]),
            reviewed,
            now,
            escalate_after_s,
        ),
        reviewed_at=reviewed,
    )


def content_digest(data: bytes) -> str:
    """SHA-256 of an instance's dataset, without its file meta: the same instance sent again
    through another door (STOW-RS, C-STORE) carries different file meta but the same dataset."""
    start = 0
    if data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00":
        (group_length,) = struct.unpack_from("<I", data, 140)
        if 144 + group_length <= len(data):
            start = 144 + group_length
    return hashlib.sha256(memoryview(data)[start:]).hexdigest()


def _os_reason(exc: OSError) -> str:
    """An OS error's reason without the file name it carries (a server path)."""
    return exc.strerror or type(exc).__name__
