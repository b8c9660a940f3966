"""The finding catalogue: codes, display names, SNOMED CT concepts and what a flag does.

Coded concepts, not strings: reports and model packages carry these codes so that a PACS or a
registry can interpret a finding without knowing our short identifiers. The catalogue is data,
not code: `findings.toml` beside this module ships the defaults, and a site file (`--findings
FILE`, or `[[findings]]` tables in a training recipe) adds findings or overrides an entry field
by field, so a hospital can train for tuberculosis or make pneumothorax urgent without a
release. Every entry is validated strictly and an error names the file and the entry.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from diagnostics.errors import ConfigurationError
from diagnostics.i18n import N_
from diagnostics.strict import StrictModel

OnFlag = Literal["urgent", "routine"]
CATALOGUE_FILE = "findings.toml"
"""The shipped catalogue's name, in this package."""

_DISPLAYS = (
    N_("Lung nodule"),
    N_("Consolidation"),
    N_("Cardiomegaly"),
    N_("Pneumonia"),
    N_("Pleural effusion"),
    N_("Atelectasis"),
    N_("Pneumothorax"),
    N_("COVID-19"),
    N_("Pulmonary tuberculosis"),
)
"""The shipped displays, marked here so the i18n extractor finds them (it does not read TOML);
a test keeps this list equal to findings.toml's displays."""

CODE_PATTERN = r"^[a-z][a-z0-9_]*$"
"""A finding code: also a labels.csv column name and a manifest key."""


def _check_priority(on_flag: OnFlag | None, urgent_threshold: float | None) -> None:
    if on_flag == "routine" and urgent_threshold is not None:
        raise ValueError(
            "urgent_threshold is only for on_flag = 'urgent' (a routine finding never raises "
            "the study's priority)"
        )


class KnownFinding(StrictModel):
    """One catalogue entry, complete."""

    code: str = Field(pattern=CODE_PATTERN, max_length=32)
    display: str = Field(min_length=1, max_length=64)
    """English; the catalogues of `diagnostics.i18n` translate the shipped ones."""
    snomed: str = Field(pattern=r"^[1-9][0-9]{5,17}$")
    """SNOMED CT concept id (6 to 18 digits)."""
    snomed_meaning: str = Field(min_length=1, max_length=64)
    on_flag: OnFlag = "urgent"
    """What a flag of this finding does to the study: raise it to urgent, or leave it routine."""
    urgent_threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    """With on_flag "urgent": the probability from which a flag raises the study (None: any
    flag does)."""

    @model_validator(mode="after")
    def _check(self) -> KnownFinding:
        _check_priority(self.on_flag, self.urgent_threshold)
        return self


class SiteFinding(StrictModel):
    """An entry of a site file: a new finding (every field but the priority ones required) or
    an override of a known one (only the fields to change)."""

    code: str = Field(pattern=CODE_PATTERN, max_length=32)
    display: str | None = Field(default=None, min_length=1, max_length=64)
    snomed: str | None = Field(default=None, pattern=r"^[1-9][0-9]{5,17}$")
    snomed_meaning: str | None = Field(default=None, min_length=1, max_length=64)
    on_flag: OnFlag | None = None
    urgent_threshold: float | None = Field(default=None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> SiteFinding:
        _check_priority(self.on_flag, self.urgent_threshold)
        return self


Catalogue = Mapping[str, KnownFinding]
"""Finding code -> entry, in catalogue order."""


def _entry_name(index: int, raw: object) -> str:
    code = raw.get("code") if isinstance(raw, dict) else None
    return f"findings[{index}]" + (f" ({code})" if isinstance(code, str) else "")


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _tables(raw: object, source: str) -> list[object]:
    if not isinstance(raw, list) or not raw:
        raise ConfigurationError(f"{source}: expected one or more [[findings]] tables")
    return raw


def _parse_defaults(text: str) -> dict[str, KnownFinding]:
    source = f"diagnostics/{CATALOGUE_FILE}"
    raw = tomllib.loads(text)
    out: dict[str, KnownFinding] = {}
    for index, table in enumerate(_tables(raw.get("findings"), source)):
        try:
            entry = KnownFinding.model_validate(table)
        except ValidationError as exc:
            raise ConfigurationError(
                f"{source}: {_entry_name(index, table)}: {_describe(exc)}"
            ) from None
        if entry.code in out:
            raise ConfigurationError(f"{source}: {_entry_name(index, table)}: code repeats")
        out[entry.code] = entry
    return out


@functools.cache
def default_catalogue() -> dict[str, KnownFinding]:
    """The shipped catalogue (`findings.toml`), read once."""
    text = resources.files("diagnostics").joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
    return _parse_defaults(text)


def merge_catalogue(
    entries: Sequence[object], source: str, base: Catalogue | None = None
) -> dict[str, KnownFinding]:
    """`base` (default: the shipped catalogue) with the site's entries added or overriding.

    `entries` are raw tables (from TOML); an error names `source` and the entry (index and
    code) and the field, e.g. `site.toml: findings[1] (tb): snomed: field required`.
    """
    merged = dict(default_catalogue() if base is None else base)
    seen: set[str] = set()
    for index, raw in enumerate(entries):
        name = f"{source}: {_entry_name(index, raw)}"
        try:
            site = SiteFinding.model_validate(raw)
        except ValidationError as exc:
            raise ConfigurationError(f"{name}: {_describe(exc)}") from None
        if site.code in seen:
            raise ConfigurationError(f"{name}: code {site.code!r} appears twice in this file")
        seen.add(site.code)
        given = site.model_dump(exclude_none=True)
        if site.on_flag == "routine":
            given["urgent_threshold"] = None  # a routine override drops the known threshold
        known = merged.get(site.code)
        if known is None:
            missing = [f for f in ("display", "snomed", "snomed_meaning") if f not in given]
            if missing:
                raise ConfigurationError(
                    f"{name}: {site.code!r} is not in the shipped catalogue, so it needs "
                    f"{', '.join(missing)} (a new finding is coded: SNOMED CT id and meaning)"
                )
            data: dict[str, Any] = given
        else:
            data = {**known.model_dump(), **given}
        try:
            merged[site.code] = KnownFinding.model_validate(data)
        except ValidationError as exc:
            raise ConfigurationError(f"{name}: {_describe(exc)}") from None
    return merged


def load_catalogue(path: Path | None) -> dict[str, KnownFinding]:
    """The shipped catalogue merged with the site file at `path` (None: the shipped one).

    The file holds `[[findings]]` tables; see `merge_catalogue`.
    """
    if path is None:
        return dict(default_catalogue())
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigurationError(f"--findings {path}: no such file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"--findings {path}: not a readable TOML file ({exc})") from None
    unknown = sorted(set(raw) - {"findings"})
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown table(s) {', '.join(unknown)}; a catalogue holds [[findings]]"
        )
    return merge_catalogue(_tables(raw.get("findings"), str(path)), str(path))


KNOWN_FINDINGS: dict[str, KnownFinding] = default_catalogue()
"""The shipped catalogue (for display names where no site file applies)."""
