"""Write a phantom as a DICOM DX (For Presentation) instance with complete, consistent headers.

The headers are what a real digital radiography system would send: patient and study identity,
DX series, detector, positioning and image modules, so every later stage (gate, reports, PACS
round trips, dciodvfy) sees realistic objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

import diagnostics

COMPRESSED_SYNTAXES: tuple[UID, ...] = (JPEG2000Lossless, JPEGLSLossless, RLELossless)
"""The lossless compressed transfer syntaxes pydicom's own encoders write, used by `synth`."""

BITS_STORED = 12
_MAX_VALUE = (1 << BITS_STORED) - 1
_MANUFACTURER = "diagnostics synthetic phantom"


@dataclass(frozen=True)
class Patient:
    """Synthetic patient demographics; obviously fake so they can never be mistaken for real."""

    patient_id: str
    name: str
    birth_date: date
    sex: str


@dataclass(frozen=True)
class Acquisition:
    """Per-instance identity and acquisition parameters."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    accession_number: str
    study_id: str
    acquired_at: datetime
    view: str
    spacing_mm: float
    photometric: str = "MONOCHROME2"
    transfer_syntax: UID = ExplicitVRLittleEndian


def _age(birth: date, on: date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{years:03d}Y"


def _window(pixels: np.ndarray, photometric: str) -> tuple[float, float]:
    """A display window over the chest: percentiles of the central region, which excludes the
    collimator edges and the air beside the body that would otherwise stretch the window."""
    rows, cols = pixels.shape
    centre = pixels[rows // 8 : rows * 7 // 8 : 2, cols // 5 : cols * 4 // 5 : 2]
    low, high = np.percentile(centre, [2.0, 99.0])
    center, width = (low + high) / 2.0, max(float(high - low), 1.0)
    if photometric == "MONOCHROME1":
        center = _MAX_VALUE - center
    return round(float(center), 1), round(width, 1)


_VIEW_CODES = {"PA": ("272479007", "postero-anterior"), "AP": ("399348003", "antero-posterior")}


def _sct(value: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue = value
    code.CodingSchemeDesignator = "SCT"
    code.CodeMeaning = meaning
    return code


def _view_code(view: str) -> Dataset:
    code = _sct(*_VIEW_CODES[view])  # DICOM CID 4010 "DX View"
    code.ViewModifierCodeSequence = Sequence([])
    return code


def _patient_study_series(ds: Dataset, patient: Patient, acq: Acquisition) -> None:
    when = acq.acquired_at
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = patient.sex
    ds.PatientAge = _age(patient.birth_date, when.date())
    ds.StudyInstanceUID = acq.study_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    ds.StudyID = acq.study_id
    ds.AccessionNumber = acq.accession_number
    ds.StudyDescription = f"XR CHEST {acq.view}"
    ds.Modality = "DX"
    ds.SeriesInstanceUID = acq.series_instance_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"CHEST {acq.view}"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = _MANUFACTURER
    ds.ManufacturerModelName = "phantom"
    ds.SoftwareVersions = diagnostics.__version__
    ds.InstitutionName = "SYNTHETIC"


def _image_modules(ds: Dataset, acq: Acquisition, pixels: np.ndarray) -> None:
    mono1 = acq.photometric == "MONOCHROME1"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]  # displayed facing the patient: rows run to the left side
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.ImageLaterality = "U"
    ds.BodyPartExamined = "CHEST"
    ds.AnatomicRegionSequence = Sequence([_sct("43799004", "Chest")])
    ds.ViewPosition = acq.view
    ds.ViewCodeSequence = Sequence([_view_code(acq.view)])
    ds.PositionerType = "COLUMN"
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1 if mono1 else -1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "INVERSE" if mono1 else "IDENTITY"
    center, width = _window(pixels, acq.photometric)
    ds.WindowCenter = center
    ds.WindowWidth = width
    ds.WindowCenterWidthExplanation = "BODY"
    ds.DetectorType = "SCINTILLATOR"
    ds.ImagerPixelSpacing = [acq.spacing_mm, acq.spacing_mm]
    ds.KVP = 120 if acq.view == "PA" else 90
    ds.DistanceSourceToDetector = 1800 if acq.view == "PA" else 1000
    ds.AcquisitionContextSequence = Sequence([])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = acq.photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0


def build_dx(pixels: np.ndarray, patient: Patient, acq: Acquisition) -> Dataset:
    """A complete DX dataset from 12-bit MONOCHROME2-convention pixels (higher = denser).

    MONOCHROME1 output stores the inverted values with an INVERSE presentation LUT, as detectors
    that write MONOCHROME1 do; compressed syntaxes are encoded losslessly with pydicom.
    """
    if pixels.dtype != np.uint16 or pixels.ndim != 2 or int(pixels.max()) > _MAX_VALUE:
        raise ValueError("pixels must be a 2-D uint16 array of 12-bit values")
    stored = (_MAX_VALUE - pixels).astype(np.uint16) if acq.photometric == "MONOCHROME1" else pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = UID(acq.sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = acq.sop_instance_uid
    ds.InstanceCreationDate = acq.acquired_at.strftime("%Y%m%d")
    _patient_study_series(ds, patient, acq)
    _image_modules(ds, acq, pixels)  # the window is computed on, then mirrored from, MONO2
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    if acq.transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(
            acq.transfer_syntax,
            encoding_plugin=_plugin(acq.transfer_syntax),
            generate_instance_uid=False,  # lossless: still the same instance
        )
    return ds


def _plugin(syntax: UID) -> str:
    return {JPEG2000Lossless: "pylibjpeg", JPEGLSLossless: "pyjpegls", RLELossless: "pydicom"}.get(
        syntax, ""
    )
