"""The bundle of one result version: what the EMR reads, checked against fhir.resources."""

from __future__ import annotations

import copy
import json
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from diagnostics.errors import ConfigurationError
from diagnostics.fhir import (
    FhirBundleError,
    Reader,
    ReportContext,
    build_bundle,
    conclusion_text,
    identifier_of,
    validate_bundle,
)
from diagnostics.package import Manifest
from diagnostics.results import StudyResult
from tests.fhir.sample import STUDY, analysed, context, model_ref

READER = Reader(actor="ui:dr-karimova", read_at="2026-12-03T09:30:00+00:00")


def resources(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def full_url(bundle: dict[str, Any], resource: dict[str, Any]) -> str:
    return str(next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is resource))


def test_an_analysed_result_maps_every_finding(manifest: Manifest) -> None:
    result = analysed(manifest, flagged="nodule")
    bundle = build_bundle(result, 3, context(manifest))
    (report,) = resources(bundle, "DiagnosticReport")
    (device,) = resources(bundle, "Device")
    observations = resources(bundle, "Observation")
    assert report["status"] == "preliminary"
    assert report["language"] == "en"
    assert {c["code"] for c in report["category"][0]["coding"]} >= {"LP29684-5"}
    assert report["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "30745-4",
        "display": "XR Chest Views",
    }
    assert report["imagingStudy"][0]["identifier"] == {
        "system": "urn:dicom:uid",
        "value": f"urn:oid:{STUDY}",
    }
    assert report["subject"]["identifier"] == {"system": "urn:oid:1.2.3.4.5", "value": "PAT-0042"}
    assert [r["reference"] for r in report["result"]] == [full_url(bundle, o) for o in observations]
    assert "Lung nodule" in report["conclusion"] and "flagged" in report["conclusion"]
    assert report["conclusionCode"][0]["coding"][0]["code"] == "786838002"

    assert device["identifier"][0]["value"] == manifest.sha256
    assert device["deviceName"][0] == {"name": manifest.name, "type": "model-name"}
    assert {v["value"] for v in device["version"]} == {manifest.version, manifest.sha256}

    assert len(observations) == len(result.findings)
    for finding, observation in zip(result.findings, observations, strict=True):
        spec = next(s for s in manifest.findings if s.code == finding.code)
        coding = observation["code"]["coding"][0]
        assert coding == {
            "system": "http://snomed.info/sct",
            "code": spec.concept.value,
            "display": spec.concept.meaning,
        }
        assert observation["valueQuantity"]["value"] == pytest.approx(finding.probability, abs=1e-6)
        assert observation["referenceRange"][0]["high"]["value"] == pytest.approx(
            finding.threshold, abs=1e-6
        )
        expected = "POS" if finding.flagged else "NEG"
        assert observation["interpretation"][0]["coding"][0]["code"] == expected
        assert observation["derivedFrom"] == report["imagingStudy"]
        assert observation["device"]["reference"] == full_url(bundle, device)
        assert observation["subject"] == report["subject"]


def test_requests_are_conditional_creates_on_stable_identifiers(manifest: Manifest) -> None:
    result = analysed(manifest)
    first = build_bundle(result, 1, context(manifest))
    assert json.dumps(first) == json.dumps(build_bundle(result, 1, context(manifest)))
    for entry in first["entry"]:
        identifier = entry["resource"]["identifier"][0]
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["url"] == entry["resource"]["resourceType"]
        assert identifier["value"] in _unquoted(entry["request"]["ifNoneExist"])
    (report,) = resources(first, "DiagnosticReport")
    assert report["identifier"][0]["value"] == identifier_of(result, 1)
    other = build_bundle(result, 2, context(manifest))
    assert resources(other, "DiagnosticReport")[0]["identifier"] != report["identifier"]


def test_a_read_study_is_final_with_its_reader(manifest: Manifest) -> None:
    result = analysed(manifest)
    preliminary = build_bundle(result, 1, context(manifest))
    final = build_bundle(result, 1, context(manifest), READER)
    (report,) = resources(final, "DiagnosticReport")
    assert report["status"] == "final"
    assert report["resultsInterpreter"][0]["identifier"]["value"] == READER.actor
    assert report["issued"] == READER.read_at
    assert {o["status"] for o in resources(final, "Observation")} == {"final"}
    for before, after in zip(preliminary["entry"], final["entry"], strict=True):
        assert before["resource"]["identifier"] == after["resource"]["identifier"]
        if after["resource"]["resourceType"] == "Device":
            assert after["request"]["method"] == "POST"
        else:  # the preliminary resources are updated in place, or created if they never came
            assert after["request"]["method"] == "PUT"
            assert after["request"]["url"].startswith(after["resource"]["resourceType"] + "?")


@pytest.mark.parametrize("status", ["failed", "not_analyzed"])
def test_an_unanalysed_study_never_reads_as_normal(manifest: Manifest, status: str) -> None:
    result = StudyResult(
        study_instance_uid=STUDY,
        status=status,  # type: ignore[arg-type]
        reason="the image is a lateral view",
        model=model_ref(manifest),
    )
    bundle = build_bundle(result, 1, context(manifest))
    assert resources(bundle, "Observation") == []
    (report,) = resources(bundle, "DiagnosticReport")
    assert "result" not in report
    assert "not a normal result" in report["conclusion"]
    assert "lateral view" in report["conclusion"]
    assert report["conclusionCode"][0]["coding"][0]["code"] == status
    assert "NEG" not in json.dumps(bundle)


def test_a_failed_study_without_a_readable_header_still_reports(manifest: Manifest) -> None:
    result = StudyResult(study_instance_uid=STUDY, status="failed", reason="no instance readable")
    bundle = build_bundle(result, 1, ReportContext.from_header(None, manifest))
    (report,) = resources(bundle, "DiagnosticReport")
    assert "subject" not in report and resources(bundle, "Device") == []
    assert "FAILED" in report["conclusion"]


def test_the_context_comes_from_the_header(manifest: Manifest) -> None:
    header = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")), stop_before_pixels=True)
    header.IssuerOfPatientID = "HOSPITAL-A"
    found = ReportContext.from_header(header, manifest)
    assert found.patient is not None and found.patient.id == str(header.PatientID)
    assert found.patient.identifier()["assigner"] == {"display": "HOSPITAL-A"}
    date = str(header.StudyDate)
    assert found.study_date == f"{date[:4]}-{date[4:6]}-{date[6:]}"
    assert set(found.concepts) == {f.code for f in manifest.findings}


def test_validation_refuses_what_fhir_does_not_allow(manifest: Manifest) -> None:
    bundle = build_bundle(analysed(manifest), 1, context(manifest))
    validate_bundle(bundle)
    cases = []
    wrong_type = copy.deepcopy(bundle)
    wrong_type["entry"][0]["resource"]["status"] = ["active"]
    cases.append(wrong_type)
    unknown_field = copy.deepcopy(bundle)
    unknown_field["entry"][-1]["resource"]["probability"] = 0.5
    cases.append(unknown_field)
    bad_status = copy.deepcopy(bundle)
    bad_status["entry"][-1]["resource"]["status"] = "normal"
    cases.append(bad_status)
    no_request = copy.deepcopy(bundle)
    del no_request["entry"][1]["request"]
    cases.append(no_request)
    for case in cases:
        with pytest.raises(FhirBundleError):
            validate_bundle(case)
    bad_patient = copy.deepcopy(bundle)
    bad_patient["entry"][-1]["resource"]["subject"]["identifier"]["value"] = ["PAT-0042"]
    with pytest.raises(FhirBundleError, match=r"subject\.identifier\.value") as error:
        validate_bundle(bad_patient)
    assert "PAT-0042" not in str(error.value)  # messages reach logs: no patient identifiers


def test_conclusions_are_english_by_default_and_unknown_languages_are_refused(
    manifest: Manifest,
) -> None:
    result = analysed(manifest, flagged=None)
    text = conclusion_text(result)
    assert "flagged none" in text and "not for diagnosis" in text
    with pytest.raises(ConfigurationError, match=r"'fr'.*uz, ru, en"):
        conclusion_text(result, language="fr")
    with pytest.raises(ConfigurationError, match="'de'"):
        build_bundle(result, 1, context(manifest), language="de")


def _unquoted(query: str) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(query)


def test_the_order_is_named_by_its_accession_number(manifest: Manifest) -> None:
    with_order = context(manifest).model_copy(update={"accession_number": "ACC-778"})
    (report,) = resources(build_bundle(analysed(manifest), 1, with_order), "DiagnosticReport")
    (order,) = report["basedOn"]
    assert order["type"] == "ServiceRequest"
    assert order["identifier"]["value"] == "ACC-778"
    assert order["identifier"]["type"]["coding"][0]["code"] == "ACSN"
    (plain,) = resources(build_bundle(analysed(manifest), 1, context(manifest)), "DiagnosticReport")
    assert "basedOn" not in plain
