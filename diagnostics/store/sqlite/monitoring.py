"""The query behind monitoring (`diagnostics.service.monitoring`): each study's current result
recorded since a time, with its latest verdict per finding.

Bounded by the window: `results_by_created` (schema) lets it read only the recent results, and
only the fields monitoring counts are kept. Shared by the live store and the read-only snapshot
(`diagnostics monitor` beside a running service).
"""

from __future__ import annotations

import json

from diagnostics.store.records import MonitoredResult
from diagnostics.store.sql import Connection

RESULTS_SQL = """
SELECT r.study_instance_uid AS study, r.version AS version, r.created AS created,
       r.result AS result
FROM results r JOIN studies s ON s.study_instance_uid = r.study_instance_uid
WHERE r.created >= ? AND r.version = s.version
ORDER BY r.created
"""
FEEDBACK_SQL = """
SELECT f.study_instance_uid AS study, f.code AS code, f.verdict AS verdict
FROM feedback f JOIN results r
  ON r.study_instance_uid = f.study_instance_uid AND r.version = f.version
WHERE r.created >= ? AND f.verdict IN ('agree', 'disagree', 'missed')
  AND f.id = (SELECT MAX(g.id) FROM feedback g
              WHERE g.study_instance_uid = f.study_instance_uid AND g.version = f.version
                AND g.code = f.code AND g.verdict IN ('agree', 'disagree', 'missed'))
"""


def monitored_results(db: Connection, since: float) -> list[MonitoredResult]:
    """Current results recorded at or after `since` (epoch seconds), oldest first."""
    verdicts: dict[str, list[tuple[str, str]]] = {}
    for row in db.execute(FEEDBACK_SQL, (since,)):
        verdicts.setdefault(row[0], []).append((str(row[1]), str(row[2])))
    out = []
    for row in db.execute(RESULTS_SQL, (since,)):
        data = json.loads(row[3])
        model = data.get("model") or {}
        out.append(
            MonitoredResult(
                created=float(row[2]),
                status=str(data["status"]),
                reason=data.get("reason"),
                model_version=model.get("version"),
                findings=tuple(
                    (str(f["code"]), float(f["probability"]), bool(f["flagged"]))
                    for f in data.get("findings") or ()
                ),
                appearance=tuple(
                    float(i["appearance_score"])
                    for i in data.get("instances") or ()
                    if i.get("appearance_score") is not None
                ),
                feedback=tuple(sorted(verdicts.get(row[0], ()))),
            )
        )
    return out
