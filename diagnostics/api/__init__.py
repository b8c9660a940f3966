"""The HTTP face of the library: request parsing, STOW-RS responses, authentication, size
limits, metrics and the endpoint logic that `diagnostics/serving/service.py` wires to BentoML.

Everything here runs and is tested without a server.
"""

from diagnostics.api.app import create_app, render
from diagnostics.api.auth import ACTOR_KEY, EXEMPT_PATHS, AuthPolicy, BearerAuth, actor_of
from diagnostics.api.bodies import Part, split_body, split_dicom_parts
from diagnostics.api.endpoints import (
    Reply,
    screen_upload,
    store_upload,
    study_reply,
    worklist_reply,
)
from diagnostics.api.limits import BodySizeLimit, BodyTooLargeError
from diagnostics.api.metrics import ServiceMetrics, render_metrics
from diagnostics.api.status import http_status
from diagnostics.api.stow import StowItem, build_stow_response
from diagnostics.api.timeouts import BodyReadTimeout

__all__ = [
    "ACTOR_KEY",
    "EXEMPT_PATHS",
    "AuthPolicy",
    "BearerAuth",
    "BodyReadTimeout",
    "BodySizeLimit",
    "BodyTooLargeError",
    "Part",
    "Reply",
    "ServiceMetrics",
    "StowItem",
    "actor_of",
    "build_stow_response",
    "create_app",
    "http_status",
    "render",
    "render_metrics",
    "screen_upload",
    "split_body",
    "split_dicom_parts",
    "store_upload",
    "study_reply",
    "worklist_reply",
]
