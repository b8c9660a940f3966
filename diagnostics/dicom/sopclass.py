"""Which SOP classes are images, so non-image objects are refused by name rather than misread."""

from __future__ import annotations

from pydicom.uid import UID

# Families of storage SOP classes that carry no image we could analyse, by UID prefix.
_NON_IMAGE_PREFIXES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.": "structured report or key object selection",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.9.": "waveform",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
    "1.2.840.10008.5.1.4.1.1.481.": "radiotherapy object",
    "1.2.840.10008.5.1.4.1.1.66": "raw data, registration, segmentation or fiducials",
    "1.2.840.10008.5.1.4.1.1.67": "real world value mapping",
    "1.2.840.10008.5.1.4.1.1.68.": "surface",
    "1.2.840.10008.5.1.4.1.1.78.": "measurement or lens data",
    "1.2.840.10008.5.1.4.1.1.79.": "visual field data",
    "1.2.840.10008.5.1.4.1.1.90.": "content assessment",
    "1.2.840.10008.5.1.4.1.1.91.": "microscopy bulk annotations",
    "1.2.840.10008.5.1.4.1.1.200.": "protocol or inventory",
    "1.2.840.10008.5.1.4.1.1.4.2": "MR spectroscopy",
    "1.2.840.10008.5.1.4.34.": "workflow object",
    "1.2.840.10008.5.1.4.38.": "hanging protocol",
    "1.2.840.10008.5.1.4.39.": "colour palette",
    "1.2.840.10008.5.1.4.43.": "generic implant template",
}

# RT Image and RT Dose sit under the RT prefix but do hold pixel data; let them through to the gate.
_RT_IMAGE_CLASSES = {"1.2.840.10008.5.1.4.1.1.481.1", "1.2.840.10008.5.1.4.1.1.481.2"}


def sop_class_name(uid: str) -> str:
    """The registry name of a SOP class, or the UID itself when pydicom does not know it."""
    name = UID(uid).name
    return name if name and name != uid else uid


def non_image_kind(uid: str) -> str | None:
    """The kind of non-image object `uid` identifies, or None if it may be an image."""
    if uid in _RT_IMAGE_CLASSES:
        return None
    for prefix, kind in _NON_IMAGE_PREFIXES.items():
        if uid.startswith(prefix):
            return kind
    return None
