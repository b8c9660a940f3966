"""What the study page's viewer needs beyond the pixels: window presets, the R/L marker, the
second image beside the first, and the patient's other studies.

Radiograph pixel values have no absolute scale (unlike CT's Hounsfield units), so the presets
are windows over this image's own grey-value distribution, not fixed numbers: "lung" spreads
the darker part (aerated lung) over the grey range, "mediastinum" and "bone" the denser part.
The marker comes only from Patient Orientation; when it is empty the page says "orientation
unknown" instead of guessing from the view position (a PA film hung back to front is exactly
the case a marker must not hide).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo

import numpy as np
from pydicom.dataset import Dataset

from diagnostics.i18n import N_
from diagnostics.store import Store
from diagnostics.store.priority import WorklistFilter
from diagnostics.ui.patient import iso_date, local_time
from diagnostics.ui.render import DisplayWindow

PRESETS = {
    "default": N_("Default"),
    "lung": N_("Lung"),
    "mediastinum": N_("Mediastinum"),
    "bone": N_("Bone"),
}
"""Preset names and their button labels, in the order of their keys 1 to 4."""
PRESET_PERCENTILES = {"lung": (1.0, 60.0), "mediastinum": (45.0, 99.5), "bone": (70.0, 99.9)}
OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LAT"})
MAX_PRIORS = 20


def presets(pixels: np.ndarray, default: DisplayWindow) -> dict[str, DisplayWindow]:
    """Each preset's window for one frame (the default is the image's own VOI window)."""
    sample = np.asarray(pixels, dtype=np.float32)[::4, ::4]  # percentiles need no full image
    out = {"default": default}
    for name, (low_p, high_p) in PRESET_PERCENTILES.items():
        low, high = (float(v) for v in np.percentile(sample, [low_p, high_p]))
        high = max(high, low + 1.0)
        out[name] = DisplayWindow(round((low + high) / 2.0, 3), round(high - low, 3))
    return out


@dataclass(frozen=True)
class Orientation:
    """What the header says about how the image is hung."""

    left: str | None
    """The patient direction at the image's left edge (`R` on a PA chest), None: unknown."""
    right: str | None
    view: str | None
    """View Position (PA, AP, LL, ...), shown as a caption, never used to place a marker."""
    laterality: str | None

    @property
    def known(self) -> bool:
        return self.left is not None and self.right is not None

    @property
    def lateral(self) -> bool:
        return (self.view or "").upper() in LATERAL_VIEWS


def orientation(header: Dataset) -> Orientation:
    """Patient Orientation's row direction (towards the right edge) and its opposite."""
    raw = header.get("PatientOrientation")
    listed = raw if isinstance(raw, Sequence) and not isinstance(raw, str) else [raw]
    values = [str(v).strip().upper() for v in listed if v is not None]
    values = [v for v in values if v and v != "NONE"]
    left = right = None
    if len(values) == 2 and values[0] and all(c in OPPOSITE for c in values[0]):
        right = values[0]
        left = "".join(OPPOSITE[c] for c in values[0])
    view = str(header.get("ViewPosition") or "").strip().upper() or None
    laterality = str(header.get("ImageLaterality") or "").strip().upper() or None
    return Orientation(left, right, view, laterality if laterality != "U" else None)


def side_index(chosen: int, count: int, views: Sequence[str | None]) -> int | None:
    """The image shown beside the chosen one: a lateral when the chosen is not, else the next
    stored image; None for a single image."""
    if count < 2:
        return None
    others = [i for i in range(count) if i != chosen]
    chosen_lateral = (views[chosen] or "").upper() in LATERAL_VIEWS
    for i in others:
        if ((views[i] or "").upper() in LATERAL_VIEWS) != chosen_lateral:
            return i
    return others[0]


@dataclass(frozen=True)
class Prior:
    """Another study of the same patient, as the study page lists it."""

    uid: str
    study_date: str | None
    description: str | None
    status: str
    received: str
    read: bool


def priors(store: Store, uid: str, patient_id: str | None, zone: tzinfo, now: float) -> list[Prior]:
    """The patient's other studies (same Patient ID exactly), newest study date first."""
    if not patient_id:
        return []
    _, rows = store.worklist(
        where=WorklistFilter(search=patient_id), limit=MAX_PRIORS * 2, offset=0, now=now
    )
    others = [r for r in rows if r.study_instance_uid != uid]
    facts = store.study_facts([r.study_instance_uid for r in others])
    found = []
    for row in others:
        fact = facts.get(row.study_instance_uid)
        if fact is None or fact.patient_id != patient_id:
            continue  # the search also matches names and accession numbers
        found.append(
            Prior(
                uid=row.study_instance_uid,
                study_date=iso_date(fact.study_date),
                description=fact.description,
                status=row.status or "pending",
                received=local_time(row.first_received, zone),
                read=row.reviewed_at is not None,
            )
        )
    found.sort(key=lambda p: (p.study_date or "", p.received), reverse=True)
    return found[:MAX_PRIORS]
