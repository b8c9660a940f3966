"""Re-versioned copies of the bundled model package, for the model registry's tests.

The copies share the bundled `model.onnx` and differ in version, operating points (so a shadow
flags differently from the active model) and whether they carry a `site_calibration` block.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from diagnostics.package import MODEL_FILE, write_package
from tests.helpers.synth import BUNDLED


def site_calibration(previous: str) -> dict[str, object]:
    """A plausible `site_calibration` block (the fields `diagnostics calibrate` writes)."""
    finding = {
        "positives": 20,
        "negatives": 20,
        "unknown": 0,
        "threshold": 0.5,
        "sensitivity": 0.9,
        "sensitivity_ci_95": [0.7, 0.97],
        "specificity": 0.8,
        "specificity_ci_95": [0.58, 0.92],
    }
    return {
        "site": "site-b",
        "date": datetime.now(UTC).date().isoformat(),
        "previous_version": previous,
        "data": "feedback-export",
        "studies": 40,
        "target_sensitivity": 0.9,
        "findings": {"nodule": finding},
        "kept": ["consolidation", "cardiomegaly"],
    }


def reversioned(
    out: Path, version: str, *, threshold_scale: float = 1.0, calibrated: bool = False
) -> Path:
    """A copy of the bundled package as `version`; thresholds multiplied by `threshold_scale`."""
    manifest = json.loads((BUNDLED / "manifest.json").read_text())
    previous = manifest["version"]
    manifest["version"] = version
    for point in manifest["operating_points"].values():
        point["threshold"] = min(1.0, point["threshold"] * threshold_scale)
    if calibrated:
        manifest["site_calibration"] = site_calibration(previous)
    write_package(out, BUNDLED / MODEL_FILE, manifest)
    return out
