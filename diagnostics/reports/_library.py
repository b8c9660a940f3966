"""The SR's Image Library (TID 1600), written here rather than by highdicom.

highdicom reads Patient Orientation and Imager Pixel Spacing of radiographs without checking
them (an empty orientation or a missing spacing raised). Each entry has the modality, rows and
columns, and Patient Orientation only when it is two valid direction codes. Pixel spacing is left
out: TID 1603 and 1604 both define it and PixelMed's validator cannot tell which one applies (it
warns of an ambiguous match), and the SR's regions are in pixels anyway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from diagnostics.reports._common import source_header
from diagnostics.reports._header import patient_orientation

if TYPE_CHECKING:
    from diagnostics.screening.outcome import AnalysedInstance, ScreeningOutcome

# CID 29 Acquisition Modality, the value set of TID 1602's Modality row, for the modalities an
# analysed image can come from. A Secondary Capture ("OT", not in CID 29) that was analysed as a
# chest radiograph is a captured radiograph: "RG", unless its header names a CID 29 modality.
ACQUISITION_MODALITIES = {
    "CR": "Computed Radiography",
    "CT": "Computed Tomography",
    "DX": "Digital Radiography",
    "IO": "Intra-oral Radiography",
    "MG": "Mammography",
    "MR": "Magnetic Resonance",
    "NM": "Nuclear Medicine",
    "PT": "Positron emission tomography",
    "PX": "Panoramic X-Ray",
    "RF": "Radiofluoroscopy",
    "RG": "Radiographic imaging",
    "US": "Ultrasound",
    "XA": "X-Ray Angiography",
    "XC": "External-camera Photography",
}


def _library_entry(item: AnalysedInstance) -> hd.sr.ImageContentItem:
    """One TID 1601 entry: the image, its modality, size and (when valid) orientation."""
    info = item.image.info
    bare = Dataset()  # only what TID 1602 needs, so highdicom reads nothing else
    bare.SOPClassUID = info.uids.sop_class_uid
    bare.SOPInstanceUID = info.uids.sop_instance_uid
    bare.Rows, bare.Columns = info.rows, info.columns
    bare.Modality = ""  # no projection or cross-sectional descriptors of highdicom's own
    orientation = patient_orientation(source_header(item))
    extra: list[hd.sr.ContentItem] = []
    if orientation is not None:
        extra = [
            hd.sr.TextContentItem(
                name=name,
                value=value,
                relationship_type=hd.sr.RelationshipTypeValues.HAS_ACQ_CONTEXT,
            )
            for name, value in zip(
                (codes.DCM.PatientOrientationRow, codes.DCM.PatientOrientationColumn),
                orientation,
                strict=True,
            )
        ]
    entry = hd.sr.ImageContentItem(
        name=hd.sr.CodedConcept("260753009", "SCT", "Source"),
        referenced_sop_class_uid=info.uids.sop_class_uid,
        referenced_sop_instance_uid=info.uids.sop_instance_uid,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    descriptors = hd.sr.ImageLibraryEntryDescriptors(bare, additional_descriptors=extra)
    modality = descriptors[0].ConceptCodeSequence[0]  # TID 1602 row 1, from the SOP class
    if modality.CodeValue not in ACQUISITION_MODALITIES:
        modality.CodeValue = str(info.modality) if info.modality in ACQUISITION_MODALITIES else "RG"
        modality.CodeMeaning = ACQUISITION_MODALITIES[modality.CodeValue]
    entry.ContentSequence = descriptors
    return entry


def image_library(outcome: ScreeningOutcome) -> hd.sr.ContainerContentItem:
    """TID 1600 with one group holding every analysed instance."""
    group = hd.sr.ContainerContentItem(
        name=codes.DCM.ImageLibraryGroup, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    group.ContentSequence = hd.sr.ContentSequence([_library_entry(i) for i in outcome.analysed])
    library = hd.sr.ContainerContentItem(
        name=codes.DCM.ImageLibrary, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    library.ContentSequence = hd.sr.ContentSequence([group])
    return library


def insert_before_measurements(report: Dataset, item: Dataset) -> None:
    """TID 1500 row 5 (Image Library) comes before row 6 (Imaging Measurements)."""
    content = report.ContentSequence
    index = next(
        (
            i
            for i, existing in enumerate(content)
            if existing.ConceptNameCodeSequence[0].CodeValue == "126010"
        ),
        len(content),
    )
    content.insert(index, item)
