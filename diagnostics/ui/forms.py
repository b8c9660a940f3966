"""The review UI's form posts, checked: CSRF first, then each field, with messages a person can
act on (they are shown on the page, as `RequestError`s)."""

from __future__ import annotations

import hmac
import math
from collections.abc import Mapping

from diagnostics.api.params import whole_number
from diagnostics.api.session import Session
from diagnostics.errors import RequestError
from diagnostics.service.review import FeedbackInput
from diagnostics.store.records import VERDICTS, Verdict

MAX_FIELD = 4000


def check_csrf(session: Session | None, form: Mapping[str, str]) -> None:
    """A form post must come from a page we served to this session.

    Together with SameSite=Strict cookies this stops another site from posting feedback in a
    radiologist's name. Posts authenticated by a bearer token carry no cookie and so no
    session: they are refused too, because the forms are for browsers only.
    """
    if session is None:
        raise RequestError("forms need a browser session: sign in at /ui/login")
    given = form.get("csrf", "")
    if not given or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise RequestError("the form has expired or did not come from this site; reload the page")


def text(form: Mapping[str, str], name: str, required: bool = False) -> str:
    value = form.get(name, "")
    if len(value) > MAX_FIELD:
        raise RequestError(f"{name} is too long")
    if required and not value.strip():
        raise RequestError(f"{name} is required")
    return value


def number(form: Mapping[str, str], name: str) -> float | None:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise RequestError(f"{name} must be a number, not {raw[:20]!r}") from None
    if not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number")
    return value


def feedback_input(study_instance_uid: str, form: Mapping[str, str]) -> FeedbackInput:
    verdict = text(form, "verdict", required=True)
    if verdict not in VERDICTS:
        raise RequestError(f"verdict must be one of {', '.join(VERDICTS)}")
    version = whole_number(text(form, "version", required=True), "version", low=1)
    corners = [number(form, n) for n in ("x0", "y0", "x1", "y1")]
    box = None
    if all(c is not None for c in corners):
        x0, y0, x1, y1 = (float(c or 0.0) for c in corners)
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    verdict_value: Verdict = verdict
    return FeedbackInput(
        study_instance_uid=study_instance_uid,
        version=version,
        code=text(form, "code", required=True),
        verdict=verdict_value,
        comment=text(form, "comment"),
        sop_instance_uid=text(form, "sop_instance_uid").strip() or None,
        x=number(form, "x"),
        y=number(form, "y"),
        box=box if box is not None and box[0] < box[2] and box[1] < box[3] else None,
    )


def priority_choice(form: Mapping[str, str]) -> str | None:
    """The requested priority a person chose; empty clears it."""
    return text(form, "priority").strip() or None
