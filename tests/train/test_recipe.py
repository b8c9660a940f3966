"""Training recipes: a valid one loads as written; each mistake is refused naming its field.

A recipe error found after an hour of data generation is an hour lost, so every check here is
one that `load_recipe` must make before any work starts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.errors import ConfigurationError
from diagnostics.preprocess import PreprocessSpec
from diagnostics.train.recipe import Recipe, load_recipe

REPO = Path(__file__).resolve().parents[2]

VALID = """\
name = "cxr-test"
version = "2.1.0"
model = "compact"
findings = ["nodule", "cardiomegaly"]
seed = 5
package = "out/cxr-test"
limitations = ["synthetic only"]

[data]
train = "data/train"
test = "/abs/test"
validation_fraction = 0.2

[data.synth]
train_studies = 40
train_seed = 1
rows = 128
columns = 96
spacing_mm = 3.0

[preprocessing]
size = [64, 48]
channels = 3
intensity = "window"

[training]
epochs = 3
batch_size = 8
learning_rate = 0.01

[calibration]
method = "platt"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def _edited(old: str, new: str) -> str:
    """VALID with exactly one line changed, so each failure has a single cause."""
    assert VALID.count(old) == 1, old
    return VALID.replace(old, new)


def test_valid_recipe_loads_with_its_values_and_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, VALID))
    assert (recipe.name, recipe.version, recipe.model, recipe.seed) == (
        "cxr-test",
        "2.1.0",
        "compact",
        5,
    )
    assert recipe.findings == ("nodule", "cardiomegaly")
    assert recipe.limitations == ("synthetic only",)
    assert recipe.data.validation_fraction == 0.2
    assert recipe.data.synth is not None
    assert (recipe.data.synth.train_studies, recipe.data.synth.test_studies) == (40, 0)
    assert (recipe.data.synth.rows, recipe.data.synth.columns) == (128, 96)
    assert recipe.preprocessing == PreprocessSpec(size=(64, 48), channels=3, intensity="window")
    assert (recipe.training.epochs, recipe.training.batch_size) == (3, 8)
    assert recipe.training.learning_rate == 0.01
    assert recipe.training.patience == 5  # default
    assert recipe.calibration.method == "platt"
    assert recipe.calibration.target_sensitivity == 0.9  # default
    assert recipe.scope is None  # default: derived from the training data


def test_relative_paths_are_anchored_to_base_and_absolute_ones_kept(tmp_path: Path) -> None:
    base = tmp_path / "project"
    recipe = load_recipe(_write(tmp_path, VALID), base=base)
    assert recipe.data.train == base / "data" / "train"
    assert recipe.data.test == Path("/abs/test")
    assert recipe.package == base / "out" / "cxr-test"


def test_without_base_paths_stay_as_written(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, VALID))
    assert recipe.data.train == Path("data/train")
    assert recipe.package == Path("out/cxr-test")


def test_anchoring_keeps_a_missing_test_folder_missing(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, _edited('test = "/abs/test"\n', "")), base=tmp_path)
    assert recipe.data.test is None
    assert recipe.data.train == tmp_path / "data" / "train"


def test_anchored_recipe_is_still_a_valid_recipe(tmp_path: Path) -> None:
    recipe = load_recipe(_write(tmp_path, VALID), base=tmp_path)
    assert Recipe.model_validate(recipe.model_dump()) == recipe


@pytest.mark.parametrize("name", ["cxr-demo.toml", "quick.toml"])
def test_the_shipped_recipes_are_valid(name: str) -> None:
    recipe = load_recipe(REPO / "training" / name, base=REPO)
    assert recipe.package.is_absolute()
    assert recipe.data.train.is_relative_to(REPO)


@pytest.mark.parametrize(
    ("old", "new", "field", "detail"),
    [
        ('model = "compact"', 'model = "vgg16"', "model", "vgg16"),
        ('"nodule", "cardiomegaly"', '"nodule", "fracture"', "findings", "fracture"),
        ('"nodule", "cardiomegaly"', '"nodule", "nodule"', "findings", "repeat"),
        ('findings = ["nodule", "cardiomegaly"]', "findings = []", "findings", ""),
        ('version = "2.1.0"', 'version = "2.1"', "version", ""),
        ('version = "2.1.0"', 'version = "v2.1.0"', "version", ""),
        ('name = "cxr-test"', 'name = "CXR test"', "name", ""),
        ("seed = 5", "seed = 5\nlearning_rate = 0.1", "learning_rate", "not permitted"),
        ("epochs = 3", "epochs = 0", "training.epochs", ""),
        ("batch_size = 8", "batch_size = 8\nbatchsize = 8", "training.batchsize", ""),
        ("validation_fraction = 0.2", "validation_fraction = 1.0", "data.validation_fraction", ""),
        ("train_studies = 40", "train_studies = 2", "data.synth.train_studies", ""),
        ("size = [64, 48]", "size = [16, 48]", "preprocessing", "size"),
        ('method = "platt"', 'method = "isotonic"', "calibration.method", ""),
        ('package = "out/cxr-test"\n', "", "package", "required"),
    ],
)
def test_each_mistake_is_refused_naming_its_field(
    tmp_path: Path, old: str, new: str, field: str, detail: str
) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        load_recipe(_write(tmp_path, _edited(old, new)))
    message = str(excinfo.value)
    assert message.startswith(f"{tmp_path / 'recipe.toml'}: {field}")
    assert detail in message


def test_bad_toml_syntax_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a readable TOML recipe"):
        load_recipe(_write(tmp_path, _edited("seed = 5", "seed = = 5")))


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such recipe"):
        load_recipe(tmp_path / "absent.toml")


def test_a_directory_is_not_a_recipe(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not a readable TOML recipe"):
        load_recipe(tmp_path)


def test_a_binary_file_is_not_a_recipe(tmp_path: Path) -> None:
    path = tmp_path / "recipe.toml"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigurationError, match="not a readable TOML recipe"):
        load_recipe(path)
