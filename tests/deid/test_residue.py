"""No residue: identifying text planted in 60+ places, none of it anywhere in the export.

One radiograph carries a distinct marker in every kind of place a hospital's header can hold
a name or a date (`phi.plant_residue`): the patient, physicians and operators, institution,
descriptions, comments, the sequences the profile removes and those it keeps and walks,
private tags, overlays, curves and the file meta. A second one is flagged as burned in and
so quarantined. The stored results quote markers in every reason field. Then every byte of
every exported file is searched for every marker.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from diagnostics.deid import ExportOptions, Keys, export_research
from diagnostics.deid.research_export import WITHHELD
from diagnostics.results import (
    FindingResult,
    InstanceResult,
    ModelRef,
    OutputFailure,
    StudyResult,
)
from diagnostics.store.sqlite import SqliteStore
from diagnostics.synth import SynthConfig, generate
from tests.deid import phi

MODEL = ModelRef(name="cxr-demo", version="1.0.0", sha256="0" * 64)


def _save(ds: Dataset, path: Path) -> bytes:
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def _results(kept: Dataset, burned: Dataset, mark: phi.Residue) -> list[StudyResult]:
    analysed = StudyResult(
        study_instance_uid=kept.StudyInstanceUID,
        status="analyzed",
        priority="urgent",
        model=MODEL,
        findings=[
            FindingResult(
                code="nodule",
                display="Lung nodule",
                probability=0.9,
                threshold=0.5,
                flagged=True,
                sop_instance_uid=kept.SOPInstanceUID,
            )
        ],
        instances=[
            InstanceResult(sop_instance_uid=kept.SOPInstanceUID, status="analyzed"),
            InstanceResult(
                sop_instance_uid=f"{phi.UID_ROOT}.9.3",
                status="not_analyzed",
                reason=f"series description {mark()} is out of scope",
            ),
        ],
        output_failures=[
            OutputFailure(output="sr", reason=f"institution {mark()} too long"),
            OutputFailure(
                output="overlay",
                sop_instance_uid=kept.SOPInstanceUID,
                reason=f"/srv/{mark()}/storage/x.dcm: {mark()} damaged",
            ),
        ],
    )
    refused = StudyResult(
        study_instance_uid=burned.StudyInstanceUID,
        status="failed",
        reason=f"patient {mark()} born {phi.FREE_TEXT_DATE}: decoder failed",
        instances=[
            InstanceResult(sop_instance_uid=burned.SOPInstanceUID, status="failed", reason=mark())
        ],
    )
    return [analysed, refused]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, phi.Residue, list[Path]]:
    root = tmp_path_factory.mktemp("residue")
    generate(root / "synth", 2, 7, SynthConfig(rows=128, columns=128, spacing_mm=3.2))
    one, two = (pydicom.dcmread(p) for p in sorted((root / "synth").rglob("*.dcm"))[:2])
    mark = phi.Residue()
    kept = copy.deepcopy(one)
    phi.plant_residue(kept, mark)
    burned = copy.deepcopy(two)
    phi.plant_residue(burned, phi.Residue())  # the same markers: the one search covers both
    burned.BurnedInAnnotation = "YES"
    burned.RecognizableVisualFeatures = mark()  # an odd value a refusal reason must not quote
    store = SqliteStore(root / "store")
    sources = []
    for name, ds in (("kept", kept), ("burned", burned)):
        path = root / f"{name}.dcm"
        store.receive(_save(ds, path), "test")
        sources.append(path)
    for result in _results(kept, burned, mark):
        claim = store.claim_study(result.study_instance_uid)
        assert claim is not None
        store.complete(claim, result)
    store.close()
    out = root / "export"
    export_research(ExportOptions(root / "store", out, salt_file=root / "salt"))
    return out, mark, sources


def test_sixty_places_are_planted_and_none_survives_in_any_exported_byte(
    export: tuple[Path, phi.Residue, list[Path]],
) -> None:
    out, mark, sources = export
    planted = set(mark.found_in(sources[0].read_bytes()))
    assert len(planted) >= 60, len(planted)  # the test plants what it claims to plant
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert any(p.suffix == ".dcm" for p in files)
    assert {p.name for p in files} >= {"results.jsonl", "quarantine.jsonl", "manifest.json"}
    for path in files:
        blob = path.read_bytes()
        assert mark.found_in(blob) == [], path
        assert phi.FREE_TEXT_DATE.encode() not in blob, path
        assert b"Smith" not in blob and b"Dr Who" not in blob, path
        assert phi.UID_ROOT.encode() not in blob, path


def test_kept_sequences_keep_their_codes_with_standard_meanings(
    export: tuple[Path, phi.Residue, list[Path]],
) -> None:
    out, _, _ = export
    (path,) = (out / "studies").rglob("*.dcm")
    ds = pydicom.dcmread(path)
    (region,) = ds.AnatomicRegionSequence
    assert (region.CodeValue, region.CodingSchemeDesignator) == ("51185008", "SCT")
    # pydicom's dictionary meaning, not the one typed at the modality
    assert region.CodeMeaning == "Thoracic structure (body structure)"
    (modifier,) = region.AnatomicRegionModifierSequence
    assert modifier.CodingSchemeDesignator == "99DEID"
    assert modifier.CodeMeaning == f"local code {modifier.CodeValue}"
    (view,) = ds.ViewCodeSequence
    assert view.CodingSchemeDesignator == "99DEID" and "CodingSchemeVersion" not in view
    assert ds.PrimaryAnatomicStructureSequence[0].TextValue == "ANONYMIZED"


def test_result_reasons_are_replaced_by_fixed_texts(
    export: tuple[Path, phi.Residue, list[Path]],
) -> None:
    out, _, _ = export
    results = [
        StudyResult.from_json(line) for line in (out / "results.jsonl").read_text().splitlines()
    ]
    keys = Keys.from_file(out.parent / "salt")
    reasons = {
        r.reason for result in results for r in (*result.instances, *result.output_failures)
    } | {result.reason for result in results}
    assert reasons == {
        None,
        f"instance not_analyzed: {WITHHELD}",
        f"instance failed: {WITHHELD}",
        f"sr not built: {WITHHELD}",
        f"overlay not built: {WITHHELD}",
        f"study failed: {WITHHELD}",
    }
    analysed = next(r for r in results if r.status == "analyzed")
    assert analysed.output_failures[1].sop_instance_uid == analysed.findings[0].sop_instance_uid
    assert analysed.study_instance_uid.startswith("2.25.")
    assert keys.source == "file"
