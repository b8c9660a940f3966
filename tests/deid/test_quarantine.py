"""Which instances are held back because their pixels may show patient details."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from diagnostics.constants import MANUFACTURER
from diagnostics.deid.quarantine import quarantine_reason

DX = "1.2.840.10008.5.1.4.1.1.1.1"
CT = "1.2.840.10008.5.1.4.1.1.2"


def _ds(sop_class: str, **attributes: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("ds", "word"),
    [
        (_ds(DX, BurnedInAnnotation="YES"), "Burned In Annotation is YES"),
        (_ds(DX), "Burned In Annotation is missing"),
        (_ds(DX, BurnedInAnnotation="NO", RecognizableVisualFeatures="YES"), "Recognizable"),
        (_ds("1.2.840.10008.5.1.4.1.1.7"), "Secondary Capture"),
        (_ds("1.2.840.10008.5.1.4.1.1.7.4", BurnedInAnnotation="NO"), "Secondary Capture"),
        (_ds("1.2.840.10008.5.1.4.1.1.6.1", BurnedInAnnotation="NO"), "ultrasound"),
        (_ds("1.2.840.10008.5.1.4.1.1.3.1"), "ultrasound"),
        (_ds(CT, Modality="US"), "ultrasound"),
        (_ds(DX, Manufacturer=MANUFACTURER, BurnedInAnnotation="NO"), "this service"),
        (
            _ds("1.2.840.10008.5.1.4.1.1.7", SecondaryCaptureDeviceManufacturer=MANUFACTURER),
            "this service",
        ),
    ],
)
def test_held_back(ds: Dataset, word: str) -> None:
    reason = quarantine_reason(ds)
    assert reason is not None and word in reason


@pytest.mark.parametrize(
    "ds",
    [
        _ds(DX, BurnedInAnnotation="NO"),
        _ds(CT, Modality="CT"),
        _ds(CT, Modality="CT", BurnedInAnnotation="NO"),
    ],
)
def test_exported(ds: Dataset) -> None:
    # An explicit NO, or a reconstructed modality without the attribute.
    assert quarantine_reason(ds) is None
