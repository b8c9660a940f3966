"""A store's history of results, written as screening records them (the `studies` and
`results` rows of `Queue.complete`), with chosen probabilities: drift tests need hundreds of
studies whose score distribution is known, which screening images would neither give fast nor
exactly. Results are real `StudyResult`s; the store and its query are the real ones."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from diagnostics.package import ModelPackage
from diagnostics.package.reference import PROBABILITY_EDGES
from diagnostics.results import FindingResult, InstanceResult, ModelRef, StudyResult
from diagnostics.store.sqlite import SqliteStore

DAY_S = 86400.0


def reference_like(
    package: ModelPackage, code: str, n: int, rng: np.random.Generator
) -> list[float]:
    """Probabilities drawn from the package's reference histogram of `code` (uniform in a bin)."""
    ref = package.manifest.reference_distributions
    assert ref is not None
    counts = np.asarray(ref.findings[code], dtype=np.float64)
    bins = rng.choice(len(counts), size=n, p=counts / counts.sum())
    edges = np.asarray(PROBABILITY_EDGES)
    return [float(v) for v in rng.uniform(edges[bins], edges[bins + 1] - 1e-9)]


def record(
    store: SqliteStore,
    package: ModelPackage,
    probabilities: dict[str, list[float]],
    *,
    start: float | None = None,
    spread_s: float = 3 * DAY_S,
    appearance: float | Sequence[float] = 0.3,
    not_analysed: int = 0,
    prefix: str = "1.2.826.0.1.3680043.10.543.9",
) -> list[str]:
    """One analysed study per index of `probabilities`' lists (and `not_analysed` refused ones),
    recorded evenly over `spread_s` seconds before `start` (now); returns the study UIDs."""
    m = package.manifest
    ref = ModelRef(name=m.name, version=m.version, sha256=m.sha256)
    n = len(next(iter(probabilities.values())))
    start = time.time() if start is None else start
    uids, rows = [], []
    for k in range(n + not_analysed):
        uid, sop = f"{prefix}.{k + 1}", f"{prefix}.{k + 1}.1"
        created = start - spread_s * (k + 0.5) / (n + not_analysed)
        if k < n:
            findings = []
            for code in m.finding_codes:
                p = probabilities[code][k]
                threshold = m.operating_points[code].threshold
                findings.append(
                    FindingResult(
                        code=code,
                        display=code,
                        probability=p,
                        threshold=threshold,
                        flagged=p >= threshold,
                        sop_instance_uid=sop,
                        bbox=(1, 1, 5, 5) if p >= threshold else None,
                    )
                )
            result = StudyResult(
                study_instance_uid=uid,
                status="analyzed",
                priority="urgent" if any(f.flagged for f in findings) else "routine",
                model=ref,
                findings=findings,
                instances=[
                    InstanceResult(
                        sop_instance_uid=sop,
                        status="analyzed",
                        appearance_score=appearance
                        if isinstance(appearance, float)
                        else appearance[k],
                    )
                ],
            )
        else:
            reason = "Body Part Examined KNEE is outside this model's scope: it reads chests"
            result = StudyResult(
                study_instance_uid=uid,
                status="not_analyzed",
                reason=reason,
                model=ref,
                instances=[
                    InstanceResult(sop_instance_uid=sop, status="not_analyzed", reason=reason)
                ],
            )
        uids.append(uid)
        rows.append((uid, created, result))
    with store.sql_transaction() as db:
        for uid, created, result in rows:
            db.execute(
                "INSERT INTO studies (study_instance_uid, state, first_received, last_received, "
                "instance_count, version, status, priority) VALUES (?, 'done', ?, ?, 1, 1, ?, ?)",
                (uid, created, created, result.status, result.priority),
            )
            db.execute(
                "INSERT INTO results VALUES (?, 1, ?, 1, ?)", (uid, created, result.to_json())
            )
    return uids


def add_feedback(store: SqliteStore, uid: str, code: str, verdict: str) -> None:
    with store.sql_transaction() as db:
        db.execute(
            "INSERT INTO feedback (study_instance_uid, version, code, verdict, actor, created) "
            "VALUES (?, 1, ?, ?, 'token:test', ?)",
            (uid, code, verdict, time.time()),
        )
