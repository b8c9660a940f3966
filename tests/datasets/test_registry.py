"""The layout registry and `load_dataset`: names, options and codes are checked before reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.datasets import LAYOUTS, get_layout, load_dataset, parse_option
from diagnostics.datasets.labelled import FINDING_CODES, load_labelled_folder
from diagnostics.errors import ConfigurationError, DatasetError
from diagnostics.findings import KNOWN_FINDINGS
from diagnostics.synth.study import SynthConfig, generate


def test_every_layout_is_registered_with_coded_findings() -> None:
    assert set(LAYOUTS) == {"synth", "labelled", "nih", "rsna", "chexpert", "covid", "covidx"}
    for layout in LAYOUTS.values():
        assert layout.codes and set(layout.codes) <= set(KNOWN_FINDINGS)
        assert "split" in layout.options and layout.mapping


def test_new_findings_carry_verified_snomed_codes() -> None:
    expected = {
        "pneumonia": "233604007",
        "effusion": "60046008",
        "atelectasis": "46621007",
        "pneumothorax": "36118008",
        "covid19": "840539006",
    }
    assert {code: KNOWN_FINDINGS[code].snomed for code in expected} == expected
    assert all(len(f.snomed_meaning) <= 64 for f in KNOWN_FINDINGS.values())  # DICOM LO


def test_synth_layout_is_the_labelled_folder(tmp_path: Path) -> None:
    generate(tmp_path, 4, seed=5, config=SynthConfig(rows=64, columns=64, spacing_mm=4.0))
    codes = list(FINDING_CODES)
    direct = load_labelled_folder(tmp_path, codes)
    for split in ("all", "train", "test"):  # a synth folder is a split already
        assert load_dataset("synth", tmp_path, codes, split=split) == direct


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda root: load_dataset("mimic", root, ["nodule"]), "unknown dataset layout 'mimic'"),
        (
            lambda root: load_dataset("nih", root, ["nodule"], uncertain="ones"),
            "layout 'nih' has no option.*uncertain",
        ),
        (lambda root: load_dataset("nih", root, ["covid19"]), "nih layout does not label covid19"),
        (
            lambda root: load_dataset("nih", root, ["nodule"], split="val"),
            "option split must be one of",
        ),
        (lambda root: load_dataset("nih", root, []), "no finding codes"),
        (lambda root: load_dataset("nih", root, ["nodule", "nodule"]), "repeat"),
        (
            lambda root: load_dataset("rsna", root, ["pneumonia"], test_fraction=1.5),
            "test_fraction must be a number in",
        ),
        (
            lambda root: load_dataset("nih", root, ["nodule"], missing="ignore"),
            "option missing must be one of",
        ),
    ],
)
def test_configuration_mistakes_are_named(tmp_path: Path, call: object, message: str) -> None:
    (tmp_path / "stage_2_train_labels.csv").write_text("patientId,x,y,width,height,Target\n")
    with pytest.raises(ConfigurationError, match=message):
        call(tmp_path)  # type: ignore[operator]


def test_missing_root_and_empty_result_are_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        load_dataset("nih", tmp_path / "absent", ["nodule"])
    (tmp_path / "stage_2_train_labels.csv").write_text("patientId,x,y,width,height,Target\n")
    with pytest.raises(DatasetError, match="no usable rsna examples"):
        load_dataset("rsna", tmp_path, ["pneumonia"])


def test_parse_option_types() -> None:
    assert parse_option("uncertain=zeros") == ("uncertain", "zeros")
    assert parse_option("boxes=false") == ("boxes", False)
    assert parse_option("test_fraction=0.3") == ("test_fraction", 0.3)
    assert parse_option(" seed = 4") == ("seed", 4)
    with pytest.raises(ConfigurationError, match="KEY=VALUE"):
        parse_option("uncertain")
    assert get_layout("chexpert").name == "chexpert"
