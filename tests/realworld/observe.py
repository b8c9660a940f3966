"""What the bundled model does with real images: the numbers behind the model card's section
"Behaviour on real radiographs".

pydicom's bundled test files are the only real images the project may use (nothing is
downloaded). None is a chest radiograph: they are CT, MR, NM, ultrasound and photographs. Each
large enough one is wrapped in an ordinary DX chest PA header (what a user's real image looks
like to the gate) and measured twice: through the screening pipeline (does the appearance check
refuse it?) and forced past that check straight into the model (what would it have flagged?).
Synthetic phantoms are measured the same way for contrast.

`python -m tests.realworld.observe` prints the JSON kept in the bundled manifest as
`metrics.real_images`; `test_model_card_real.py` recomputes it and compares.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from diagnostics.dicom import read_instance
from diagnostics.preprocess import preprocess_image
from diagnostics.screening import Screener
from diagnostics.screening.interpret import probabilities
from tests.helpers.synth import BUNDLED
from tests.realworld.corpus import Case, Instance, phantom, real_pixels, write_case

REAL_FILES = (
    "693_J2KI.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "examples_overlay.dcm",
    "JPEG2000.dcm",
    "image_dfl.dcm",
    "examples_jpeg2k.dcm",
    "examples_palette.dcm",
    "examples_ybr_color.dcm",
    "SC_rgb_jpeg_dcmd.dcm",
    "SC_jpeg_no_color_transform.dcm",
    "GDCMJ2K_TextGBR.dcm",
)
"""pydicom test images of at least 256 x 256 pixels with a picture in them."""
PHANTOM_SEEDS = (11, 12, 13, 14, 15, 16, 17, 18)


def _measure(files: dict[str, Path], screener: Screener) -> dict[str, dict[str, Any]]:
    manifest = screener.package.manifest
    profile = manifest.appearance
    assert profile is not None
    batch = screener.screen(list(files.values()))
    status = {o.result.study_instance_uid: o.result for o in batch.outcomes}
    out: dict[str, dict[str, Any]] = {}
    for label, path in files.items():
        image = read_instance(path)
        tensor = preprocess_image(image, manifest.preprocessing)
        score = float(profile.score(tensor.unsqueeze(0))[0])
        logits = screener.engine.run(tensor.unsqueeze(0).numpy()).logits
        probs = probabilities(manifest, logits)[0]
        flags = [
            spec.code
            for k, spec in enumerate(manifest.findings)
            if probs[k] >= manifest.operating_points[spec.code].threshold
        ]
        result = status[image.info.uids.study_instance_uid]
        out[label] = {
            "appearance_score": round(score, 2),
            "status": result.status,
            "flags_if_forced": flags,
        }
    return out


def observe() -> dict[str, Any]:
    """The measurements, rounded so that the card reads plainly and reruns compare."""
    screener = Screener.load(BUNDLED, threads=1)
    with tempfile.TemporaryDirectory() as folder:
        real = {}
        for name in REAL_FILES:
            case = Case(
                f"observe-{Path(name).stem}", "n/a", instances=(Instance(pixels=real_pixels(name)),)
            )
            real[name] = write_case(case, Path(folder), "observe").files[0]
        phantoms = {}
        for seed in PHANTOM_SEEDS:
            case = Case(
                f"observe-phantom-{seed}",
                "n/a",
                instances=(Instance(pixels=lambda seed=seed: phantom(seed=seed)),),
            )
            phantoms[str(seed)] = write_case(case, Path(folder), "observe").files[0]
        real_seen = _measure(real, screener)
        phantom_seen = _measure(phantoms, screener)
    threshold = 1.0
    real_scores = [v["appearance_score"] for v in real_seen.values()]
    passed = [k for k, v in real_seen.items() if v["status"] == "analyzed"]
    forced_flags = [k for k, v in real_seen.items() if v["flags_if_forced"]]
    return {
        "source": "pydicom bundled test images (CT, MR, NM, US, photographs) in a DX chest PA "
        "header; no real chest radiograph is available offline",
        "images": len(real_seen),
        "refused_by_appearance": sum(v["status"] == "not_analyzed" for v in real_seen.values()),
        "let_through": sorted(passed),
        "appearance_limit": threshold,
        "appearance_score_min": min(real_scores),
        "appearance_score_median": round(statistics.median(real_scores), 2),
        "flagged_if_forced": len(forced_flags),
        "flag_counts_if_forced": {
            code: sum(code in v["flags_if_forced"] for v in real_seen.values())
            for code in ("nodule", "consolidation", "cardiomegaly")
        },
        "phantoms": len(phantom_seen),
        "phantom_appearance_score_max": max(v["appearance_score"] for v in phantom_seen.values()),
        "phantoms_analyzed": sum(v["status"] == "analyzed" for v in phantom_seen.values()),
        "per_image": {k: v for k, v in sorted(real_seen.items())},
    }


def main() -> None:
    print(json.dumps(observe(), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
