"""A store holding screened studies with results we choose, for feedback tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diagnostics.results import FindingResult, InstanceResult, ModelRef, StudyResult
from diagnostics.store.evidence import InstanceMaps
from diagnostics.store.sqlite import SqliteStore

CODES = ("nodule", "consolidation", "cardiomegaly")
DISPLAY = {
    "nodule": "Lung nodule",
    "consolidation": "Consolidation",
    "cardiomegaly": "Cardiomegaly",
    "pneumothorax": "Pneumothorax",
}
MODEL = ModelRef(name="cxr-test", version="9.9.9", sha256="a" * 64)


def screened(
    store: SqliteStore,
    data: bytes,
    flagged: set[str],
    status: str = "analyzed",
    codes: tuple[str, ...] = CODES,
) -> tuple[str, str, int]:
    """Receive one instance and record a result on `codes` flagging `flagged`;
    (study, sop, version)."""
    received = store.receive(data, "test")
    study, sop = received.study_instance_uid, received.sop_instance_uid
    claim = store.claim_study(study)
    assert claim is not None
    if status == "analyzed":
        findings = [
            FindingResult(
                code=code,
                display=DISPLAY[code],
                probability=0.9 if code in flagged else 0.1,
                threshold=0.5,
                flagged=code in flagged,
                sop_instance_uid=sop,
                bbox=(10, 20, 60, 90) if code in flagged else None,
            )
            for code in codes
        ]
        result = StudyResult(
            study_instance_uid=study,
            status="analyzed",
            priority="urgent" if flagged else "routine",
            model=MODEL,
            findings=findings,
            instances=[InstanceResult(sop_instance_uid=sop, status="analyzed")],
        )
        cams = np.full((len(codes), 10, 10), -2.0, dtype=np.float32)
        maps = [InstanceMaps(sop, 0, codes, cams)]
    else:
        result = StudyResult(
            study_instance_uid=study,
            status="not_analyzed",
            reason="out of scope: CT",
            model=MODEL,
            instances=[InstanceResult(sop_instance_uid=sop, status="not_analyzed", reason="CT")],
        )
        maps = []
    version = store.complete(claim, result, maps=maps)
    assert version is not None
    return study, sop, version


def file_bytes(folder: Path, file: str) -> bytes:
    return (folder / file).read_bytes()
