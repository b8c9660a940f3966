"""Reading the SQLite store: results, the worklist, evidence, feedback, queue depths."""

from __future__ import annotations

import time
from collections.abc import Sequence

from diagnostics.results import StudyResult
from diagnostics.store import evidence
from diagnostics.store.evidence import InstanceMaps
from diagnostics.store.priority import WorklistFilter
from diagnostics.store.records import Feedback, MonitoredResult, StudyFacts, WorklistRow
from diagnostics.store.sqlite.connection import SqliteBase
from diagnostics.store.sqlite.headers import facts_of
from diagnostics.store.sqlite.monitoring import monitored_results
from diagnostics.store.sqlite.worklist import worklist_page, worklist_row


class Results(SqliteBase):
    """Reads of `studies`, `results`, `cams` and `feedback`, outside any write transaction."""

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

    def study_facts(self, study_instance_uids: Sequence[str]) -> dict[str, StudyFacts]:
        """Patient and study facts of each study that has them (the review pages only)."""
        return facts_of(self._connection(), study_instance_uids)

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
        """One page of studies in priority order (`diagnostics.store.priority`): stat, then
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
        return total, [worklist_row(r, now, escalate_after_s) for r in rows]

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

    def monitored_results(self, since: float) -> list[MonitoredResult]:
        """Each study's current result recorded since `since`, for monitoring."""
        return monitored_results(self._connection(), since)

    def feedback_for(self, study_instance_uid: str) -> list[Feedback]:
        """A study's feedback, oldest first."""
        return self.view().feedback_for(study_instance_uid)
