"""Which instances may carry patient details in their pixels, so they are never exported.

The profile cleans attributes, not pixels (we do not claim the Clean Pixel Data Option), so an
instance whose pixels may show a name or a date is held back and listed with the reason.
Secondary Captures and ultrasound are held back whatever Burned In Annotation (0028,0301) says:
screen captures and ultrasound screens routinely show patient details, and those attributes
are often missing or wrong there. Other images are held back unless it says NO, except
reconstructed cross-sectional images (CT, MR, PET, NM), whose pixels are computed and carry no
burned-in text when the attribute is absent. Recognizable Visual Features (0028,0302) other
than NO (a face, a surface rendering) holds an instance back too.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from diagnostics.constants import MANUFACTURER
from diagnostics.dicom.sopclass import sop_class_name

RECONSTRUCTED_MODALITIES = frozenset({"CT", "MR", "PT", "NM"})
"""Cross-sectional images whose pixels are computed: no burned-in text without saying so."""

SECONDARY_CAPTURE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture
    }
)
ULTRASOUND_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.6",  # Ultrasound Image Storage (retired)
        "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
        "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume Storage
        "1.2.840.10008.5.1.4.1.1.6.3",  # Photoacoustic Image Storage (often with US)
        "1.2.840.10008.5.1.4.1.1.3",  # Ultrasound Multi-frame Image Storage (retired)
        "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
    }
)
ULTRASOUND_MODALITIES = frozenset({"US", "IVUS"})


def quarantine_reason(ds: Dataset) -> str | None:
    """Why this instance must not be exported, or None if its pixels carry no burned-in text."""
    sop_class = str(ds.get("SOPClassUID", "") or "").strip()
    name = sop_class_name(sop_class) if sop_class else "unknown SOP class"
    makers = {
        str(ds.get("Manufacturer", "") or "").strip(),
        str(ds.get("SecondaryCaptureDeviceManufacturer", "") or "").strip(),
    }
    if MANUFACTURER in makers:
        return "an overlay or report image made by this service: its annotations are burned in"
    if sop_class in SECONDARY_CAPTURE_CLASSES:
        return f"{name}: screen captures may show patient details burned into the pixels"
    modality = str(ds.get("Modality", "") or "").strip().upper()
    if sop_class in ULTRASOUND_CLASSES or modality in ULTRASOUND_MODALITIES:
        return f"{name}: ultrasound images usually show patient details on screen"
    visual = str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper()
    if visual and visual != "NO":
        shown = visual if visual == "YES" else "not NO"  # never quote an unexpected value
        return f"Recognizable Visual Features is {shown}: the image may identify the patient"
    burned_in = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if burned_in and burned_in != "NO":
        shown = burned_in if burned_in == "YES" else "not NO"
        return f"Burned In Annotation is {shown}: the pixels may show patient details"
    if not burned_in and modality not in RECONSTRUCTED_MODALITIES:
        # Projection radiographs (a digitised film above all) may carry a burned-in name and
        # leave the attribute out; only an explicit NO lets them through.
        return "Burned In Annotation is missing: the pixels may show patient details"
    return None
