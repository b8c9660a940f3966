"""Results to build reports from: real StudyResults against the bundled model's catalogue."""

from __future__ import annotations

from diagnostics.fhir import PatientIdentity, ReportContext
from diagnostics.package import Manifest
from diagnostics.results import FindingResult, InstanceResult, ModelRef, StudyResult

STUDY = "1.2.826.0.1.3680043.8.498.11"
IMAGE = "1.2.826.0.1.3680043.8.498.12"


def model_ref(manifest: Manifest) -> ModelRef:
    return ModelRef(name=manifest.name, version=manifest.version, sha256=manifest.sha256)


def analysed(manifest: Manifest, flagged: str | None = "nodule") -> StudyResult:
    """Every finding of the model; `flagged` above its operating point, the others below."""
    findings = []
    for spec in manifest.findings:
        threshold = manifest.operating_points[spec.code].threshold
        hit = spec.code == flagged
        probability = min(1.0, threshold + 0.3) if hit else threshold / 2
        findings.append(
            FindingResult(
                code=spec.code,
                display=spec.display,
                probability=probability,
                threshold=threshold,
                flagged=hit,
                sop_instance_uid=IMAGE,
            )
        )
    return StudyResult(
        study_instance_uid=STUDY,
        status="analyzed",
        priority="urgent" if flagged else "routine",
        model=model_ref(manifest),
        findings=findings,
        instances=[InstanceResult(sop_instance_uid=IMAGE, status="analyzed")],
    )


def context(manifest: Manifest) -> ReportContext:
    header = None
    return ReportContext.from_header(header, manifest).model_copy(
        update={"patient": PatientIdentity(id="PAT-0042", issuer="1.2.3.4.5")}
    )
