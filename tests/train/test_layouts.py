"""Training on a research layout: recipes name it, and unknown labels are skipped end to end.

CheXpert's uncertain labels under the `ignore` policy reach training as UNKNOWN_LABEL (-1). If
any stage treated -1 as a class (or as 0), the model would learn from labels nobody gave; so the
loss, validation AUROC, calibration and metrics are each checked to leave them out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diagnostics.datasets import load_dataset
from diagnostics.datasets.records import UNKNOWN_LABEL
from diagnostics.errors import ConfigurationError
from diagnostics.package import load_package
from diagnostics.preprocess import PreprocessSpec
from diagnostics.train.data import split_by_patient
from diagnostics.train.loop import classification_loss, mean_auroc
from diagnostics.train.metrics import auroc
from diagnostics.train.pipeline import run_recipe
from diagnostics.train.recipe import DataConfig, Recipe, TrainingConfig, load_recipe
from tests.datasets.fixtures import CHEXPERT_HEADER, chest, chexpert_row, write_image, write_rows

ROOT = Path(__file__).resolve().parents[2]


def test_existing_recipes_default_to_the_synth_layout() -> None:
    recipe = load_recipe(ROOT / "training" / "cxr-demo.toml")
    assert recipe.data.layout == "synth" and recipe.data.options == {}


RECIPE = """
name = "x"
version = "0.0.1"
model = "compact"
findings = ["cardiomegaly"]
package = "pkg"
[data]
train = "d"
test = "d"
layout = "{layout}"
{extra}
"""


@pytest.mark.parametrize(
    ("layout", "extra", "message"),
    [
        ("mimic", "", "data: .*unknown dataset layout 'mimic'"),
        ("chexpert", "[data.options]\nuncertain = 'zeros'\nsplit = 'all'", "options.split"),
        ("chexpert", "[data.options]\nuncertan = 'zeros'", "has no option.*uncertan"),
        ("nih", "[data.synth]\ntrain_studies = 10\ntrain_seed = 1", "generates synth data"),
        ("covid", "", "covid layout does not label cardiomegaly"),
    ],
)
def test_recipe_layout_mistakes_are_refused(
    tmp_path: Path, layout: str, extra: str, message: str
) -> None:
    (tmp_path / "r.toml").write_text(RECIPE.format(layout=layout, extra=extra))
    with pytest.raises(ConfigurationError, match=message):
        load_recipe(tmp_path / "r.toml")


def test_recipe_accepts_a_layout_with_options(tmp_path: Path) -> None:
    extra = "[data.options]\nuncertain = 'zeros'\nmissing = 'skip'"
    (tmp_path / "r.toml").write_text(RECIPE.format(layout="chexpert", extra=extra))
    data = load_recipe(tmp_path / "r.toml").data
    assert data.layout == "chexpert" and data.options == {"uncertain": "zeros", "missing": "skip"}


# ---- unknown labels in the loss and in model selection ----------------------------------------


def test_loss_with_all_labels_known_is_the_plain_mean() -> None:
    logits, targets = torch.randn(6, 3), torch.randint(0, 2, (6, 3)).float()
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert torch.equal(classification_loss(logits, targets), plain)


def test_unknown_labels_add_nothing_to_the_loss_or_its_gradient() -> None:
    logits = torch.randn(4, 2, requires_grad=True)
    targets = torch.tensor([[1.0, -1.0], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
    loss = classification_loss(logits, targets)
    known = targets >= 0
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[known], targets[known])
    assert torch.allclose(loss, expected)
    loss.backward()  # type: ignore[no-untyped-call]
    assert logits.grad is not None
    assert torch.all(logits.grad[~known] == 0) and torch.all(logits.grad[known] != 0)


def test_validation_auroc_leaves_unknown_labels_out() -> None:
    labels = np.array([[1, 1], [0, UNKNOWN_LABEL], [1, 0], [0, UNKNOWN_LABEL], [0, 1]], float)
    logits = np.array([[0.9, 0.8], [0.1, 5.0], [0.7, 0.2], [0.3, -5.0], [0.2, 0.9]])
    mean, per_finding = mean_auroc(labels, logits)
    assert per_finding[0] == auroc(labels[:, 0], logits[:, 0]) == 1.0
    assert per_finding[1] == 1.0  # the unknown rows would have made it 0.5 or worse
    assert mean == 1.0


# ---- CheXpert with uncertain = ignore, recipe to package -----------------------------------


def write_chexpert(root: Path, name: str, folder: str, patients: range, uncertain: bool) -> None:
    """Per patient: one study per class of each finding, and (train) one with effusion -1."""
    rows = []
    for p in patients:
        studies = [("1.0", "0.0"), ("0.0", "1.0")] + ([("1.0", "-1.0")] if uncertain else [])
        for s, (cardio, effusion) in enumerate(studies, start=1):
            path = f"CheXpert-v1.0-small/{folder}/patient{p:05d}/study{s}/view1_frontal.jpg"
            rows.append(chexpert_row(path, Cardiomegaly=cardio, Pleural_Effusion=effusion))
            image = chest(p * 10 + s, positive=cardio == "1.0")
            write_image(
                root / folder / f"patient{p:05d}" / f"study{s}" / "view1_frontal.jpg", image
            )
    write_rows(root / name, CHEXPERT_HEADER, rows)


@pytest.mark.slow
def test_chexpert_ignore_trains_calibrates_and_evaluates_on_known_labels(tmp_path: Path) -> None:
    root = tmp_path / "CheXpert-v1.0-small"
    write_chexpert(root, "train.csv", "train", range(1, 15), uncertain=True)
    write_chexpert(root, "valid.csv", "valid", range(60001, 60005), uncertain=False)
    codes = ("cardiomegaly", "effusion")
    recipe = Recipe(
        name="chexpert-tiny",
        version="0.0.1",
        model="compact",
        findings=codes,
        seed=2,
        data=DataConfig(
            train=root,
            test=root,
            layout="chexpert",
            validation_fraction=0.3,
            options={"uncertain": "ignore"},
        ),
        preprocessing=PreprocessSpec(size=(32, 32)),
        training=TrainingConfig(epochs=1, batch_size=16),
        package=tmp_path / "package",
    )
    run = run_recipe(recipe, tmp_path / "work", allow_weak=True)  # a few studies: weak
    manifest = load_package(tmp_path / "package").manifest
    train_examples = load_dataset("chexpert", root, codes, split="train", uncertain="ignore")
    _, validation = split_by_patient(train_examples, 0.3, seed=2)
    known_effusion = sum(e.labels[1] != UNKNOWN_LABEL for e in validation)
    assert known_effusion < len(validation)  # the split does hold unknown labels
    effusion = run.metrics["validation"]["effusion"]
    assert effusion["n_positive"] + effusion["n_negative"] == known_effusion
    cardio = run.metrics["validation"]["cardiomegaly"]
    assert cardio["n_positive"] + cardio["n_negative"] == len(validation)
    assert manifest.training.test is not None and manifest.training.test.studies == 8
    assert manifest.training.train.positives["effusion"] == sum(
        e.labels[1] == 1 for e in train_examples if e not in validation
    )
    assert "chexpert layout" in manifest.training.train.description
    assert set(manifest.calibration) == set(codes)
