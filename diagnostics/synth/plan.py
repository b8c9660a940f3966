"""The per-render plan: every anatomical number of one study, derived once.

From the patient's habitus, the view and the requested cardiothoracic ratio (and the study's
random stream), so that the parts drawn later (`thorax`, `bones`, `vessels`) agree on where
everything is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diagnostics.synth.phantom import Habitus


@dataclass(frozen=True)
class Plan:
    seed: int
    hw: float  # inner thoracic half width
    height: float  # lung height (apex to costophrenic angle) for this study
    y_wide: float  # level of the widest thorax
    se_a: float  # lung apex superellipse half width
    se_uc: float  # its centre, from the thoracic midline
    shift: float  # mediastinal / spinal offset
    cp_y: tuple[float, float]  # costophrenic angle level (right, left)
    dome_h: tuple[float, float]  # dome rise (right, left)
    dome_peak: float  # dome summit distance from midline
    lung_depth: float  # antero-posterior lung depth at the base
    hb: float  # torso half width
    depth: float  # antero-posterior body thickness
    neck_hw: float
    shoulder_y: float  # acromion top (negative: above the apices)
    acromion_u: float
    knob: tuple[float, float, float]  # aortic arch centre (u, y) and radius
    carina_y: float
    rib_period: float
    rib_droop: float
    clavicle: tuple[float, float]  # medial and lateral end levels
    scapula_over_lung: bool
    arm_angle: float  # degrees from vertical, outward
    breast_mm: float
    bubble: tuple[float, float, float]  # centre x, half width, half height (width 0: none)
    fluid_level: bool
    heart_frac: float  # share of the heart width left of the midline
    heart_theta: float  # long-axis angle below horizontal, degrees
    heart_top: float
    heart_depth: float


def make_plan(hab: Habitus, view: str, ctr: float, rng: np.random.Generator) -> Plan:
    """Turn the patient's habitus and this study's view into concrete geometry."""
    ap = view == "AP"
    height = hab.lung_height_mm * float(rng.uniform(0.84, 0.94) if ap else rng.uniform(0.96, 1.03))
    hw = 0.5 * hab.thorax_width_mm
    raise_r = hab.right_dome_raise_mm
    dome = hab.dome_height_mm * (1.1 if ap else 1.0)
    knob_r = hab.aortic_knob_mm * (1.1 if ap else 1.0)
    hb = hw + 11.0 + hab.soft_tissue_mm
    if ap:
        clav = (0.07 * height + rng.normal(0, 4), 0.02 * height + rng.normal(0, 4))
    else:
        clav = (0.17 * height + rng.normal(0, 5), 0.02 * height + rng.normal(0, 5))
    has_bubble = rng.random() < 0.75
    bub_w = float(rng.uniform(12, 28)) if has_bubble else 0.0
    return Plan(
        seed=hab.anatomy_seed,
        hw=hw,
        height=height,
        y_wide=0.8 * height,
        se_a=0.6 * hw,
        se_uc=0.4 * hw,
        shift=hab.mediastinal_shift_mm + float(rng.normal(0, 1.5)),
        cp_y=(height - 0.2 * raise_r, height),
        dome_h=(dome + 0.8 * raise_r, dome),
        dome_peak=0.45 * hw,
        lung_depth=0.78 * hab.chest_depth_mm,
        hb=hb,
        depth=hab.chest_depth_mm,
        neck_hw=0.5 * hab.neck_width_mm,
        shoulder_y=-hab.shoulder_height_mm,
        acromion_u=hb + 12.0,
        knob=(14.0 + 0.3 * knob_r, 0.26 * height, knob_r),
        carina_y=0.3 * height,
        rib_period=hab.rib_spacing_mm * height / hab.lung_height_mm,
        rib_droop=hab.rib_droop * (0.7 if ap else 1.0),
        clavicle=(float(clav[0]), float(clav[1])),
        scapula_over_lung=ap,
        arm_angle=float(rng.uniform(3, 9) if ap else rng.uniform(18, 32)),
        breast_mm=hab.breast_mm,
        bubble=(0.58 * hw + float(rng.normal(0, 8)), bub_w, bub_w * float(rng.uniform(0.5, 0.8))),
        fluid_level=not ap,
        heart_frac=float(np.clip(hab.heart_left_fraction + rng.normal(0, 0.015), 0.55, 0.75)),
        heart_theta=float(34.0 - 30.0 * (ctr - 0.45) + rng.normal(0, 3)),
        heart_top=(0.47 - 0.12 * (ctr - 0.45)) * height,
        heart_depth=0.78 * hab.chest_depth_mm * float(np.clip(0.6 + 0.6 * (ctr - 0.45), 0.5, 0.85)),
    )
