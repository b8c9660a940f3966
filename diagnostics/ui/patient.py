"""Whose study it is, as the worklist and the study page show it.

Header values are shown as the modality wrote them (a study date and time are the modality's
local time); the service's own times (received, read) are shown in the configured zone. Dates
are ISO (YYYY-MM-DD) in every language. An empty or missing value is None here; the templates
show it as a dash.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from babel.support import Translations

from diagnostics.dicom.patient import display_name
from diagnostics.service.viewer import local_zone, viewer_link
from diagnostics.store.records import StudyFacts

AGE_UNITS = {"Y": "y", "M": "mo", "W": "wk", "D": "d"}
SEXES = {"M": "M", "F": "F", "O": "O"}


@dataclass(frozen=True)
class PatientContext:
    """One study's header facts, formatted for display."""

    name: str | None = None
    patient_id: str | None = None
    sex: str | None = None
    age: str | None = None
    accession: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    description: str | None = None
    modalities: str | None = None
    views: str | None = None
    institution: str | None = None
    viewer_url: str | None = None
    """The study in the PACS viewer (`--viewer-url`), when configured."""
    age_count: int | None = None
    age_unit: str | None = None
    """The age as a number and its DICOM unit (Y, M, W, D), for `sex_age_in` to translate."""

    @property
    def sex_age(self) -> str | None:
        parts = [p for p in (self.sex, self.age) if p]
        return ", ".join(parts) or None

    def sex_age_in(self, t: Translations) -> str | None:
        """`sex_age` in the language of `t` (English "M, 45 y")."""
        sexes: dict[str, str] = {
            "M": str(t.pgettext("sex", "M")),
            "F": str(t.pgettext("sex", "F")),
            "O": str(t.pgettext("sex", "O")),
        }
        units: dict[str, str] = {
            "Y": str(t.pgettext("age", "%(n)s y")),
            "M": str(t.pgettext("age", "%(n)s mo")),
            "W": str(t.pgettext("age", "%(n)s wk")),
            "D": str(t.pgettext("age", "%(n)s d")),
        }
        age = None
        if self.age_count is not None and self.age_unit in units:
            age = units[self.age_unit] % {"n": self.age_count}
        parts = [p for p in (sexes.get(self.sex or ""), age) if p]
        return ", ".join(parts) or None

    @property
    def study_when(self) -> str | None:
        parts = [p for p in (self.study_date, self.study_time) if p]
        return " ".join(parts) or None

    @property
    def exam(self) -> str | None:
        """Modality and views: `DX PA, LL`."""
        parts = [p for p in (self.modalities, self.views) if p]
        return " ".join(parts) or None


def patient_context(
    uid: str, facts: StudyFacts | None, viewer_template: str | None
) -> PatientContext:
    facts = facts or StudyFacts()
    count, unit = _age_parts(facts.age, facts.birth_date, facts.study_date)
    return PatientContext(
        name=display_name(facts.patient_name),
        patient_id=facts.patient_id,
        sex=SEXES.get((facts.sex or "").upper()),
        age=f"{count} {AGE_UNITS[unit]}" if count is not None and unit else None,
        age_count=count,
        age_unit=unit,
        accession=facts.accession_number,
        study_date=iso_date(facts.study_date),
        study_time=_time(facts.study_time),
        description=facts.description,
        modalities=", ".join(facts.modalities) or None,
        views=", ".join(facts.views) or None,
        institution=facts.institution,
        viewer_url=viewer_link(viewer_template, uid, facts.accession_number, facts.patient_id),
    )


def iso_date(value: str | None) -> str | None:
    """DICOM DA (YYYYMMDD, or the old YYYY.MM.DD) as YYYY-MM-DD; None when it is not a date."""
    day = _date(value)
    return day.isoformat() if day else None


def _date(value: str | None) -> date | None:
    digits = re.sub(r"[.\-]", "", (value or "").strip())
    if not re.fullmatch(r"\d{8}", digits):
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _time(value: str | None) -> str | None:
    """DICOM TM (HHMMSS.FFFFFF, or HH:MM:SS) as HH:MM; None when it is not a time."""
    digits = (value or "").strip().replace(":", "")
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?", digits)
    if not match or int(match.group(1)) > 23 or int(match.group(2) or 0) > 59:
        return None
    return f"{match.group(1)}:{match.group(2) or '00'}"


def _age_parts(
    age: str | None, birth: str | None, study: str | None
) -> tuple[int | None, str | None]:
    """Patient's Age (`045Y` -> 45, Y), or the age in years from the birth and study dates."""
    match = re.fullmatch(r"(\d{1,3})([YMWD])", (age or "").strip().upper())
    if match:
        return int(match.group(1)), match.group(2)
    born, on = _date(birth), _date(study)
    if born is None or on is None or on < born:
        return None, None
    years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return years, "Y"


def dash(value: object) -> object:
    """An empty value (DICOM Type 2 attributes often are) as a dash, never `None`."""
    return "—" if value is None or value == "" else value


@functools.lru_cache(maxsize=4)
def zone_named(name: str | None) -> tzinfo:
    """`--timezone`'s zone (this machine's without one), looked up once."""
    return local_zone(name)


def local_time(timestamp: float, zone: tzinfo) -> str:
    """One of the service's own times (epoch seconds) in the configured zone, ISO date first."""
    return datetime.fromtimestamp(timestamp, zone).strftime("%Y-%m-%d %H:%M %Z").strip()
