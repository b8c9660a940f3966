"""Tiny files in the public layouts' formats, written by the tests themselves (no downloads).

Headers are copied from the real releases (NIH, RSNA, CheXpert, ieee8023, COVIDx), including
their quirks: NIH's bracketed column names that span several CSV fields and trailing commas,
CheXpert paths that start with the dataset's own folder name, RSNA's one row per box.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SIZE = 64
NIH_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
NIH_BOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
CHEXPERT_HEADER = (
    "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
    "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
    "Pleural Effusion,Pleural Other,Fracture,Support Devices"
)
COVID_HEADER = (
    "patientid,offset,sex,age,finding,RT_PCR_positive,survival,intubated,intubation_present,"
    "went_icu,in_icu,needed_supplemental_O2,extubated,temperature,pO2_saturation,"
    "leukocyte_count,neutrophil_count,lymphocyte_count,view,modality,date,location,folder,"
    "filename,doi,url,license,clinical_notes,other_notes"
)
CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"


def chest(seed: int, positive: bool = False, size: int = SIZE) -> np.ndarray:
    """An 8-bit greyscale 'radiograph': noise, and a bright disc when the finding is present."""
    rng = np.random.default_rng(seed)
    pixels = rng.normal(90.0, 12.0, (size, size))
    if positive:
        yy, xx = np.mgrid[:size, :size]
        pixels[(yy - size / 2) ** 2 + (xx - size / 3) ** 2 < (size / 6) ** 2] += 110.0
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_image(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    """PNG or JPEG by suffix (the suffix is only for people: readers look at the content)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels) if mode is None else Image.fromarray(pixels, mode)
    image.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG")
    return path


def write_dicom(path: Path, patient_id: str, pixels: np.ndarray, view: str = "PA") -> Path:
    """An RSNA-like DICOM: CR chest radiograph, 8-bit MONOCHROME2, named <patientId>.dcm."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.Modality = "CR"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_rows(path: Path, header: str, rows: Sequence[Sequence[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        handle.write(header + "\n")
        writer = csv.writer(handle, lineterminator="\n")
        for row in rows:
            writer.writerow(row)
    return path


def nih_row(name: str, labels: str, patient: int | str, view: str = "PA") -> list[object]:
    """One Data_Entry_2017.csv row, with the trailing empty field the real file has."""
    return [name, labels, 0, patient, 58, "M", view, SIZE, SIZE, 0.143, 0.143, ""]


def write_nih(
    root: Path,
    entries: Sequence[tuple[str, str, int | str, str]],
    *,
    boxes: Sequence[Sequence[object]] = (),
    test: Sequence[str] = (),
    images: bool = True,
) -> Path:
    """An NIH folder: entries are (image name, Finding Labels, patient, view)."""
    write_rows(root / "Data_Entry_2017.csv", NIH_HEADER, [nih_row(*e) for e in entries])
    for n, (name, labels, _, _) in enumerate(entries):
        if images:
            folder = root / ("images_001" if n % 2 else "images_002") / "images"
            write_image(folder / name, chest(n, "Nodule" in labels or "Cardiomegaly" in labels))
    names = [e[0] for e in entries]
    (root / "test_list.txt").write_text("".join(f"{n}\n" for n in names if n in test))
    (root / "train_val_list.txt").write_text("".join(f"{n}\n" for n in names if n not in test))
    if boxes:
        write_rows(root / "BBox_List_2017.csv", NIH_BOX_HEADER, [[*b, "", "", ""] for b in boxes])
    return root


def chexpert_row(path: str, view: str = "Frontal", **labels: str) -> list[str]:
    """One train.csv row; labels by column name with spaces as underscores, blank otherwise."""
    columns = CHEXPERT_HEADER.split(",")
    row = {c: "" for c in columns}
    row.update(Path=path, Sex="Female", Age="68")
    row["Frontal/Lateral"] = view
    row["AP/PA"] = "AP" if view == "Frontal" else ""
    for name, value in labels.items():
        row[name.replace("_", " ")] = value
    return [row[c] for c in columns]
