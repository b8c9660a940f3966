"""A `diagnostics research-export` folder read as a labelled folder, as it is.

The export holds `studies/<uid>/<n>.dcm`, `results.jsonl` (the latest StudyResult per study),
`feedback.jsonl` (radiologists' verdicts, UIDs mapped like the images) and `manifest.json`; it
has no labels.csv. Its labels are the verdicts, decided as `diagnostics feedback export` does
(the latest verdict per study and finding wins):

- `agree`: the model's flag in the exported result (flagged 1, not flagged 0);
- `disagree`: the opposite of that flag;
- `missed`: 1;
- `comment`, or no verdict: unknown (training masks it). Unlike `feedback export`, a model's
  flag nobody judged is never taken as a label: a research group should learn from people.

The export keeps only the latest result of a study, so a verdict given on an earlier version is
read against the latest one: re-screening rarely changes a flag, and such a verdict is rare.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from diagnostics.errors import DatasetError

EXPORT_FORMAT_PREFIX = "diagnostics-research-export/"
LABEL_VERDICTS = ("agree", "disagree", "missed")


def is_research_export(folder: Path) -> bool:
    """Whether `folder` is a research export (its manifest names the format)."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("format", "")).startswith(
        EXPORT_FORMAT_PREFIX
    )


def _lines(path: Path) -> list[tuple[int, dict[str, object]]]:
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise DatasetError(f"{path}, line {number}: not a JSON object") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path}, line {number}: not a JSON object")
        out.append((number, record))
    return out


def research_export_rows(folder: Path, codes: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    """One labels row per study with a labelling verdict: (study counter, row).

    Cells are "1", "0" or "" (unknown); `study_instance_uid` is the export's (mapped) UID.
    """
    flags: dict[str, dict[str, bool]] = {}
    for _, result in _lines(folder / "results.jsonl"):
        study = str(result.get("study_instance_uid", ""))
        findings = result.get("findings") or []
        if isinstance(findings, list):
            flags[study] = {
                str(f.get("code")): bool(f.get("flagged")) for f in findings if isinstance(f, dict)
            }
    verdicts: dict[str, dict[str, str]] = {}
    for _, entry in _lines(folder / "feedback.jsonl"):
        verdict, code = entry.get("verdict"), str(entry.get("code", ""))
        study = str(entry.get("study_instance_uid", ""))
        if verdict in LABEL_VERDICTS and code in codes and study:
            verdicts.setdefault(study, {})[code] = str(verdict)  # later lines replace earlier
    rows = []
    for number, (study, latest) in enumerate(verdicts.items(), start=1):
        row = {"study_instance_uid": study}
        for code in codes:
            verdict = latest.get(code)
            flagged = flags.get(study, {}).get(code)
            if verdict == "missed":
                row[code] = "1"
            elif verdict in ("agree", "disagree") and flagged is not None:
                row[code] = "1" if flagged == (verdict == "agree") else "0"
            else:
                row[code] = ""
        rows.append((number, row))
    if not rows:
        raise DatasetError(
            f"{folder}: a research export with no verdict on {', '.join(codes)} in "
            "feedback.jsonl: nothing to learn from"
        )
    return rows
