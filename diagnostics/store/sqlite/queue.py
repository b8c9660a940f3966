"""The work queue in SQLite: claims and their leases, recorded results, and the outbox.

A study moves `waiting` -> `screening` -> `done`; an instance arriving for a study that is
already done sends it back to `waiting`, and the next result gets the next version and
supersedes the previous one.

Several processes (and, with PostgreSQL, several nodes) claim from one queue: SQLite admits one
writer at a time; PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so no study is claimed twice
and a claimer never waits on another's rows.

A claim (`screening`) is a lease: the process holding it renews `lease_until` while it screens
(`diagnostics.service.claims.Leases`), so a claim whose process died runs out within one lease
and the next claim takes it over; nothing acknowledged is lost. `tries` counts claims since
the study's last result: a study that keeps killing its screener is failed, not retried forever.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from diagnostics.dicom.patient import StudyHeader, study_header
from diagnostics.dicom.reader import read_info
from diagnostics.errors import InputError, StoreError
from diagnostics.results import StudyResult
from diagnostics.store import evidence
from diagnostics.store.evidence import InstanceMaps
from diagnostics.store.records import Claim, Delivery, OutboxItem, PreparedContext
from diagnostics.store.sql import Connection, Row
from diagnostics.store.sqlite import headers
from diagnostics.store.sqlite.connection import SqliteBase
from diagnostics.store.sqlite.transaction import SqliteTransaction

OUTBOX_LEASE_S = 300.0
"""How long a claimed outbox item is held by its sender: longer than a batch's deliveries."""


class Queue(SqliteBase):
    """The `studies` queue's claims and leases, `results` as they are recorded, the `outbox`."""

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
                   {_LEASE_OVER} AS over FROM studies WHERE state = 'screening'
                   {self.SKIP_LOCKED}""",
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
                   ORDER BY last_received LIMIT :limit {self.SKIP_LOCKED}""",
                {"quiet": now - stable_s, "now": now, "lease": self.lease_s, "limit": limit},
            ).fetchall()
            return [self._claim(db, row["study_instance_uid"], now) for row in rows]

    def claim_study(self, study_instance_uid: str) -> Claim | None:
        """Take one waiting study now, however recently it received an instance."""
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT 1 FROM studies WHERE study_instance_uid = ? AND state = 'waiting'"
                + self.SKIP_LOCKED,
                (study_instance_uid,),
            ).fetchone()
            return None if row is None else self._claim(db, study_instance_uid, now)

    def _claim(self, db: Connection, study: str, now: float) -> Claim:
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
        deliveries: Sequence[Delivery] = (),
        maps: Sequence[InstanceMaps] = (),
        context: PreparedContext | None = None,
    ) -> int | None:
        """Record a result (with the class activation maps behind it, for the review page and
        the FHIR report `context` for its version) and queue its `deliveries`, in one
        transaction.

        Returns the new version, or None when instances arrived during screening: then the
        study waits again and the stale result is dropped (the next one will cover them).
        """
        now = time.time()
        found = self._missing_headers(claim)
        with self._transaction() as db:
            row = db.execute(
                "SELECT claimed_at, version, instance_count, state FROM studies "
                "WHERE study_instance_uid = ?" + self.FOR_UPDATE,
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
            for header in found:
                headers.merge(db, claim.study_instance_uid, header)
            for item in maps:
                db.execute(
                    "INSERT INTO cams VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    evidence.to_row(claim.study_instance_uid, version, item),
                )
            if context is not None:
                if version != context.version:  # the bundle names the wrong version: never send it
                    raise StoreError(
                        f"study {claim.study_instance_uid}: result version {version} is being "
                        f"recorded but the FHIR report was built for version {context.version}"
                    )
                tx = SqliteTransaction(db)
                tx.record_fhir_context(claim.study_instance_uid, version, context.context)
            for delivery in deliveries:
                db.execute(
                    """INSERT INTO outbox (study_instance_uid, version, path, destination,
                       state, next_attempt) VALUES (?, ?, ?, ?, 'pending', ?)""",
                    (
                        claim.study_instance_uid,
                        version,
                        str(delivery.path),
                        delivery.destination,
                        now,
                    ),
                )
        return version

    def _missing_headers(self, claim: Claim) -> list[StudyHeader]:
        """The headers of a study received before `study_headers` existed (none for others):
        screening fills in what the worklist shows of it."""
        if headers.has_header(self._connection(), claim.study_instance_uid):
            return []
        found = []
        for path in claim.paths:
            try:
                found.append(study_header(read_info(path, self.limits).dataset))
            except (InputError, OSError):
                continue  # the result says why; the worklist shows what the others say
        return found

    def release(self, claim: Claim, *, failed: bool = False) -> None:
        """Give a claimed study back to the queue.

        At shutdown (`failed` False) the claim does not count as a try; after a failure to
        record its result (`failed` True) it does, so a study that can never be recorded ends
        as a `failed` result instead of being retried forever.
        """
        with self._transaction() as db:
            db.execute(
                "UPDATE studies SET state = 'waiting', claimed_at = NULL, lease_until = NULL, "
                "tries = CASE WHEN ? OR tries < 1 THEN tries ELSE tries - 1 END "
                "WHERE study_instance_uid = ? AND state = 'screening' AND claimed_at = ?",
                (failed, claim.study_instance_uid, claim.claimed_at),
            )

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
        return [_outbox_item(r) for r in rows]

    def claim_outbox(self, limit: int = 16, lease_s: float = OUTBOX_LEASE_S) -> list[OutboxItem]:
        """`due_outbox` for the one that delivers them: the items are held for `lease_s` (their
        next attempt moves on), so another worker or node never sends the same item at the
        same time; `mark_sent`/`mark_failed` end the hold, a dead sender's hold runs out."""
        now = time.time()
        with self._transaction() as db:
            rows = db.execute(
                "SELECT id, study_instance_uid, path, destination, attempts FROM outbox "
                "WHERE state = 'pending' AND next_attempt <= ? ORDER BY id LIMIT ?"
                + self.SKIP_LOCKED,
                (now, limit),
            ).fetchall()
            for r in rows:
                db.execute(
                    "UPDATE outbox SET next_attempt = ? WHERE id = ?", (now + lease_s, r["id"])
                )
        return [_outbox_item(r) for r in rows]

    def release_outbox(self, items: Sequence[OutboxItem]) -> None:
        """End the hold of claimed items not attempted (a stopping sender): due again now."""
        with self._transaction() as db:
            for item in items:
                db.execute(
                    "UPDATE outbox SET next_attempt = ? WHERE id = ? AND state = 'pending'",
                    (time.time(), item.id),
                )

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


def _outbox_item(r: Row) -> OutboxItem:
    return OutboxItem(
        int(r["id"]), r["study_instance_uid"], Path(r["path"]), r["destination"], r["attempts"]
    )


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
