"""Intake into the SQLite store: every acknowledged instance is on disk and recorded before the
sender hears OK.

Instance files are named by our own identifiers, never by anything read from a DICOM header.
A file is written and synced before the row that names it; a second copy of an instance is
accepted only when it is the same instance.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import time
import uuid
from pathlib import Path

from diagnostics.dicom.image import InstanceUids
from diagnostics.dicom.patient import study_header
from diagnostics.dicom.reader import read_info
from diagnostics.durable import replace_synced, write_synced
from diagnostics.errors import DuplicateInstanceError, StoreError, TooLargeError
from diagnostics.store.records import Received
from diagnostics.store.sql import Connection, Row
from diagnostics.store.sqlite import audit, headers
from diagnostics.store.sqlite.connection import SqliteBase


class Instances(SqliteBase):
    """The `instances` table and folder, and the study rows intake creates."""

    def receive(
        self,
        data: bytes,
        source: str,
        requested_priority: str | None = None,
        address: str | None = None,
    ) -> Received:
        """Validate, write and record one instance; return only once it is durable.

        `requested_priority` is what the sender asked for (the C-STORE Priority); it raises
        the study's requested priority and never lowers it. The audit row for the instance
        (sender, `address`, UIDs) commits with it: every acknowledged instance is audited.

        Raises an `InputError` for data that is not a usable DICOM image (nothing is stored)
        and `StoreError` when it cannot be stored (the sender must retry).
        """
        info = read_info(data, self.limits)
        uids = info.uids
        header = study_header(info.dataset)
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
                self._serialize(db, uids.study_instance_uid)
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
                    _audit_received(db, source, address, uids, resent=True)
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
                         instance_count = studies.instance_count + 1,
                         state = CASE WHEN studies.state = 'done' THEN 'waiting'
                           ELSE studies.state END,
                         requested_priority = CASE
                           WHEN studies.requested_priority = 'stat' THEN 'stat'
                           WHEN excluded.requested_priority IN ('stat', 'urgent')
                             THEN excluded.requested_priority
                           ELSE coalesce(studies.requested_priority,
                             excluded.requested_priority) END""",
                    (uids.study_instance_uid, now, now, requested_priority),
                )
                headers.merge(db, uids.study_instance_uid, header)
                _audit_received(db, source, address, uids, resent=False)
                self._announce(db)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return Received(uids.sop_instance_uid, uids.study_instance_uid, False, uids.sop_class_uid)

    def _check_resend(
        self, known: Row, study_instance_uid: str, sop_instance_uid: str, digest: str
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
        self, db: Connection, study_instance_uid: str, image_bytes: int
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

    # -- stored instances -----------------------------------------------------------------

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


def _audit_received(
    db: Connection, source: str, address: str | None, uids: InstanceUids, resent: bool
) -> None:
    """The instance's audit row (UIDs only, never header values), in the intake transaction."""
    audit.write(
        db,
        source,
        "instance_stored",
        study=uids.study_instance_uid,
        sop=uids.sop_instance_uid,
        address=address,
        series=uids.series_instance_uid,
        sop_class=uids.sop_class_uid,
        resent=resent,
    )
