"""The words of a FHIR report, in one place so that a translation can hook in.

The project will speak Uzbek, Russian and English; today every text is English. A translation
adds its language to `LANGUAGES` and a branch here: callers already pass the language they
want, and the report's `language` says which one it got.
"""

from __future__ import annotations

from diagnostics.errors import ConfigurationError
from diagnostics.reports._common import DISCLAIMER
from diagnostics.results import FindingResult, StudyResult

LANGUAGES = ("en",)
DEFAULT_LANGUAGE = "en"


def conclusion_text(result: StudyResult, language: str = DEFAULT_LANGUAGE) -> str:
    """The report's conclusion, naming findings as the review UI does (the coded concepts are
    in the Observations). A study that was not analysed says so plainly: it must never read as
    a normal result."""
    _check(language)
    if result.status != "analyzed":
        what = "NOT ANALYSED" if result.status == "not_analyzed" else "FAILED"
        return (
            f"AI pre-screening {what}: {result.reason}. No finding is reported and this is not a "
            "normal result: a radiologist must read the images."
        )
    flagged = [_named(f) for f in result.flagged]
    quiet = [f.display for f in result.findings if not f.flagged]
    parts = []
    if flagged:
        parts.append("AI pre-screening flagged: " + "; ".join(flagged) + ".")
    else:
        parts.append("AI pre-screening flagged none of the findings it looks for.")
    if quiet:
        parts.append("Not flagged: " + ", ".join(quiet) + ".")
    parts.append(f"{DISCLAIMER}: a radiologist reads the images.")
    return " ".join(parts)


def interpretation_text(flagged: bool, language: str = DEFAULT_LANGUAGE) -> str:
    _check(language)
    return "flagged by AI pre-screening" if flagged else "not flagged by AI pre-screening"


def operating_point_text(threshold: float, language: str = DEFAULT_LANGUAGE) -> str:
    _check(language)
    return f"operating point: flagged at probability >= {threshold:.4f}"


def _named(finding: FindingResult) -> str:
    return (
        f"{finding.display} (probability {finding.probability:.2f}, operating point "
        f"{finding.threshold:.2f})"
    )


def _check(language: str) -> None:
    if language not in LANGUAGES:
        raise ConfigurationError(
            f"report language {language!r} is not available; choose one of {', '.join(LANGUAGES)}"
        )
