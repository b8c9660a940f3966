"""Reports in each language the project speaks: valid FHIR, translated for people, coded the same,
and a study that was not analysed never reads as normal in any of them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from diagnostics.fhir import ReportContext, build_bundle, validate_bundle
from diagnostics.i18n import LANGUAGES, translator
from diagnostics.package import Manifest
from diagnostics.results import StudyResult
from tests.fhir.sample import STUDY, analysed, context, model_ref

# RUF001 (silenced below) takes the Uzbek letter U+02BB and Cyrillic capitals for confusable ASCII.
NODULE = {"uz": "Oʻpkadagi tugun", "ru": "Узел в легком", "en": "Lung nodule"}  # noqa: RUF001
COMMA = {"uz": True, "ru": True, "en": False}
"""Whether the language writes decimals with a comma (CLDR)."""
NOT_NORMAL = {
    "uz": "patologiya yoʻqligini ANGLATMAYDI",  # noqa: RUF001
    "ru": "НЕ означает отсутствия патологии",  # noqa: RUF001
    "en": "this is not a normal result",
}
NOT_ANALYSED = {"uz": "OʻTKAZILMADI", "ru": "НЕ ПРОВЕДЕН", "en": "NOT ANALYSED"}  # noqa: RUF001
FAILED = {"uz": "XATO BILAN TUGADI", "ru": "ЗАВЕРШИЛСЯ ОШИБКОЙ", "en": "FAILED"}


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def in_language(manifest: Manifest, language: str) -> ReportContext:
    return context(manifest).model_copy(update={"language": language})


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_analysed_report_validates_and_speaks_the_language(
    manifest: Manifest, language: str
) -> None:
    result = analysed(manifest, flagged="nodule")
    bundle = build_bundle(result, 1, in_language(manifest, language))
    validate_bundle(bundle)  # fhir.resources' R4B models, as before every send
    (report,) = resources(bundle, "DiagnosticReport")
    assert report["language"] == language
    conclusion = report["conclusion"]
    assert NODULE[language] in conclusion
    nodule = next(f for f in result.findings if f.code == "nodule")
    written = f"{nodule.probability:.2f}"
    assert (written.replace(".", ",") in conclusion) is COMMA[language], conclusion
    assert translator(language).gettext("AI pre-screening, not for diagnosis") in conclusion
    observations = resources(bundle, "Observation")
    (flagged,) = [o for o in observations if o["code"]["text"] == NODULE[language]]
    assert flagged["language"] == language
    assert flagged["interpretation"][0]["coding"][0]["code"] == "POS"
    assert flagged["interpretation"][0]["text"] == translator(language).gettext(
        "flagged by AI pre-screening"
    )
    assert ("," in flagged["referenceRange"][0]["text"]) is COMMA[language]
    # The coded concepts are the same in every language: only the texts for people change.
    english = build_bundle(result, 1, in_language(manifest, "en"))
    codes = [o["code"]["coding"] for o in resources(english, "Observation")]
    assert [o["code"]["coding"] for o in observations] == codes
    assert (
        report["conclusionCode"][0]["coding"]
        == (resources(english, "DiagnosticReport")[0]["conclusionCode"][0]["coding"])
    )
    if language != "en":
        assert "Lung nodule" not in json.dumps(report, ensure_ascii=False)


def test_the_language_recorded_with_the_context_is_the_default(manifest: Manifest) -> None:
    result = analysed(manifest, flagged="nodule")
    bundle = build_bundle(result, 1, in_language(manifest, "ru"))
    assert resources(bundle, "DiagnosticReport")[0]["language"] == "ru"
    chosen = build_bundle(result, 1, in_language(manifest, "ru"), language="uz")
    assert resources(chosen, "DiagnosticReport")[0]["language"] == "uz"
    assert ReportContext.from_header(None, manifest, "uz").language == "uz"
    old = context(manifest).model_dump_json(exclude={"language"})  # recorded before languages
    assert ReportContext.model_validate_json(old).language == "en"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("status", ["failed", "not_analyzed"])
def test_an_unanalysed_study_never_reads_as_normal_in_any_language(
    manifest: Manifest, status: str, language: str
) -> None:
    result = StudyResult(
        study_instance_uid=STUDY,
        status=status,  # type: ignore[arg-type]
        reason="the image is a lateral view",
        model=model_ref(manifest),
    )
    bundle = build_bundle(result, 1, in_language(manifest, language))
    validate_bundle(bundle)
    assert resources(bundle, "Observation") == []
    (report,) = resources(bundle, "DiagnosticReport")
    assert report["language"] == language
    conclusion = report["conclusion"]
    assert NOT_NORMAL[language] in conclusion
    assert (NOT_ANALYSED if status == "not_analyzed" else FAILED)[language] in conclusion
    assert "lateral view" in conclusion  # the reason, as the screening stages gave it
    # Nothing of an analysed report's wording: neither "flagged none" nor a list of findings.
    t = translator(language)
    for analysed_wording in (
        t.gettext("AI pre-screening flagged none of the findings it looks for."),
        t.gettext("Not flagged: %(findings)s.").split("%")[0],
        t.gettext("%(disclaimer)s: a radiologist reads the images.").split(")s")[1],
    ):
        assert analysed_wording not in conclusion
    (code,) = report["conclusionCode"]
    assert code["coding"][0]["code"] == status
    assert code["text"] == t.gettext(
        "not analysed" if status == "not_analyzed" else "screening failed"
    )
    assert "NEG" not in json.dumps(bundle)
