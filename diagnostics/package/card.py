"""MODEL_CARD.md: the manifest rendered for the people who decide whether to trust a model.

The card reads the manifest and nothing else (`write.py` calls it; it never imports back).
Generated, never hand-edited, so the card cannot drift from what serving actually loads. The
`metrics` section of a manifest is free-form JSON, so it is read defensively: known keys fill the
tables, anything else is listed verbatim under "Other metrics" rather than dropped.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator

from pydantic import JsonValue

from diagnostics.package.manifest import DataSummary, Manifest

SYNTHETIC_WARNING = "trained on synthetic phantoms; a demonstration, not a clinical device"
NODULE_SIZE_KEY = "nodule_sensitivity_by_size"
_TABLE_KEYS = (
    "auroc",
    "auroc_ci_95",
    "sensitivity_at_90_specificity",
    "sensitivity_at_95_specificity",
    "ece",
    "sensitivity",
    "specificity",
    "threshold",
)
_KNOWN_KEYS = frozenset((*_TABLE_KEYS, NODULE_SIZE_KEY))
REAL_IMAGES_KEY = "real_images"
"""metrics.real_images: what the model did with real images (tests/realworld/observe.py)."""
_MISSING = "n/a"


def render(manifest: Manifest) -> str:
    """The whole card as Markdown, sections in the order a reviewer reads them."""
    sections = [
        _header(manifest),
        _intended_use(manifest),
        _scope(manifest),
        _findings(manifest),
        _preprocessing(manifest),
        _training(manifest),
        _performance(manifest),
        _site_calibration(manifest),
        _reference(manifest),
        _real_images(manifest),
        _limitations(manifest),
        _versions(manifest),
    ]
    return "\n\n".join("\n".join(lines) for lines in sections if lines) + "\n"


def is_synthetic(manifest: Manifest) -> bool:
    """Whether any data split says it is synthetic: such a model must never look clinical."""
    training = manifest.training
    splits = (training.train, training.validation, training.test)
    return any(s is not None and "synthetic" in s.description.lower() for s in splits)


# formatting helpers


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\n", " ").replace("|", "\\|")


def _value(value: JsonValue) -> str:
    """A free-form metric value: numbers to 3 decimals, anything structured as compact JSON."""
    if value is None:
        return _MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value, separators=(", ", ": "), sort_keys=True)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _joined(values: list[str]) -> str:
    return ", ".join(values) if values else _MISSING


# sections


def _header(m: Manifest) -> list[str]:
    lines = [f"# Model card: {m.name} {m.version}", ""]
    if is_synthetic(m):
        lines += [f"> **Warning: {SYNTHETIC_WARNING}.**", ""]
    rows = [
        ["Name", m.name],
        ["Version", m.version],
        ["Architecture", m.architecture],
        ["Created", m.created],
        ["model.onnx sha256", f"`{m.sha256}`"],
        ["Manifest schema", str(m.schema_version)],
    ]
    return lines + _table(["Field", "Value"], rows)


def _intended_use(m: Manifest) -> list[str]:
    return ["## Intended use", "", m.intended_use.strip()]


def _scope(m: Manifest) -> list[str]:
    s = m.scope
    return [
        "## Input scope",
        "",
        "Studies outside this scope are not analysed; they are reported as `not_analyzed`.",
        "",
        f"- Modalities: {_joined(s.modalities)}",
        f"- Body parts: {_joined(s.body_parts)}",
        f"- Other wording accepted for the body part: {_joined(s.body_part_words)} (matched "
        "ignoring case, spaces, underscores, hyphens and apostrophe variants)",
        f"- Views: {_joined(s.views)}",
        f"- Photometric interpretations: {_joined(s.photometric_interpretations)}",
        f"- Minimum image size: {s.min_rows} rows x {s.min_columns} columns",
        "",
        "When Body Part Examined is missing or empty, an image is analysed only if the header "
        "says the body part another way: an Anatomic Region Sequence code "
        f"({_joined(s.body_part_codes)}) or the body part named in the Study or Series "
        "Description or Protocol Name; otherwise it is not analysed and the reason asks for "
        "Body Part Examined to be set at the modality. A missing View Position is likewise read "
        f"from the View Code Sequence ({_joined(s.view_codes)}) or from descriptions that name "
        f"{' or '.join(s.views)} and no other view.",
    ]


def _findings(m: Manifest) -> list[str]:
    rows = []
    for f in m.findings:
        cal = m.calibration[f.code]
        params = f"a={cal.a:.4g}, b={cal.b:.4g}" if cal.method != "none" else "identity"
        rows.append(
            [
                f"`{f.code}`",
                f.display,
                f'{f.concept.scheme} {f.concept.value} "{f.concept.meaning}"',
                f"{cal.method} ({params}), fitted on {cal.fitted_on}",
                _on_flag(f.on_flag, f.urgent_threshold),
            ]
        )
    intro = "Output channels of `logits` and `cam`, in this order:"
    return [
        "## Findings",
        "",
        intro,
        "",
        *_table(["Code", "Finding", "Concept", "Calibration", "A flag makes the study"], rows),
        "",
        "A flag of a finding marked routine is shown and reported, but leaves the study routine "
        "on the worklist; only flags marked urgent raise it.",
    ]


def _on_flag(on_flag: str, urgent_threshold: float | None) -> str:
    if on_flag == "routine":
        return "routine"
    if urgent_threshold is None:
        return "urgent"
    return f"urgent from probability {urgent_threshold:.3g}"


def _preprocessing(m: Manifest) -> list[str]:
    p, t = m.preprocessing, m.input
    if p.intensity == "window":
        intensity = "the image's first VOI window to [0, 1] (percentiles when it has none)"
    else:
        intensity = f"percentiles {p.lower_percentile}-{p.upper_percentile} to [0, 1], clipped"
    a = p.augmentation
    return [
        "## Preprocessing",
        "",
        f"- Model input: `{t.name}`, float32 [N, {t.channels}, {t.height}, {t.width}]",
        f"- Resize: whole image to {p.size[0]} x {p.size[1]} (height x width), area averaging",
        f"- Intensity: {intensity}",
        f"- Channels: {p.channels}" + (" (grey repeated)" if p.channels == 3 else ""),
        f"- Training-only augmentation (p={a.probability}): rotate +-{a.rotate_degrees} deg, "
        f"scale +-{a.scale_fraction}, translate +-{a.translate_fraction}, "
        f"noise std {a.noise_std}, gamma {a.gamma_range[0]}-{a.gamma_range[1]}; no flips",
    ]


def _split_row(name: str, d: DataSummary | None, codes: tuple[str, ...]) -> list[str]:
    if d is None:
        return [name, "none (no held-out test set)", _MISSING, _MISSING, _MISSING, _MISSING]
    positives = ", ".join(f"{c} {d.positives[c]}" for c in codes if c in d.positives)
    seed = _MISSING if d.seed is None else str(d.seed)
    return [name, d.description, str(d.studies), str(d.patients), positives or _MISSING, seed]


def _training(m: Manifest) -> list[str]:
    t, codes = m.training, m.finding_codes
    rows = [
        _split_row("train", t.train, codes),
        _split_row("validation", t.validation, codes),
        _split_row("test", t.test, codes),
    ]
    header = ["Split", "Description", "Studies", "Patients", "Positive studies", "Seed"]
    return ["## Training data", "", *_table(header, rows)]


def _auroc(metrics: dict[str, JsonValue]) -> str:
    auroc, ci = metrics.get("auroc"), metrics.get("auroc_ci_95")
    text = _value(auroc)
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, int | float) for x in ci):
        text += f" ({_value(ci[0])}-{_value(ci[1])})"
    elif ci is not None:
        text += f" (CI {_value(ci)})"
    return text


def _reported(m: Manifest) -> tuple[str, dict[str, JsonValue]]:
    """The metrics the tables show: the held-out test set when there is one, else validation.

    Manifests written by the training pipeline nest per-finding metrics under "test" and
    "validation"; older or hand-written ones keep them at the top level.
    """
    for split in ("test", "validation"):
        found = m.metrics.get(split)
        if isinstance(found, dict):
            return split, found
    return "", m.metrics


def _finding_metrics(m: Manifest, code: str) -> dict[str, JsonValue]:
    found = _reported(m)[1].get(code)
    return found if isinstance(found, dict) else {}


def _performance(m: Manifest) -> list[str]:
    rows = []
    for f in m.findings:
        fm, op = _finding_metrics(m, f.code), m.operating_points[f.code]
        rows.append(
            [
                f"`{f.code}`",
                _auroc(fm),
                _value(fm.get("sensitivity_at_90_specificity")),
                _value(fm.get("sensitivity_at_95_specificity")),
                _value(fm.get("ece")),
                f"{op.threshold:.3f}",
                _measured_at(fm, op.threshold),
                f"sens. {op.target_sensitivity:.2f} on {op.chosen_on} "
                f"(there {op.sensitivity:.3f} / {op.specificity:.3f})",
            ]
        )
    header = [
        "Finding",
        "AUROC (95 % CI)",
        "Sens. @ 90 % spec.",
        "Sens. @ 95 % spec.",
        "ECE",
        "Threshold",
        "Sens. / spec. at threshold",
        "Threshold chosen for",
    ]
    split = _reported(m)[0]
    title = f"## Performance ({split} set)" if split else "## Performance"
    lines = [title, "", *_table(header, rows)]
    lines += _by_size(m)
    other = list(_other_metrics(m))
    if other:
        lines += ["", "### Other metrics", "", *(f"- {key}: {value}" for key, value in other)]
    return lines


def _site_calibration(m: Manifest) -> list[str]:
    """Where the operating points were re-derived (`diagnostics calibrate`), with intervals."""
    site = m.site_calibration
    if site is None:
        return []
    lines = [
        "## Site calibration",
        "",
        f"Calibration and operating points re-derived at **{_cell(site.site)}** on {site.date} "
        f"from version {site.previous_version}: {site.studies} labelled studies ({site.data}), "
        f"target sensitivity {site.target_sensitivity:.2f}; {site.ci_method} 95 % intervals.",
        "",
    ]
    rows = [
        [
            f"`{code}`",
            f"{r.positives} / {r.negatives} / {r.unknown}",
            f"{r.threshold:.3f}",
            f"{r.sensitivity:.3f} ({r.sensitivity_ci_95[0]:.3f}-{r.sensitivity_ci_95[1]:.3f})",
            f"{r.specificity:.3f} ({r.specificity_ci_95[0]:.3f}-{r.specificity_ci_95[1]:.3f})",
        ]
        for code, r in site.findings.items()
    ]
    header = ["Finding", "Pos. / neg. / unknown", "Threshold", "Sensitivity", "Specificity"]
    lines += _table(header, rows)
    if site.kept:
        kept = ", ".join(f"`{code}`" for code in site.kept)
        lines += ["", f"Not labelled at the site, previous calibration kept: {kept}."]
    return lines


def _reference(m: Manifest) -> list[str]:
    """The histograms drift is judged against (`diagnostics monitor`), in one line each."""
    ref = m.reference_distributions
    if ref is None:
        return []
    lines = [
        "## Reference distributions",
        "",
        f"Counted on {ref.studies} studies: {_cell(ref.data)}. Recent studies are compared "
        "with these by population stability index (`diagnostics monitor`, `/ui/monitoring`).",
        "",
    ]
    rows = [
        [f"`{code}`", " ".join(str(c) for c in counts)] for code, counts in ref.findings.items()
    ]
    if ref.appearance is not None:
        rows.append(["appearance score", " ".join(str(c) for c in ref.appearance)])
    return lines + _table(["Distribution", "Counts per bin"], rows)


def _measured_at(fm: dict[str, JsonValue], threshold: float) -> str:
    """Sensitivity / specificity on the reported set, saying so if measured at another cut."""
    text = f"{_value(fm.get('sensitivity'))} / {_value(fm.get('specificity'))}"
    at = fm.get("threshold")
    if isinstance(at, int | float) and not math.isclose(at, threshold, abs_tol=1e-9):
        text += f" (at {at:.3f})"
    return text


def _size_order(label: str) -> tuple[float, int]:
    """Sort "<6 mm", "6-10 mm", ">10 mm" as sizes: manifests store keys sorted as text."""
    match = re.search(r"[0-9]+(\.[0-9]+)?", label)
    number = float(match.group()) if match else math.inf
    return number, {"<": 0, ">": 2}.get(label.lstrip()[:1], 1)


def _by_size_table(by_size: JsonValue) -> list[str]:
    if isinstance(by_size, dict):
        groups = sorted(by_size, key=_size_order)
        cells = [by_size[g] for g in groups]
        if cells and all(isinstance(c, dict) for c in cells):  # {group: {metric: value}}
            records = [c for c in cells if isinstance(c, dict)]
            keys = list(dict.fromkeys(k for r in records for k in r))
            rows = [
                [g, *(_value(r.get(k)) for k in keys)] for g, r in zip(groups, records, strict=True)
            ]
            return _table(["Size", *keys], rows)
        return _table(
            ["Size", "Sensitivity"], [[g, _value(c)] for g, c in zip(groups, cells, strict=True)]
        )
    if isinstance(by_size, list) and by_size and all(isinstance(r, dict) for r in by_size):
        records = [r for r in by_size if isinstance(r, dict)]
        header = list(records[0])
        return _table(header, [[_value(r.get(h)) for h in header] for r in records])
    return [_value(by_size)]


def _by_size(m: Manifest) -> list[str]:
    lines = []
    for code in m.finding_codes:
        by_size = _finding_metrics(m, code).get(NODULE_SIZE_KEY)
        if by_size is not None:
            lines += ["", f"### Sensitivity by nodule size (`{code}`)", ""]
            lines += _by_size_table(by_size)
    return lines


def _other_metrics(m: Manifest) -> Iterator[tuple[str, str]]:
    """Everything the tables did not show, flattened to dotted keys: nothing is hidden."""
    codes = set(m.finding_codes)
    split = _reported(m)[0]
    for key, value in m.metrics.items():
        if key == REAL_IMAGES_KEY:
            continue  # its own section
        if key == split and isinstance(value, dict):
            for code, per in value.items():
                if code in codes and isinstance(per, dict):
                    rest = {k: v for k, v in per.items() if k not in _KNOWN_KEYS}
                    yield from _flatten(f"{key}.{code}", rest)
                else:
                    yield from _flatten(f"{key}.{code}", per)
        elif key in codes and isinstance(value, dict):
            rest = {k: v for k, v in value.items() if k not in _KNOWN_KEYS}
            yield from _flatten(key, rest)
        else:
            yield from _flatten(key, value)


def _flatten(prefix: str, value: JsonValue) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(f"{prefix}.{key}", item)
    else:
        yield prefix, _value(value)


def _real_images(m: Manifest) -> list[str]:
    """What the model did with real images, in plain words, from the numbers measured."""
    seen = m.metrics.get(REAL_IMAGES_KEY)
    if not isinstance(seen, dict):
        return []
    images, refused = seen.get("images"), seen.get("refused_by_appearance")
    through = seen.get("let_through") or []
    counts = seen.get("flag_counts_if_forced")
    flag_text = (
        ", ".join(f"{f.code} {_value(counts.get(f.code))}" for f in m.findings)
        if isinstance(counts, dict)
        else ""
    )
    lines = [
        "## Behaviour on real radiographs",
        "",
        "This model has only ever seen synthetic phantoms. Real radiographs look different: "
        "other anatomy and body habitus, the detector's own image processing, collimation, "
        "markers and text. Before the model runs, an appearance check compares each "
        "preprocessed image with a profile of the training images (a coarse brightness map) "
        'and refuses an image unlike them as `not_analyzed` ("the image does not look like '
        '..."). On real images that refusal is the expected, safe outcome.',
        "",
        f"What was observed: {_value(seen.get('source'))}. Of {_value(images)} such images, "
        f"{_value(refused)} were refused by the appearance check (scores "
        f"{_value(seen.get('appearance_score_min'))} and up, median "
        f"{_value(seen.get('appearance_score_median'))}; the limit is "
        f"{_value(seen.get('appearance_limit'))}). The synthetic phantoms score at most "
        f"{_value(seen.get('phantom_appearance_score_max'))} "
        f"({_value(seen.get('phantoms_analyzed'))} of {_value(seen.get('phantoms'))} analysed).",
        "",
        "What it lets through: images whose coarse brightness layout resembles a phantom "
        "chest, whatever their header or content. It does not recognise anatomy, so a real "
        "frontal chest radiograph that happens to resemble the phantoms is analysed, and "
        "being let through says nothing about whether the result is right. Let through here: "
        f"{', '.join(map(str, through)) if isinstance(through, list) and through else 'none'}.",
        "",
        "Why its flags on real images mean nothing clinically: forced past the check, the "
        f"model flagged {_value(seen.get('flagged_if_forced'))} of {_value(images)} of these "
        f"images ({flag_text}), none of which shows a chest at all. A model trained only on "
        "phantoms learns the phantoms' cues; its probabilities on real images were never "
        "calibrated or measured against real labels. A flag, or the absence of one, on a real "
        "radiograph carries no clinical meaning: do not use it for patients.",
    ]
    per_image = seen.get("per_image")
    if isinstance(per_image, dict) and per_image:
        rows = []
        for name, item in per_image.items():
            if isinstance(item, dict):
                flags = item.get("flags_if_forced")
                rows.append(
                    [
                        f"`{name}`",
                        _value(item.get("appearance_score")),
                        _value(item.get("status")),
                        ", ".join(map(str, flags)) if isinstance(flags, list) and flags else "-",
                    ]
                )
        header = ["Image", "Appearance score", "Status", "Flags if forced past the check"]
        lines += ["", *_table(header, rows)]
    return lines


def _limitations(m: Manifest) -> list[str]:
    items = [f"- {' '.join(item.split())}" for item in m.limitations] or ["- None stated."]
    return ["## Limitations", "", *items]


def _versions(m: Manifest) -> list[str]:
    rows = [[name, version] for name, version in sorted(m.library_versions.items())]
    return ["## Library versions", "", *_table(["Library", "Version"], rows)]
