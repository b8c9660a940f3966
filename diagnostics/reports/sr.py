"""The screening result as a DICOM Comprehensive SR following TID 1500 (Measurement Report).

One measurement group per finding, in the result's order: the finding's coded concept (from the
model manifest) as Finding and its calibrated probability as a numeric measurement (TID 300).
Flagged findings with a box are TID 1410 planar ROI groups whose region is a POLYLINE rectangle
on the source image; the others are TID 1501 groups that reference the source image as a whole.
The operating point's decision is a report-level qualitative evaluation (TID 1500 row 13), one
per finding: the finding's concept valued with the CAD Rendering Intent a mammography CAD SR uses
for the same idea (DCM 111150 "Presentation Required" when flagged, 111151 "Presentation
Optional" otherwise). It is not in the groups because TID 1410 and 1501, as PixelMed's validator
knows them, have no row for a qualitative evaluation. The model is identified by Algorithm
Identification (TID 4019: name, version, parameters with its sha256 and operating point; the
template has no manufacturer row) and as the device observer, which does name the manufacturer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from diagnostics.constants import MANUFACTURER
from diagnostics.package import Manifest
from diagnostics.reports._common import (
    DISCLAIMER,
    building,
    checked_bbox,
    fit_lo,
    frame_numbers,
    instance_for,
    model_label,
    rectangle,
    require_package,
    software_versions,
    source_header,
    spec_for,
)
from diagnostics.reports._header import UTF8
from diagnostics.reports._library import image_library, insert_before_measurements
from diagnostics.results import FindingResult

if TYPE_CHECKING:
    from diagnostics.screening.outcome import AnalysedInstance, ScreeningOutcome

SR_SERIES_NUMBER = 9001
"""Default Series Number of the SR series: high, so that it sorts after acquired series."""

PROBABILITY = hd.sr.CodedConcept("122157", "DCM", "Probability")
PROBABILITY_UNIT = hd.sr.CodedConcept("{probability}", "UCUM", "probability")
FLAGGED = hd.sr.CodedConcept(
    "111150", "DCM", "Presentation Required: Rendering device is expected to present"
)
NOT_FLAGGED = hd.sr.CodedConcept(
    "111151", "DCM", "Presentation Optional: Rendering device may present"
)
IMAGING_PROCEDURE = hd.sr.CodedConcept("363679005", "SCT", "Imaging procedure")
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
COMMENT = hd.sr.CodedConcept("121106", "DCM", "Comment")


def device_uid(manifest: Manifest) -> str:
    """Device Observer UID of a model: derived from its file's sha256, so the same model file
    is the same observer in every report and a retrained one is a different observer."""
    sources = [MANUFACTURER, manifest.name, manifest.version, manifest.sha256]
    return str(generate_uid(entropy_srcs=sources))


def sha256_parameter(manifest: Manifest) -> str:
    """The Algorithm Parameters text that names the exact model file."""
    return f"model.onnx sha256 {manifest.sha256}"


def _observation_context(manifest: Manifest) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(manifest),
        name=manifest.name,
        manufacturer_name=MANUFACTURER,
        model_name=model_label(manifest),
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _algorithm(manifest: Manifest, finding: FindingResult) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(
        name=manifest.name,
        version=manifest.version,
        parameters=[
            sha256_parameter(manifest),
            f"operating point: flagged when probability >= {finding.threshold:.6g}",
        ],
    )


def _finding_group(
    manifest: Manifest, finding: FindingResult, item: AnalysedInstance
) -> (
    hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
    | hd.sr.MeasurementsAndQualitativeEvaluations
):
    finding_type = finding_concept(manifest, finding)
    algorithm = _algorithm(manifest, finding)
    tracking = hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=finding.code)
    probability = hd.sr.Measurement(
        name=PROBABILITY,
        value=finding.probability,
        unit=PROBABILITY_UNIT,
        algorithm_id=algorithm,
    )
    sop_class = str(item.image.uids.sop_class_uid)
    sop_instance = str(item.image.uids.sop_instance_uid)
    frames = frame_numbers(item)
    if finding.flagged and finding.bbox is not None:
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=rectangle(checked_bbox(finding, item)),
            source_image=hd.sr.SourceImageForRegion(sop_class, sop_instance, frames),
        )
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=tracking,
            referenced_region=region,
            finding_type=finding_type,
            algorithm_id=algorithm,
            measurements=[probability],
        )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking,
        finding_type=finding_type,
        algorithm_id=algorithm,
        measurements=[probability],
        source_images=[hd.sr.SourceImageForMeasurementGroup(sop_class, sop_instance, frames)],
    )


def finding_concept(manifest: Manifest, finding: FindingResult) -> hd.sr.CodedConcept:
    concept = spec_for(manifest, finding.code).concept
    return hd.sr.CodedConcept(concept.value, concept.scheme, concept.meaning)


def _evaluations(manifest: Manifest, outcome: ScreeningOutcome) -> hd.sr.ContainerContentItem:
    """TID 1500's Qualitative Evaluations: each finding's decision, then the disclaimer."""
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    container = hd.sr.ContainerContentItem(name=QUALITATIVE_EVALUATIONS, relationship_type=contains)
    items: list[hd.sr.ContentItem] = [
        hd.sr.CodeContentItem(
            name=finding_concept(manifest, finding),
            value=FLAGGED if finding.flagged else NOT_FLAGGED,
            relationship_type=contains,
        )
        for finding in outcome.result.findings
    ]
    items.append(
        hd.sr.TextContentItem(
            name=COMMENT,
            value=f"{DISCLAIMER}. Produced by {model_label(manifest)} "
            f"(model.onnx sha256 {manifest.sha256}) for review by a radiologist.",
            relationship_type=contains,
        )
    )
    container.ContentSequence = hd.sr.ContentSequence(items)
    return container


def build_sr(
    outcome: ScreeningOutcome,
    *,
    series_number: int = SR_SERIES_NUMBER,
    instance_number: int = 1,
    series_uid: str | None = None,
) -> Dataset:
    """A TID 1500 Comprehensive SR of an analysed outcome, in a new series of the same study.

    Every analysed instance is evidence (Current Requested Procedure Evidence when referenced
    by a finding, Pertinent Other Evidence otherwise) and an Image Library entry, so that every
    reference in the content tree resolves. Raises `ReportError` for outcomes that were not
    analysed or whose findings do not match the analysed instances.
    """
    package = require_package(outcome)
    manifest = package.manifest
    evidence = [source_header(item) for item in outcome.analysed]
    with building("structured report"):
        groups = [
            _finding_group(manifest, finding, instance_for(outcome, finding))
            for finding in outcome.result.findings
        ]
        report = hd.sr.MeasurementReport(
            observation_context=_observation_context(manifest),
            procedure_reported=IMAGING_PROCEDURE,
            imaging_measurements=groups,
        )
        insert_before_measurements(report[0], image_library(outcome))
        report[0].ContentSequence.append(_evaluations(manifest, outcome))
        sr = hd.sr.ComprehensiveSR(
            evidence=evidence,
            content=report[0],
            series_instance_uid=series_uid or generate_uid(),
            series_number=series_number,
            sop_instance_uid=generate_uid(),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            is_complete=True,
            is_final=False,
            is_verified=False,
            series_description=fit_lo(f"AI pre-screening ({model_label(manifest)})"),
            manufacturer_model_name=manifest.name,
        )
    dataset: Dataset = sr  # highdicom types this attribute as one string
    dataset.SoftwareVersions = software_versions(manifest)
    dataset.SpecificCharacterSet = UTF8  # the copied names were decoded from the source's own
    return dataset
