"""A contact sheet: a grid of synthetic studies with their truth, so a person can judge them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from diagnostics.synth.study import StudyTruth, SynthConfig, assign_patients, make_study

TILE = 320


def _tile(pixels: np.ndarray, truth: StudyTruth, spacing_mm: float) -> Image.Image:
    low, high = np.percentile(pixels, [0.5, 99.5])
    scaled = np.clip((pixels.astype(np.float32) - low) / max(high - low, 1.0), 0.0, 1.0)
    image = Image.fromarray((scaled * 255).astype(np.uint8)).resize(
        (TILE, TILE), Image.Resampling.LANCZOS
    )
    image = image.convert("RGB")
    draw = ImageDraw.Draw(image)
    scale_x, scale_y = TILE / pixels.shape[1], TILE / pixels.shape[0]
    if truth.nodule is not None:
        x, y = truth.nodule.centre_px
        r = truth.nodule.diameter_mm / (2 * spacing_mm) * scale_x + 6
        draw.ellipse(
            [x * scale_x - r, y * scale_y - r, x * scale_x + r, y * scale_y + r], outline="yellow"
        )
    if truth.consolidation is not None:
        x0, y0, x1, y1 = truth.consolidation.bbox_px
        draw.rectangle([x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y], outline="cyan")
    found = [code for code, flag in truth.findings.items() if flag]
    if truth.nodule is not None:
        found[found.index("nodule")] = f"nodule {truth.nodule.diameter_mm:.0f} mm"
    caption = f"{truth.view} CTR {truth.ctr:.2f}: " + (", ".join(found) or "no finding")
    draw.rectangle([0, TILE - 16, TILE, TILE], fill="black")
    draw.text((4, TILE - 15), caption, fill="white", font=ImageFont.load_default(size=12))
    return image


def write_contact_sheet(
    path: Path, seed: int, config: SynthConfig | None = None, count: int = 12, columns: int = 4
) -> Path:
    """Render the first `count` studies of `seed` (with the truth drawn on) into one PNG."""
    config = config or SynthConfig()
    patients = assign_patients(seed, count, config.repeat_patient_fraction)
    rows = -(-count // columns)
    sheet = Image.new("RGB", (columns * TILE, rows * TILE), "black")
    for index in range(count):
        truth, pixels, _, _ = make_study(seed, index, patients[index], config)
        sheet.paste(
            _tile(pixels, truth, config.spacing_mm),
            ((index % columns) * TILE, (index // columns) * TILE),
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
