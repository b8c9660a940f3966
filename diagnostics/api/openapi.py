"""What the service's OpenAPI page (`/docs`, `/docs.json`) says about the routes of
`diagnostics.api.app`.

The endpoints read raw bodies themselves (DICOM, multiparts), so nothing here validates a
request: these are descriptions only. Response bodies refer to the models the endpoints build
(`diagnostics.api.schemas`), so the page cannot drift from what is sent.
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel

from diagnostics.api.endpoints import DEFAULT_PAGE, MAX_PAGE
from diagnostics.api.schemas import (
    ErrorBody,
    PendingScreen,
    Refusal,
    StudyState,
    WorklistPage,
    WorklistStatus,
)
from diagnostics.results import StudyResult

TAG = "radiology"
_BINARY = {"type": "string", "format": "binary"}
_DICOM_BODIES = {
    "application/dicom": {"schema": _BINARY},
    'multipart/related; type="application/dicom"': {"schema": _BINARY},
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "array", "items": _BINARY}},
        }
    },
}
_DICOM_JSON = "application/dicom+json"
_STOW_BODY = {"schema": {"type": "object", "description": "DICOM JSON (PS3.18 F.2)"}}


def _error(description: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    return {"model": model, "description": description}


_SERVICE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("no valid bearer token (`Authorization: Bearer <token>`)"),
    503: _error("starting, stopping or storage unavailable; retry after `Retry-After` seconds"),
    500: _error("an unexpected error (`InternalError`); the service log has the details"),
}
_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: _error("the request is larger than the configured limit"),
    415: _error("not DICOM or a DICOM multipart"),
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_STUDY_UID = {
    "name": "study_uid",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "StudyInstanceUID",
}

ROUTE_DOCS: dict[str, dict[str, Any]] = {
    "/v1/screen": {
        "summary": "Screen a study now and return its result",
        "description": (
            "Stores the instances durably, screens each study at once and answers with its "
            "StudyResult (a list when the request holds several studies). All or nothing: if "
            "any part is not a usable DICOM image, nothing is stored and every refused part is "
            "named. A study the model cannot read is `not_analyzed` or `failed` with a reason, "
            "never reported as normal."
        ),
        "responses": {
            200: {"model": StudyResult | list[StudyResult], "description": "screened"},
            202: {
                "model": PendingScreen,
                "description": (
                    "stored; screening not finished within the wait setting (default 30 s) or "
                    "the service is stopping: poll `Location` after `Retry-After` seconds"
                ),
            },
            400: _error("a malformed request, or a part that is not DICOM", Refusal),
            422: _error("a part is DICOM but not a usable image", Refusal),
            **_UPLOAD_ERRORS,
            **_SERVICE_ERRORS,
        },
        "openapi_extra": {"requestBody": {"required": True, "content": _DICOM_BODIES}},
    },
    "/dicomweb/studies": {
        "summary": "STOW-RS: store instances; they are screened once the study is quiet",
        "description": (
            "DICOMweb Store (PS3.18 10.5). The response lists each instance as stored "
            "(ReferencedSOPSequence) or refused with a Failure Reason and a comment "
            "(FailedSOPSequence). Results go to the configured PACS and to GET /v1/studies."
        ),
        "responses": {
            200: {"description": "every instance stored", "content": {_DICOM_JSON: _STOW_BODY}},
            202: {"description": "some instances refused", "content": {_DICOM_JSON: _STOW_BODY}},
            409: {"description": "every instance refused", "content": {_DICOM_JSON: _STOW_BODY}},
            400: _error("a malformed multipart"),
            **_UPLOAD_ERRORS,
            **_SERVICE_ERRORS,
        },
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {'multipart/related; type="application/dicom"': {"schema": _BINARY}},
            }
        },
    },
    "/v1/studies/{study_uid}": {
        "summary": "The newest result of a study",
        "responses": {
            200: {"model": StudyState, "description": "screened; `result` is the newest version"},
            202: {"model": StudyState, "description": "(re)screening is due; poll again"},
            404: _error("no instance of this study has been received"),
            **_SERVICE_ERRORS,
        },
        "openapi_extra": {"parameters": [_STUDY_UID]},
    },
    "/v1/studies/{study_uid}/fhir": {
        "summary": "The newest result as a FHIR R4 transaction Bundle",
        "description": (
            "What the EMR gets (`--results-to fhir+https://...`): a DiagnosticReport (preliminary "
            "until a radiologist marks the study read, then final), one Observation per finding "
            "and a Device for the model. A study that was not analysed gets a report that says "
            "so, never a normal one."
        ),
        "responses": {
            200: {
                "description": "the Bundle",
                "content": {"application/fhir+json": {"schema": {"type": "object"}}},
            },
            202: _error("no result yet; poll again"),
            404: _error("no instance of this study has been received"),
            **_SERVICE_ERRORS,
        },
        "openapi_extra": {"parameters": [_STUDY_UID]},
    },
    "/v1/worklist": {
        "summary": "The worklist in priority order",
        "description": (
            "Stat first, then urgent and escalated (routine studies waiting too long), then "
            "routine; longest waiting first within each."
        ),
        "responses": {
            200: {"model": WorklistPage, "description": "one page"},
            400: _error("an unknown or malformed query parameter"),
            **_SERVICE_ERRORS,
        },
        "openapi_extra": {
            "parameters": [
                _query(
                    "status",
                    {"type": "string", "enum": list(get_args(WorklistStatus))},
                    "only studies with this status",
                ),
                _query("finding", {"type": "string"}, "only studies flagged for this finding"),
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE},
                    "page size",
                ),
                _query("offset", {"type": "integer", "minimum": 0, "default": 0}, "skip"),
            ]
        },
    },
}
