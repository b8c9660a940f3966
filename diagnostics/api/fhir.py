"""`GET /v1/studies/{uid}/fhir`: the newest result as the FHIR R4 transaction Bundle the EMR
gets (`diagnostics.fhir`), `final` once a radiologist has marked the study read."""

from __future__ import annotations

import math

from diagnostics.api.endpoints import Reply, unknown_study
from diagnostics.fhir.client import FHIR_JSON
from diagnostics.service import fhir_reports
from diagnostics.service.runtime import Runtime


def fhir_reply(runtime: Runtime, study_instance_uid: str, actor: str) -> Reply:
    """200 with the bundle; 202 while the study has no result yet; 404 for an unknown study."""
    state = runtime.store.study_state(study_instance_uid)
    if state is None:
        return unknown_study(study_instance_uid)
    screener = runtime.screener
    manifest = screener.package.manifest if screener is not None else None
    current = fhir_reports.current_bundle(
        runtime.store, study_instance_uid, manifest, runtime.config.report_language
    )
    if current is None:
        wait = max(1, math.ceil(runtime.config.stable_seconds))
        body = {
            "error": "NotScreened",
            "message": "the study has no result yet; poll again",
            "study_instance_uid": study_instance_uid,
        }
        return Reply(202, body, headers={"Retry-After": str(wait)})
    version, bundle = current
    runtime.store.audit(actor, "fhir_report_read", study=study_instance_uid, version=version)
    return Reply(200, bundle, media_type=FHIR_JSON)
