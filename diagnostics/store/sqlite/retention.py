"""Retention in SQLite: delete the images and output files of old, finished studies.

What goes: the stored instances of a study and its output files (SR, overlay, presentation
state, FHIR bundles). What stays: the study's row (the worklist), every result version, the
outbox rows (their destinations name where a later final FHIR report goes), feedback and the
audit trail. `studies.purged_at` records that the images went, so the pages and the API say so.

A study qualifies only when it is done (not waiting, not being screened), nothing of it is
pending in the outbox, and its newest result is older than the cutoff; all of that is checked
in the same write transaction that removes its rows, so a claim or a delivery cannot slip in
between.

Order, for crash safety: rows first, files after. The transaction deletes the instance rows
(and the `cams` rows, the heatmaps, which only make sense over the images), sets `purged_at`
and resets the study's instance count, so a study sent again later is screened on what arrives
after the purge; `purged_at` stays, so the API and the pages keep saying that the earlier
images went. Only then are the files deleted. A crash in between leaves files that no row
names, never a row naming a missing file: the next purge finds them (`leftovers`) and deletes
them: instance files no row names (older than an hour, so never a file intake is about to record)
and output files of purged studies written before their purge.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

from diagnostics.store.records import PurgedStudy, PurgeReport
from diagnostics.store.sql import Connection, Row
from diagnostics.store.sqlite.connection import SqliteBase
from diagnostics.store.sqlite.transaction import audit_row

BATCH = 200
"""Studies purged per transaction (and per audit row): the write lock is held briefly."""

STRAY_INSTANCE_AGE_S = 3600.0
"""An instance file no row names is a leftover only this long after it was written: intake
publishes the file just before the row that names it commits."""

_CANDIDATES = """
SELECT s.study_instance_uid AS study, r.created AS created
FROM studies s JOIN results r
  ON r.study_instance_uid = s.study_instance_uid AND r.version = s.version
WHERE s.state = 'done' AND r.created < :cutoff
  AND EXISTS (SELECT 1 FROM instances i WHERE i.study_instance_uid = s.study_instance_uid)
  AND NOT EXISTS (SELECT 1 FROM outbox o
                  WHERE o.study_instance_uid = s.study_instance_uid AND o.state = 'pending')
ORDER BY r.created, s.study_instance_uid LIMIT :limit
"""


class Retention(SqliteBase):
    """`purge`: the retention window applied to stored images and outputs."""

    def purge(
        self,
        cutoff: float,
        *,
        dry_run: bool = False,
        actor: str = "retention",
        leftovers: bool = True,
    ) -> PurgeReport:
        """Delete the images and outputs of done studies whose newest result was recorded
        before `cutoff` (a Unix time), and, with `leftovers`, what an interrupted purge left
        behind; with `dry_run`, only say what would go. Audited (study UIDs and counts only).

        Only the due studies' folders are looked at; the leftover sweep walks the whole
        `instances/` folder and every purged study, so a frequent caller (the service's job)
        asks for it only now and then."""
        studies: list[PurgedStudy] = []
        if dry_run:
            rows = self._connection().execute(_CANDIDATES, {"cutoff": cutoff, "limit": 2**62})
            for row in rows.fetchall():
                files = self._instance_files(self._connection(), row["study"])
                studies.append(_study(row, files + self._outputs_of(row["study"])))
        else:
            while True:
                batch = self._purge_batch(cutoff, actor)
                studies += batch
                for item in batch:  # the rows are gone: the files are no one's now
                    _delete(item.files, self.results_dir)
                if len(batch) < BATCH:
                    break
        stray = self._leftovers() if leftovers else []
        stray_bytes = sum(_file_size(p) for p in stray)
        freed = sum(s.bytes for s in studies) + stray_bytes
        if stray and not dry_run:
            _delete(stray, self.results_dir)
            self.audit(actor, "purge_leftovers", files=len(stray), bytes=stray_bytes)
        return PurgeReport(cutoff, tuple(studies), tuple(stray), freed, dry_run)

    def _purge_batch(self, cutoff: float, actor: str) -> list[PurgedStudy]:
        now = time.time()
        with self._transaction() as db:
            # PostgreSQL: lock the rows, passing over those another node is purging or
            # receiving into; intake into a locked one waits, then sends the study back to
            # `waiting` with only its new instance.
            rows = db.execute(
                _CANDIDATES + self.SKIP_LOCKED, {"cutoff": cutoff, "limit": BATCH}
            ).fetchall()
            batch = []
            for row in rows:
                study = row["study"]
                files = self._instance_files(db, study)
                batch.append(_study(row, files + self._outputs_of(study, db)))
                db.execute("DELETE FROM instances WHERE study_instance_uid = ?", (study,))
                db.execute("DELETE FROM cams WHERE study_instance_uid = ?", (study,))
                db.execute(
                    "UPDATE studies SET purged_at = ?, instance_count = 0 "
                    "WHERE study_instance_uid = ?",
                    (now, study),
                )
            if batch:
                audit_row(
                    db,
                    actor,
                    "images_purged",
                    studies=[s.study_instance_uid for s in batch],
                    files=sum(len(s.files) for s in batch),
                    bytes=sum(s.bytes for s in batch),
                    cutoff=cutoff,
                )
        return batch

    def _instance_files(self, db: Connection, study: str) -> list[Path]:
        rows = db.execute("SELECT path FROM instances WHERE study_instance_uid = ?", (study,))
        return [self.instances_dir / r["path"] for r in rows.fetchall()]

    def _outputs_of(self, study: str, db: Connection | None = None) -> list[Path]:
        """One study's output files: the folders screening writes (`results/<run>/<study
        uid>/`, one look per run folder) and the files its outbox rows name (FHIR bundles,
        `results/<run>/<file>`). Outbox paths are matched by their last two parts, whatever
        folder the service ran in."""
        found = [
            p for run in _entries(self.results_dir) for p in _entries(run / study) if p.is_file()
        ]
        rows = (db or self._connection()).execute(
            "SELECT DISTINCT path FROM outbox WHERE study_instance_uid = ?", (study,)
        )
        for row in rows.fetchall():
            path = Path(row["path"])
            local = self.results_dir / path.parent.name / path.name
            if path.parent.name and local.is_file() and local not in found:
                found.append(local)
        return found

    def _leftovers(self) -> list[Path]:
        """Files of an interrupted purge: instance files no row names (old enough that intake
        is not about to record them) and output files of purged studies from before their
        purge that no pending delivery needs."""
        db = self._connection()
        named = {r["path"] for r in db.execute("SELECT path FROM instances").fetchall()}
        old = time.time() - STRAY_INSTANCE_AGE_S
        stray = [
            p
            for p in _entries(self.instances_dir)
            if p.suffix == ".dcm" and p.name not in named and _mtime(p) < old
        ]
        purged = {
            r["study_instance_uid"]: float(r["purged_at"])
            for r in db.execute(
                "SELECT study_instance_uid, purged_at FROM studies WHERE purged_at IS NOT NULL"
            ).fetchall()
        }
        for study, at in purged.items():
            if not _pending_here(db, study):
                stray += [p for p in self._outputs_of(study, db) if _mtime(p) <= at]
        return sorted(set(stray))


def _pending_here(db: Connection, study: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM outbox WHERE study_instance_uid = ? AND state = 'pending' LIMIT 1",
        (study,),
    ).fetchone()
    return row is not None


def _study(row: Row, files: list[Path]) -> PurgedStudy:
    return PurgedStudy(
        row["study"], float(row["created"]), tuple(files), sum(_file_size(p) for p in files)
    )


def _entries(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")  # gone, or unreadable: never a leftover


def _delete(files: Iterable[Path], results_dir: Path) -> None:
    """Unlink each file, then the output folders this left empty (never `results` itself)."""
    folders: set[Path] = set()
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        if path.parent != results_dir and results_dir in path.parents:
            folders.add(path.parent)
            if path.parent.parent != results_dir:
                folders.add(path.parent.parent)
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: something else still lives there
            os.rmdir(folder)
