"""A real-world header corpus: chest radiographs as hospitals actually send them.

Each case is a study (one or more instances) written by the test suite itself, from the
project's synthetic phantoms (`diagnostics.synth`) or from pydicom's bundled real images; nothing
is downloaded. The headers vary the way real CR/DX headers do: SOP classes (CR, DX for
presentation and for processing, Secondary Capture of digitized film), photometric
interpretation and bits stored, VOI LUTs and several windows, Type 2/3 attributes missing or
empty, vendor and local body-part wording, character sets with Cyrillic and Uzbek names, very
large and very small images, a PA + lateral study, a multi-frame image.

Every case says what a careful product does with it: `analyzed`, or `not_analyzed` with words
the reason must contain (a reason a person can act on). `variant` gives each sending channel
its own UIDs, so the same case can travel by CLI, /v1/screen, STOW-RS and C-STORE at once.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from diagnostics.synth.dx import Acquisition, Patient, build_dx
from diagnostics.synth.study import SynthConfig, make_study

CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
DX_FOR_PROCESSING = UID("1.2.840.10008.5.1.4.1.1.1.1.1")
SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")
SIDE = 320
"""Phantom size for ordinary cases: the model's own input size, so the corpus stays fast."""
FIELD_OF_VIEW_MM = 409.6

Mutator = Callable[[Dataset], None]


@dataclass(frozen=True)
class Instance:
    """One file of a case: how to draw it and, when it differs from the study's, its outcome."""

    pixels: Callable[[], np.ndarray] | None = None
    """12-bit phantom pixels (higher = denser); None for the case's default phantom."""
    view: str = "PA"
    mutators: tuple[Mutator, ...] = ()
    source: str | None = None
    """A pydicom test file to start from instead of a phantom (its own header, new UIDs)."""
    expect: str | None = None
    """This instance's status when it is not the study's (a lateral beside a PA view)."""
    reason: str | None = None


@dataclass(frozen=True)
class Case:
    name: str
    expect: str
    """`analyzed` or `not_analyzed` for the study."""
    reason: str = ""
    """Words the not-analysed reason must contain."""
    instances: tuple[Instance, ...] = (Instance(),)
    big: bool = False
    """Large images: slower everywhere, kept to the cases that test size."""
    syntax: UID = ExplicitVRLittleEndian


@dataclass
class Built:
    """A case written to disk for one channel."""

    case: Case
    study_uid: str
    files: list[Path] = field(default_factory=list)
    sop_uids: list[str] = field(default_factory=list)


# -- pixels ------------------------------------------------------------------------------------


@cache
def phantom(rows: int = SIDE, columns: int = SIDE, seed: int = 11, view: str = "PA") -> np.ndarray:
    """A 12-bit phantom chest, PA or AP, at the training field of view."""
    spacing = min(5.0, FIELD_OF_VIEW_MM / max(rows, columns))
    config = SynthConfig(rows=rows, columns=columns, spacing_mm=spacing, ap_fraction=0.0)
    for index in range(50):
        _, pixels, _, acquisition = make_study(seed, index, index, config)
        if acquisition.view == view or view not in ("PA", "AP"):
            return pixels
    return pixels


@cache
def big_phantom(rows: int, columns: int) -> np.ndarray:
    """A large image from a 1024-pixel phantom, resampled by repetition (rendering at full size
    would only cost time: the corpus tests size handling, not anatomy)."""
    base = phantom(1024, 1024)
    rows_index = (np.arange(rows) * 1024 // rows).astype(np.intp)
    cols_index = (np.arange(columns) * 1024 // columns).astype(np.intp)
    return np.ascontiguousarray(base[rows_index][:, cols_index])


def lateral() -> np.ndarray:
    """A lateral view stands in as a phantom turned on its side: not what the gate lets in."""
    return np.ascontiguousarray(np.rot90(phantom()))


# -- header edits ------------------------------------------------------------------------------


def delete(*keywords: str) -> Mutator:
    def edit(ds: Dataset) -> None:
        for keyword in keywords:
            if keyword in ds:
                delattr(ds, keyword)

    return edit


def empty(*keywords: str) -> Mutator:
    def edit(ds: Dataset) -> None:
        for keyword in keywords:
            setattr(ds, keyword, "" if keyword != "AnatomicRegionSequence" else Sequence([]))

    return edit


def put(**attributes: object) -> Mutator:
    def edit(ds: Dataset) -> None:
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)

    return edit


def raw_text(keyword: str, text: str, codec: str) -> Mutator:
    """A code string in a non-ASCII script, as bytes in the header's own character set (what
    local modalities write, and what pydicom cannot write from a str)."""

    def edit(ds: Dataset) -> None:
        tag = Tag(keyword)
        value = text.encode(codec)
        if len(value) % 2:
            value += b" "
        ds._dict[tag] = RawDataElement(tag, "CS", len(value), value, 0, False, True)

    return edit


def charset(name: str, patient: str, **more: str) -> Mutator:
    def edit(ds: Dataset) -> None:
        ds.SpecificCharacterSet = name
        ds.PatientName = patient
        for keyword, value in more.items():
            setattr(ds, keyword, value)

    return edit


def bits(stored: int) -> Mutator:
    """Rescale the 12-bit pixels to `stored` bits, 8-bit ones in 8-bit words."""

    def edit(ds: Dataset) -> None:
        pixels = ds.pixel_array.astype(np.float64) * ((1 << stored) - 1) / 4095.0
        dtype = np.uint8 if stored <= 8 else np.uint16
        ds.BitsAllocated = 8 if stored <= 8 else 16
        ds.BitsStored = stored
        ds.HighBit = stored - 1
        ds.PixelData = np.round(pixels).astype(dtype).tobytes()
        scale = ((1 << stored) - 1) / 4095.0
        ds.WindowCenter = round(float(ds.WindowCenter) * scale, 1)
        ds.WindowWidth = max(1.0, round(float(ds.WindowWidth) * scale, 1))

    return edit


def signed16(ds: Dataset) -> None:
    """Signed 16-bit storage with a rescale back to positive values, as some detectors write."""
    pixels = ds.pixel_array.astype(np.int32) * 8 - 16384
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = pixels.astype(np.int16).tobytes()
    ds.RescaleSlope, ds.RescaleIntercept = 0.125, 2048
    ds.WindowCenter, ds.WindowWidth = 2048, 4096


def voi_lut(ds: Dataset) -> None:
    """A VOI LUT Sequence (a sigmoid-like LUT) instead of window values."""
    item = Dataset()
    entries = 4096
    curve = 65535.0 / (1.0 + np.exp(-(np.arange(entries) - 2048.0) / 400.0))
    item.LUTDescriptor = [entries, 0, 16]
    item.LUTExplanation = "VENDOR CURVE"
    item.LUTData = curve.astype("<u2").tobytes()
    ds.VOILUTSequence = Sequence([item])
    for keyword in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation"):
        delattr(ds, keyword)


def several_windows(ds: Dataset) -> None:
    centre, width = float(ds.WindowCenter), float(ds.WindowWidth)
    ds.WindowCenter = [centre, centre * 0.8, centre * 1.1]
    ds.WindowWidth = [width, width * 0.6, width * 1.5]
    ds.WindowCenterWidthExplanation = ["BODY", "LUNG", "BONE"]


def cr(ds: Dataset) -> None:
    """A Computed Radiography image: CR SOP class and modality, a CR-style header."""
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CR_STORAGE
    ds.Modality = "CR"
    for keyword in ("PresentationIntentType", "DetectorType", "PositionerType"):
        delattr(ds, keyword)
    ds.PlateType = "ST-VI"
    ds.PhosphorType = "BaFBr"


def for_processing(ds: Dataset) -> None:
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = DX_FOR_PROCESSING
    ds.PresentationIntentType = "FOR PROCESSING"


def secondary_capture(modality: str, rgb: bool = False) -> Mutator:
    """A film digitized into a Secondary Capture: 8 bits, no spacing, no DX attributes."""

    def edit(ds: Dataset) -> None:
        grey = np.round(ds.pixel_array.astype(np.float64) * 255.0 / 4095.0).astype(np.uint8)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            grey = 255 - grey
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
        ds.Modality = modality
        ds.ConversionType = "DF"
        for keyword in (
            "ImagerPixelSpacing",
            "PresentationIntentType",
            "DetectorType",
            "PositionerType",
            "PixelIntensityRelationship",
            "PixelIntensityRelationshipSign",
            "RescaleIntercept",
            "RescaleSlope",
            "RescaleType",
            "PresentationLUTShape",
            "WindowCenter",
            "WindowWidth",
            "WindowCenterWidthExplanation",
        ):
            if keyword in ds:
                delattr(ds, keyword)
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        if rgb:
            ds.SamplesPerPixel = 3
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
            ds.PixelData = np.repeat(grey[..., np.newaxis], 3, axis=2).tobytes()
        else:
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.PixelData = grey.tobytes()

    return edit


def frames(count: int) -> Mutator:
    def edit(ds: Dataset) -> None:
        ds.NumberOfFrames = count
        ds.FrameIncrementPointer = Tag("FrameTime")
        ds.FrameTime = 100.0
        ds.PixelData = bytes(ds.PixelData) * count

    return edit


def view(position: str, code: tuple[str, str] | None) -> Mutator:
    def edit(ds: Dataset) -> None:
        ds.ViewPosition = position
        if code is None:
            delattr(ds, "ViewCodeSequence")
            return
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code[0], "SCT", code[1]
        item.ViewModifierCodeSequence = Sequence([])
        ds.ViewCodeSequence = Sequence([item])

    return edit


LEFT_LATERAL = ("399173006", "left lateral")
NO_BODY_PART_HINTS = delete(
    "BodyPartExamined", "AnatomicRegionSequence", "StudyDescription", "SeriesDescription"
)
NO_VIEW_HINTS = delete("ViewPosition", "ViewCodeSequence", "StudyDescription", "SeriesDescription")


def real_pixels(name: str) -> Callable[[], np.ndarray]:
    """A pydicom test image's first frame as 12-bit grey pixels (colour to luminance)."""

    def load() -> np.ndarray:
        ds = pydicom.dcmread(get_testdata_file(name))
        array = ds.pixel_array.astype(np.float64)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            array = array[0]
        if array.ndim == 3:
            array = array @ np.array([0.299, 0.587, 0.114])
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) * 4095.0 / max(high - low, 1.0)
        return np.round(scaled).astype(np.uint16)

    return load


# -- the cases ---------------------------------------------------------------------------------

A, N = "analyzed", "not_analyzed"
OUTSIDE_VIEW = "View Position LL is outside this model's scope"
LOOKS_UNLIKE = "does not look like the DX or CR images of the CHEST"


def _cases() -> list[Case]:
    cases = [
        Case("dx-presentation-mono2", A),
        Case("dx-presentation-mono1-inverse", A, instances=(Instance(mutators=(put(),)),)),
        Case("dx-ap-view", A, instances=(Instance(view="AP"),)),
        Case("dx-for-processing", A, instances=(Instance(mutators=(for_processing,)),)),
        Case("cr", A, instances=(Instance(mutators=(cr,)),)),
        Case("cr-mono1", A, instances=(Instance(mutators=(cr,)),)),
        Case("cr-portrait-non-square", A, instances=(Instance(pixels=lambda: phantom(400, 328)),)),
        Case("dx-jpeg2000-lossless", A, syntax=JPEG2000Lossless),
        Case("dx-jpeg-ls-lossless", A, syntax=JPEGLSLossless),
        Case("dx-rle-lossless", A, syntax=RLELossless),
        Case("dx-implicit-vr", A, syntax=ImplicitVRLittleEndian),
        Case("dx-signed-16-bit-rescaled", A, instances=(Instance(mutators=(signed16,)),)),
        Case("dx-voi-lut-sequence", A, instances=(Instance(mutators=(voi_lut,)),)),
        Case("dx-several-windows", A, instances=(Instance(mutators=(several_windows,)),)),
        Case(
            "dx-presentation-lut-inverse-mono2",
            A,
            instances=(Instance(mutators=(put(PresentationLUTShape="INVERSE"),)),),
        ),
        Case(
            "sc-digitized-film-grey-8-bit-cr",
            A,
            instances=(Instance(mutators=(secondary_capture("CR"),)),),
        ),
        Case(
            "sc-digitized-film-grey-8-bit-ot",
            N,
            "OT is outside this model's scope",
            instances=(Instance(mutators=(secondary_capture("OT"),)),),
        ),
        Case(
            "sc-digitized-film-rgb",
            N,
            "Photometric Interpretation RGB is outside this model's scope",
            instances=(Instance(mutators=(secondary_capture("CR", rgb=True),)),),
        ),
    ]
    for stored in (8, 10, 12, 14, 16):
        for photometric in ("MONOCHROME2", "MONOCHROME1"):
            short = "mono1" if photometric == "MONOCHROME1" else "mono2"
            cases.append(
                Case(
                    f"dx-{stored}-bits-stored-{short}",
                    A,
                    instances=(Instance(mutators=(bits(stored),)),),
                )
            )
    # Type 2 and 3 attributes missing or empty: none of them is needed to screen.
    for keyword in (
        "PatientOrientation",
        "ImagerPixelSpacing",
        "ImageLaterality",
        "StudyDate",
        "AccessionNumber",
        "PatientSex",
        "PatientName",
        "PatientBirthDate",
        "ReferringPhysicianName",
        "StudyID",
        "SeriesNumber",
        "InstanceNumber",
    ):
        cases.append(
            Case(f"missing-{keyword}", A, instances=(Instance(mutators=(delete(keyword),)),))
        )
        cases.append(Case(f"empty-{keyword}", A, instances=(Instance(mutators=(empty(keyword),)),)))
    cases += [
        Case(
            "no-spacing-at-all",
            A,
            instances=(Instance(mutators=(delete("ImagerPixelSpacing", "PixelSpacing"),)),),
        ),
        Case(
            "pixel-spacing-only",
            A,
            instances=(
                Instance(mutators=(delete("ImagerPixelSpacing"), put(PixelSpacing=[1.28, 1.28]))),
            ),
        ),
        # Body Part Examined and View Position: the gate's rules (diagnostics/screening/gate.py).
        Case(
            "missing-BodyPartExamined-with-anatomic-region",
            A,
            instances=(Instance(mutators=(delete("BodyPartExamined"),)),),
        ),
        Case(
            "empty-BodyPartExamined-with-study-description",
            A,
            instances=(
                Instance(
                    mutators=(
                        delete("AnatomicRegionSequence"),
                        empty("BodyPartExamined"),
                        put(StudyDescription="XR CHEST 1 VIEW"),
                    )
                ),
            ),
        ),
        Case(
            "missing-BodyPartExamined-nothing-says-chest",
            N,
            "Body Part Examined is missing from the header",
            instances=(Instance(mutators=(NO_BODY_PART_HINTS,)),),
        ),
        Case(
            "empty-BodyPartExamined-nothing-says-chest",
            N,
            "set Body Part Examined at the modality",
            instances=(Instance(mutators=(NO_BODY_PART_HINTS, empty("BodyPartExamined"))),),
        ),
        Case(
            "missing-ViewPosition-with-view-code",
            A,
            instances=(Instance(mutators=(delete("ViewPosition"),)),),
        ),
        Case(
            "empty-ViewPosition-nothing-says-pa",
            N,
            "View Position is missing from the header",
            instances=(Instance(mutators=(NO_VIEW_HINTS, empty("ViewPosition"))),),
        ),
        Case(
            "missing-ViewPosition-description-says-pa-and-lat",
            N,
            "set View Position at the modality",
            instances=(
                Instance(mutators=(NO_VIEW_HINTS, put(SeriesDescription="CHEST PA AND LAT"))),
            ),
        ),
        Case(
            "missing-ViewPosition-description-says-pa",
            A,
            instances=(Instance(mutators=(NO_VIEW_HINTS, put(SeriesDescription="CHEST PA"))),),
        ),
    ]
    for label, wording in (
        ("thorax", "THORAX"),
        ("chest-pa", "CHEST_PA"),
        ("lower-case", "chest"),
        ("uzbek-latin-apostrophe", "KO'KRAK QAFASI"),
    ):
        cases.append(
            Case(
                f"body-part-{label}",
                A,
                instances=(Instance(mutators=(put(BodyPartExamined=wording),)),),
            )
        )
    for label, wording, charset_name, codec in (
        ("russian-iso-ir-144", "ГРУДНАЯ КЛЕТКА", "ISO_IR 144", "iso8859_5"),
        ("russian-utf-8", "ГРУДЬ", "ISO_IR 192", "utf-8"),
        ("russian-abbreviation", "ОГК", "ISO_IR 192", "utf-8"),
        ("uzbek-latin-okina", "KO\u02bbKRAK", "ISO_IR 192", "utf-8"),
        ("uzbek-cyrillic", "КЎКРАК ҚАФАСИ", "ISO_IR 192", "utf-8"),
    ):
        cases.append(
            Case(
                f"body-part-{label}",
                A,
                instances=(
                    Instance(
                        mutators=(
                            put(SpecificCharacterSet=charset_name),
                            raw_text("BodyPartExamined", wording, codec),
                        )
                    ),
                ),
            )
        )
    cases += [
        Case(
            "body-part-knee",
            N,
            "Body Part Examined KNEE is outside",
            instances=(Instance(mutators=(put(BodyPartExamined="KNEE"),)),),
        ),
        Case(
            "body-part-russian-knee",
            N,
            "Body Part Examined КОЛЕНО is outside",
            instances=(
                Instance(
                    mutators=(
                        put(SpecificCharacterSet="ISO_IR 144"),
                        raw_text("BodyPartExamined", "КОЛЕНО", "iso8859_5"),
                    )
                ),
            ),
        ),
    ]
    for label, mutator in (
        ("iso-ir-144-cyrillic", charset("ISO_IR 144", "Иванов^Иван^Петрович")),
        (
            "iso-ir-192-cyrillic",
            charset("ISO_IR 192", "Смирнова^Анна", InstitutionName="Больница №1"),
        ),
        (
            "iso-ir-192-uzbek-latin",
            charset(
                "ISO_IR 192",
                "G\u02bbulomov^O\u02bbtkir",
                InstitutionName="Toshkent shahar kasalxonasi",
            ),
        ),
        ("iso-ir-192-uzbek-cyrillic", charset("ISO_IR 192", "Ғуломов^Ўткир")),
        ("iso-2022-ir-144-cyrillic", charset("\\ISO 2022 IR 144", "Кузнецов^Олег")),
        (
            "iso-2022-ir-144-uzbek",
            charset("\\ISO 2022 IR 144", "Ўринбоев^Ўткир", StudyDescription="Рентгенография ОГК"),
        ),
        ("iso-ir-100-uzbek-apostrophe", charset("ISO_IR 100", "G'ulomov^O'tkir")),
        (
            "iso-ir-192-russian-description",
            charset(
                "ISO_IR 192",
                "Петров^Пётр",
                StudyDescription="Рентгенография ОГК",
                SeriesDescription="Прямая проекция",
            ),
        ),
    ):
        cases.append(Case(f"charset-{label}", A, instances=(Instance(mutators=(mutator,)),)))
    cases += [
        Case(
            "pa-and-lateral-study",
            A,
            instances=(
                Instance(),
                Instance(
                    pixels=lateral,
                    mutators=(view("LL", LEFT_LATERAL),),
                    expect=N,
                    reason=OUTSIDE_VIEW,
                ),
            ),
        ),
        Case(
            "lateral-only-study",
            N,
            OUTSIDE_VIEW,
            instances=(Instance(pixels=lateral, mutators=(view("LL", LEFT_LATERAL),)),),
        ),
        Case(
            "multi-frame-dx",
            N,
            "multi-frame image (2 frames) is outside this model's scope",
            instances=(Instance(mutators=(frames(2),)),),
        ),
        Case(
            "ct-labelled-phantom",
            N,
            "CT is outside this model's scope",
            instances=(Instance(mutators=(put(Modality="CT"),)),),
        ),
        Case("smallest-in-scope-256", A, instances=(Instance(pixels=lambda: phantom(256, 256)),)),
        Case(
            "too-small-255",
            N,
            "smaller than the 256 x 256 this model needs",
            instances=(Instance(pixels=lambda: phantom(255, 300)),),
        ),
        Case(
            "tiny-64",
            N,
            "the image is 64 x 64 pixels",
            instances=(Instance(pixels=lambda: phantom(64, 64)),),
        ),
        Case(
            "very-large-4096",
            A,
            instances=(Instance(pixels=lambda: big_phantom(4096, 4096)),),
            big=True,
        ),
        Case(
            "very-large-4320x4800-jpeg-ls",
            A,
            instances=(Instance(pixels=lambda: big_phantom(4800, 4320)),),
            big=True,
            syntax=JPEGLSLossless,
        ),
    ]
    cases += _real_cases()
    return cases


REAL_AS_IS = (
    ("CT_small.dcm", "CT is outside"),
    ("MR_small.dcm", "MR is outside"),
    ("693_J2KI.dcm", "CT is outside"),
    ("JPEG2000.dcm", "NM is outside"),
    ("image_dfl.dcm", "OT is outside"),
    ("SC_rgb_jpeg_dcmd.dcm", "OT is outside"),
    ("examples_rgb_color.dcm", "US is outside"),
    ("examples_overlay.dcm", "MR is outside"),
)
"""pydicom's real images with their own headers (new UIDs): other modalities, refused by name."""

REAL_AS_CHEST = (
    ("693_J2KI.dcm", LOOKS_UNLIKE),
    ("examples_overlay.dcm", LOOKS_UNLIKE),
    ("JPEG2000.dcm", LOOKS_UNLIKE),
    ("image_dfl.dcm", LOOKS_UNLIKE),
    ("examples_jpeg2k.dcm", LOOKS_UNLIKE),
    ("SC_rgb_jpeg_dcmd.dcm", LOOKS_UNLIKE),
    ("examples_palette.dcm", LOOKS_UNLIKE),
    ("CT_small.dcm", "the image is 128 x 128 pixels"),
    ("MR_small.dcm", "the image is 64 x 64 pixels"),
)
"""The same real pixels wrapped in an ordinary DX chest PA header, as a user's real radiograph
would arrive: the header says chest, and the appearance check must tell that it is not one."""


def _real_cases() -> list[Case]:
    cases = [
        Case(f"real-{Path(name).stem}", N, reason, instances=(Instance(source=name),))
        for name, reason in REAL_AS_IS
    ]
    cases += [
        Case(
            f"real-as-chest-{Path(name).stem}",
            N,
            reason,
            instances=(Instance(pixels=real_pixels(name)),),
        )
        for name, reason in REAL_AS_CHEST
    ]
    return cases


CASES: list[Case] = _cases()
BY_NAME = {case.name: case for case in CASES}
assert len(BY_NAME) == len(CASES), "case names must be unique"


# -- writing -----------------------------------------------------------------------------------

PATIENT = Patient("RW-0001", "REALWORLD^PHANTOM", date(1961, 5, 17), "F")


def _uid(variant: str, *parts: object) -> str:
    return str(generate_uid(entropy_srcs=["realworld", variant, *map(str, parts)]))


def _from_testdata(name: str, study: str, series: str, sop: str) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file(name))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop)
    ds.PatientID = ds.get("PatientID") or "RW-REAL"
    return ds


def _phantom_dataset(
    case: Case, item: Instance, study: str, series: str, sop: str, number: int
) -> Dataset:
    pixels = item.pixels() if item.pixels is not None else phantom(view=item.view)
    photometric = "MONOCHROME1" if "mono1" in case.name else "MONOCHROME2"
    acquisition = Acquisition(
        study_instance_uid=study,
        series_instance_uid=series,
        sop_instance_uid=sop,
        accession_number=f"RW{zlib.crc32(case.name.encode()) % 10**8:08d}",
        study_id="1",
        acquired_at=datetime(2025, 3, 4, 9, 30),
        view=item.view,
        spacing_mm=FIELD_OF_VIEW_MM / max(pixels.shape),
        photometric=photometric,
    )
    ds = build_dx(pixels, PATIENT, acquisition)
    ds.InstanceNumber = number
    for mutator in item.mutators:
        mutator(ds)
    if case.syntax != ExplicitVRLittleEndian:
        plugin = {JPEG2000Lossless: "pylibjpeg", JPEGLSLossless: "pyjpegls"}.get(case.syntax, "")
        if case.syntax == ImplicitVRLittleEndian:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        else:
            ds.compress(case.syntax, encoding_plugin=plugin, generate_instance_uid=False)
    return ds


def write_case(case: Case, folder: Path, variant: str) -> Built:
    """Write one case's files under `folder/<case name>/` with UIDs of its own for `variant`."""
    study = _uid(variant, case.name, "study")
    built = Built(case, study)
    target = folder / case.name
    target.mkdir(parents=True, exist_ok=True)
    for number, item in enumerate(case.instances, start=1):
        series = _uid(variant, case.name, "series", number)
        sop = _uid(variant, case.name, "instance", number)
        if item.source is not None:
            ds = _from_testdata(item.source, study, series, sop)
        else:
            ds = _phantom_dataset(case, item, study, series, sop, number)
        path = target / f"IM-{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        built.files.append(path)
        built.sop_uids.append(sop)
    return built


def write_corpus(folder: Path, variant: str, cases: list[Case] | None = None) -> list[Built]:
    return [write_case(case, folder, variant) for case in (CASES if cases is None else cases)]


def instance_expectations(built: Built) -> dict[str, tuple[str, str]]:
    """(status, reason words) per SOP Instance UID of an analysed study."""
    out = {}
    for sop, item in zip(built.sop_uids, built.case.instances, strict=True):
        status = item.expect or built.case.expect
        out[sop] = (status, item.reason or "")
    return out


def replace_case(case: Case, **changes: object) -> Case:
    return dataclasses.replace(case, **changes)  # type: ignore[arg-type]
