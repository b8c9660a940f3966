"""The words of a FHIR report, in the report's language (`diagnostics.i18n`).

Every text here is an English message translated through the gettext catalogues; numbers are
written the language's way. Finding names are translated when the catalogue knows them (the
display names of `diagnostics.findings`); a model's own name for a finding the catalogue does
not know is shown as the model gives it. The coded concepts are language-neutral and stay as
they are. A reason a study was not analysed is free text from the screening stages and stays
English; the sentence around it, and the coded status, say plainly that it is not a result.
"""

from __future__ import annotations

from diagnostics.i18n import DEFAULT_LANGUAGE, LANGUAGES, format_number, translator
from diagnostics.reports._common import DISCLAIMER
from diagnostics.results import FindingResult, StudyResult

__all__ = ["DEFAULT_LANGUAGE", "LANGUAGES", "conclusion_text"]


def conclusion_text(result: StudyResult, language: str = DEFAULT_LANGUAGE) -> str:
    """The report's conclusion, naming findings as the review UI does (the coded concepts are
    in the Observations). A study that was not analysed says so plainly: it must never read as
    a normal result."""
    t = translator(language)
    if result.status != "analyzed":
        reason = result.reason or t.gettext("no reason was recorded")
        if result.status == "not_analyzed":
            text = t.gettext(
                "AI pre-screening NOT ANALYSED: %(reason)s. No finding is reported and this is "
                "not a normal result: a radiologist must read the images."
            )
        else:
            text = t.gettext(
                "AI pre-screening FAILED: %(reason)s. No finding is reported and this is not a "
                "normal result: a radiologist must read the images."
            )
        return text % {"reason": reason}
    flagged = [_named(f, language) for f in result.flagged]
    quiet = [finding_name(f.display, language) for f in result.findings if not f.flagged]
    parts = []
    if flagged:
        parts.append(
            t.ngettext(
                "AI pre-screening flagged %(count)d finding: %(findings)s.",
                "AI pre-screening flagged %(count)d findings: %(findings)s.",
                len(flagged),
            )
            % {"count": len(flagged), "findings": "; ".join(flagged)}
        )
    else:
        parts.append(t.gettext("AI pre-screening flagged none of the findings it looks for."))
    if quiet:
        parts.append(t.gettext("Not flagged: %(findings)s.") % {"findings": ", ".join(quiet)})
    parts.append(
        t.gettext("%(disclaimer)s: a radiologist reads the images.")
        % {"disclaimer": disclaimer(language)}
    )
    return " ".join(parts)


def finding_name(display: str, language: str = DEFAULT_LANGUAGE) -> str:
    """A finding's name for people: translated when the catalogue has it, else as given."""
    return translator(language).gettext(display)


def disclaimer(language: str = DEFAULT_LANGUAGE) -> str:
    return translator(language).gettext(DISCLAIMER)


def interpretation_text(flagged: bool, language: str = DEFAULT_LANGUAGE) -> str:
    t = translator(language)
    if flagged:
        return t.gettext("flagged by AI pre-screening")
    return t.gettext("not flagged by AI pre-screening")


def operating_point_text(threshold: float, language: str = DEFAULT_LANGUAGE) -> str:
    text = translator(language).gettext("operating point: flagged at probability >= %(threshold)s")
    return text % {"threshold": format_number(threshold, language, 4)}


def status_text(status: str, language: str = DEFAULT_LANGUAGE) -> str:
    """The coded screening status of a study that was not analysed, for people."""
    t = translator(language)
    if status == "not_analyzed":
        return t.gettext("not analysed")
    return t.gettext("screening failed")


def report_texts(language: str = DEFAULT_LANGUAGE) -> dict[str, str]:
    """The report's fixed labels: its category and what it is a report of."""
    t = translator(language)
    return {
        "category": t.gettext("Radiology"),
        "code": t.gettext("Chest radiograph, AI pre-screening"),
    }


def observation_note(sop_instance_uid: str, language: str = DEFAULT_LANGUAGE) -> str:
    text = translator(language).gettext("%(disclaimer)s; from instance %(uid)s")
    return text % {"disclaimer": disclaimer(language), "uid": sop_instance_uid}


def _named(finding: FindingResult, language: str) -> str:
    text = translator(language).gettext(
        "%(finding)s (probability %(probability)s, operating point %(threshold)s)"
    )
    return text % {
        "finding": finding_name(finding.display, language),
        "probability": format_number(finding.probability, language),
        "threshold": format_number(finding.threshold, language),
    }
