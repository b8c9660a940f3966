"""Links out of the review UI: the PACS viewer URL template and the local time zone.

Both are settings (`--viewer-url`, `--timezone`) checked when the service starts, so a typo
stops it with a clear message instead of giving a radiologist a dead link or wrong times.
"""

from __future__ import annotations

import os
import string
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PLACEHOLDERS = ("study_uid", "accession", "patient_id")
SCHEMES = ("http", "https", "weasis")


def check_viewer_url(template: str) -> str:
    """The template if it is usable; ValueError naming the problem otherwise."""
    scheme = template.split(":", 1)[0].lower() if ":" in template else ""
    if scheme not in SCHEMES:
        raise ValueError(
            f"the viewer URL must start with {', '.join(s + '://' for s in SCHEMES)} "
            f"(e.g. http://pacs:8042/ohif/viewer?StudyInstanceUIDs={{study_uid}})"
        )
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        problem = f"the viewer URL has unbalanced braces ({exc}); write {{{{ for {{"
        raise ValueError(problem) from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            raise ValueError(
                f"unknown placeholder {{{name}}} in the viewer URL: use "
                + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
            )
    return template


def viewer_link(
    template: str | None, study_uid: str, accession: str | None, patient_id: str | None
) -> str | None:
    """The template filled in, each value URL-quoted; None without a template, or when it
    needs a value the study's headers do not give (a link that opens the wrong study is worse
    than none)."""
    if not template:
        return None
    values = {"study_uid": study_uid, "accession": accession, "patient_id": patient_id}
    used = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    if any(not values[name] for name in used):
        return None
    return template.format(**{k: quote(v or "", safe="") for k, v in values.items()})


def check_timezone(name: str) -> str:
    """An IANA time zone name (`Asia/Tashkent`); ValueError when this machine does not know it."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: give an IANA name such as Asia/Tashkent or UTC"
        ) from None
    return name


def local_zone(name: str | None) -> tzinfo:
    """The named zone, or this machine's: TZ, then /etc/localtime's link into the zoneinfo
    database, then the current UTC offset (without daylight-saving rules)."""
    if name:
        return ZoneInfo(name)
    for candidate in (os.environ.get("TZ", "").lstrip(":"), _linked_zone()):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return datetime.now(UTC).astimezone().tzinfo or UTC


def _linked_zone() -> str | None:
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return None
    marker = "zoneinfo/"
    return target.split(marker, 1)[1] if marker in target else None
