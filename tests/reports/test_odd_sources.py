"""Reports from valid-but-odd sources: every output is built, and both validators accept it.

The sources (`odd_sources.py`) are real headers edited the way real CR/DX headers come: empty or
missing attributes, values that are not valid DICOM, other character sets, other pixel encodings,
sizes and frame counts, plus pydicom's bundled real images. Each is read by the normal reader and
given model outputs with a flagged, boxed finding, so that all three outputs are drawn.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from diagnostics.dicom import read_instance
from diagnostics.package import ModelPackage
from diagnostics.reports import WrittenReports, write_reports
from diagnostics.reports.overlay import MAX_OVERLAY_SIDE
from diagnostics.screening.outcome import ScreeningOutcome
from tests.reports.cases import BLOB_BOX, PROBABILITIES, SIZE, make_outcome
from tests.reports.odd_sources import (
    ANALYSED_FRAME,
    CASES,
    CYRILLIC,
    LATIN1,
    UZBEK,
    write_case,
)
from tests.validators import Verdict, dciodvfy, pixelmed_sr

pytestmark = pytest.mark.slow  # every odd case written, then dciodvfy and PixelMed on each

NAMES = {
    "latin1-name": LATIN1,
    "cyrillic-iso-ir-144": CYRILLIC,
    "iso2022-cyrillic": CYRILLIC,
    "utf8-uzbek": UZBEK,
    "utf8-cyrillic-and-uzbek": f"{UZBEK}={CYRILLIC}",
}
PIXELMED_CASES = ("multi-frame", "orientation-empty")
"""SRs checked by PixelMed (the JVM and its stylesheets cost about a minute on a loaded machine,
then about ten seconds an SR). Between them they hold what varies in SR content: orientation
rows or none, a Secondary Capture whose modality the Image Library maps to CID 29, frame
references. The other cases change only the header, which dciodvfy checks for every one."""


@dataclass(frozen=True)
class Odd:
    name: str
    source: Dataset
    outcome: ScreeningOutcome
    reports: WrittenReports

    def output(self, prefix: str) -> Dataset:
        (path,) = [p for p in self.reports.paths if p.name.startswith(prefix)]
        return pydicom.dcmread(path)


def _outcome(path: Path, name: str, package: ModelPackage) -> ScreeningOutcome:
    """A flagged nodule whose box is the blob's, scaled to the source's size."""
    image = read_instance(path)
    outcome = make_outcome(image, package, PROBABILITIES)
    rows, cols = image.info.rows, image.info.columns
    x0, y0, x1, y1 = BLOB_BOX
    box = (x0 * cols // SIZE, y0 * rows // SIZE, x1 * cols // SIZE, y1 * rows // SIZE)
    findings = [
        f.model_copy(update={"bbox": box}) if f.bbox else f for f in outcome.result.findings
    ]
    analysed = dataclasses.replace(outcome.analysed[0], frame=ANALYSED_FRAME.get(name, 0))
    return dataclasses.replace(
        outcome,
        result=outcome.result.model_copy(update={"findings": findings}),
        analysed=(analysed,),
    )


@pytest.fixture(scope="module")
def odd(bundled: ModelPackage, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Odd]:
    folder = tmp_path_factory.mktemp("odd-sources")
    built: dict[str, Odd] = {}
    for index, name in enumerate(CASES):
        path = write_case(name, folder, index)
        outcome = _outcome(path, name, bundled)
        reports = write_reports(outcome, folder / "out" / name)
        source = pydicom.dcmread(path, stop_before_pixels=True)
        built[name] = Odd(name=name, source=source, outcome=outcome, reports=reports)
    return built


@pytest.fixture(scope="module")
def pixelmed(odd: dict[str, Odd]) -> dict[str, Verdict]:
    """PixelMed's verdicts on the chosen SRs, from one JVM."""
    paths = {name: odd[name].reports.paths[0] for name in PIXELMED_CASES}
    verdicts = pixelmed_sr(list(paths.values()))
    return {name: verdicts[path] for name, path in paths.items()}


@pytest.mark.parametrize("name", CASES)
def test_every_output_is_built(odd: dict[str, Odd], name: str) -> None:
    reports = odd[name].reports
    assert reports.failures == []
    assert [p.name for p in reports.paths] == ["SR.dcm", "OV-0001.dcm", "PR-0001.dcm"]


@pytest.mark.parametrize("name", CASES)
def test_every_output_passes_dciodvfy(odd: dict[str, Odd], name: str) -> None:
    for path in odd[name].reports.paths:
        assert dciodvfy(path).errors == [], path.name


@pytest.mark.parametrize("name", CASES)
def test_outputs_stay_in_the_source_study_and_reference_it(odd: dict[str, Odd], name: str) -> None:
    case = odd[name]
    uids = case.outcome.analysed[0].image.uids
    sr, overlay, state = (case.output(p) for p in ("SR", "OV", "PR"))
    for output in (sr, overlay, state):
        assert output.StudyInstanceUID == uids.study_instance_uid
        assert output.SpecificCharacterSet == "ISO_IR 192"
    (evidence,) = sr.CurrentRequestedProcedureEvidenceSequence
    (sr_ref,) = evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert sr_ref.ReferencedSOPInstanceUID == uids.sop_instance_uid
    (source_ref,) = overlay.SourceImageSequence
    (state_ref,) = state.ReferencedSeriesSequence[0].ReferencedImageSequence
    assert source_ref.ReferencedSOPInstanceUID == uids.sop_instance_uid
    assert state_ref.ReferencedSOPInstanceUID == uids.sop_instance_uid
    # The state applies to the instance; each annotation names the frame it is drawn on.
    (annotated,) = state.GraphicAnnotationSequence[0].ReferencedImageSequence
    frame = ANALYSED_FRAME.get(name)
    if frame is not None and name != "pydicom-sc-rgb-2frame":  # SC is not a multi-frame IOD
        assert source_ref.ReferencedFrameNumber == frame + 1
        assert annotated.ReferencedFrameNumber == frame + 1
    else:
        assert "ReferencedFrameNumber" not in source_ref
        assert "ReferencedFrameNumber" not in annotated


@pytest.mark.parametrize("name", sorted(NAMES))
def test_names_in_other_character_sets_stay_readable(odd: dict[str, Odd], name: str) -> None:
    case = odd[name]
    assert str(case.source.PatientName) == NAMES[name]  # the source spelt it as intended
    for path in case.reports.paths:
        assert str(pydicom.dcmread(path).PatientName) == NAMES[name], path.name
        assert NAMES[name].encode("utf-8") in path.read_bytes(), path.name  # as declared


@pytest.mark.parametrize(
    ("name", "keyword"),
    [
        ("birth-date-iso", "PatientBirthDate"),
        ("bad-dates-and-times", "StudyDate"),
        ("bad-dates-and-times", "StudyTime"),
        ("over-long-values", "AccessionNumber"),
        ("over-long-values", "PatientID"),
        ("over-long-values", "PatientName"),
        ("sex-unknown-code", "PatientSex"),
    ],
)
def test_invalid_type2_values_are_written_empty(
    odd: dict[str, Odd], name: str, keyword: str
) -> None:
    for prefix in ("SR", "OV", "PR"):
        output = odd[name].output(prefix)
        assert keyword in output and output[keyword].value in ("", None), (prefix, keyword)


def test_invalid_type3_values_are_left_out(odd: dict[str, Odd]) -> None:
    for prefix in ("SR", "OV", "PR"):
        assert "StudyDescription" not in odd["over-long-values"].output(prefix)
        assert "PatientAge" not in odd["bad-dates-and-times"].output(prefix)


def test_valid_values_are_copied(odd: dict[str, Odd]) -> None:
    case = odd["bad-dates-and-times"]
    for prefix in ("SR", "OV", "PR"):
        output = case.output(prefix)
        assert output.PatientBirthDate == case.source.PatientBirthDate
        assert output.AccessionNumber == case.source.AccessionNumber
        assert output.PatientName == case.source.PatientName


def test_large_source_gets_a_downscaled_overlay_and_source_coordinates(
    odd: dict[str, Odd],
) -> None:
    case = odd["large-4300x3500"]
    overlay, state = case.output("OV"), case.output("PR")
    rows, cols = case.source.Rows, case.source.Columns
    assert max(overlay.Rows, overlay.Columns) == MAX_OVERLAY_SIDE
    assert overlay.Rows / overlay.Columns == pytest.approx(rows / cols, rel=0.01)
    assert "downscaled" in overlay.DerivationDescription
    box = next(f.bbox for f in case.outcome.result.findings if f.bbox)
    graphic = state.GraphicAnnotationSequence[0].GraphicObjectSequence[0]
    assert [float(v) for v in graphic.GraphicData[:2]] == [box[0], box[1]]  # source pixels


def test_small_source_gets_an_overlay_of_its_own_size(odd: dict[str, Odd]) -> None:
    case = odd["tiny-64"]
    overlay = case.output("OV")
    assert (overlay.Rows, overlay.Columns) == (64, 64)
    assert "downscaled" not in overlay.DerivationDescription


def test_colour_sources_get_a_colour_presentation_state(odd: dict[str, Odd]) -> None:
    for name in ("rgb-film", "pydicom-us-rgb", "pydicom-us-ybr-multiframe"):
        state = odd[name].output("PR")
        assert state.SOPClassUID == pydicom.uid.ColorSoftcopyPresentationStateStorage
        assert bytes(state.ICCProfile)[12:16] == b"scnr"


@pytest.mark.parametrize("name", PIXELMED_CASES)
def test_sr_passes_pixelmed(pixelmed: dict[str, Verdict], name: str) -> None:
    verdict = pixelmed[name]
    assert verdict.warnings == []
    # PixelMed (Debian's 2022 build) decides whether TID 1410 applies once per Imaging
    # Measurements container: when exactly one Measurement Group there has an Image Region, it
    # checks every group against TID 1410, and reports each image-level TID 1501 group for
    # lacking TID 1410's region (rows 5 and 7, "Missing conditional content item"). The
    # standard picks the template per group, and a report with one boxed finding among
    # image-level ones is what TID 1500 describes, so those errors, and only those, are expected.
    quirk = [e for e in verdict.errors if _is_pixelmed_tid1410_quirk(e)]
    assert [e for e in verdict.errors if e not in quirk] == []
    assert len(quirk) == 2 * 2  # two image-level groups, rows 5 and 7 each


def _is_pixelmed_tid1410_quirk(error: str) -> bool:
    return (
        "Template 1410 PlanarROIMeasurements" in error
        and ("[Row 5] SCOORD" in error or "[Row 7] IMAGE" in error)
        and error.endswith("Missing conditional content item")
    )
