"""The registry of dataset layouts and `load_dataset`, the one entry that reads any of them.

Each layout maps its own finding names to our coded findings (see its module), keeps frontal
views where the layout records the view, and splits by patient where it has patients. Option
names and values are checked here and in the loaders before any file is read, so a typo in a
recipe fails in a second, not after an hour of preprocessing.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from diagnostics.datasets import chexpert, covid, nih, rsna, synth
from diagnostics.datasets.common import SPLITS, Split, choice
from diagnostics.datasets.records import UNKNOWN_LABEL, Example
from diagnostics.errors import ConfigurationError, DatasetError
from diagnostics.findings import KNOWN_FINDINGS

OptionValue = str | int | float | bool
Loader = Callable[..., list[Example]]


@dataclass(frozen=True)
class Layout:
    """A dataset layout: what it labels, how its names map to our codes, how to load it."""

    name: str
    summary: str
    codes: tuple[str, ...]
    """Our finding codes this layout can label (some only under an option, e.g. rsna)."""
    mapping: Mapping[str, str]
    """The layout's own finding names -> our codes: the documented mapping table."""
    loader: Loader
    any_finding: bool = False
    """Labels any catalogue finding its files have a column for (the labelled folders); `codes`
    are then the ones its writers write."""

    def labels(self, code: str) -> bool:
        """Whether this layout can label `code` (a labelled folder: when it has the column)."""
        return self.any_finding or code in self.codes

    @property
    def options(self) -> tuple[str, ...]:
        """Keyword options the loader accepts (`split` among them)."""
        parameters = inspect.signature(self.loader).parameters.values()
        return tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            "synth",
            "DICOM studies and labels.csv, as `diagnostics synth` writes them",
            tuple(synth.MAPPING.values()),
            synth.MAPPING,
            synth.load_synth,
            any_finding=True,
        ),
        Layout(
            "labelled",
            "a hospital's DICOM tree in any structure and labels.csv keyed by "
            "study_instance_uid or accession_number (or a research export)",
            tuple(synth.MAPPING.values()),
            synth.MAPPING,
            synth.load_labelled,
            any_finding=True,
        ),
        Layout(
            "nih",
            "NIH ChestX-ray14: PNGs, Data_Entry_2017.csv, official lists, BBox_List_2017.csv",
            tuple(dict.fromkeys(nih.MAPPING.values())),
            nih.MAPPING,
            nih.load_nih,
        ),
        Layout(
            "rsna",
            "RSNA Pneumonia Detection: DICOMs, stage_2_train_labels.csv with boxes",
            rsna.OPACITY_FINDINGS,
            rsna.MAPPING,
            rsna.load_rsna,
        ),
        Layout(
            "chexpert",
            "CheXpert: JPEGs, train.csv and valid.csv with 1/0/-1/blank labels",
            tuple(chexpert.MAPPING.values()),
            chexpert.MAPPING,
            chexpert.load_chexpert,
        ),
        Layout(
            "covid",
            "ieee8023 covid-chestxray-dataset: metadata.csv, one row per image",
            covid.CODES,
            {**covid.TERMS, covid.NO_FINDING: "negative"},
            covid.load_covid,
        ),
        Layout(
            "covidx",
            "COVIDx: train.txt / test.txt lists of 'patientid filename label source'",
            covid.CODES,
            {
                label: ", ".join(f"{c}={v}" for c, v in values.items())
                for label, values in covid.COVIDX_LABELS.items()
            },
            covid.load_covidx,
        ),
    )
}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown dataset layout {name!r}; available: {', '.join(LAYOUTS)}"
        ) from None


def check_options(layout: str, options: Mapping[str, object]) -> None:
    """Refuse option names the layout does not know (values are checked by the loader)."""
    allowed = get_layout(layout).options
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigurationError(
            f"layout {layout!r} has no option(s) {', '.join(unknown)}; its options: "
            f"{', '.join(allowed)}"
        )


def _check_codes(layout: Layout, codes: Sequence[str]) -> None:
    if not codes:
        raise ConfigurationError("no finding codes to load")
    if len(set(codes)) != len(codes):
        raise ConfigurationError(f"finding codes repeat: {', '.join(codes)}")
    unknown = [code for code in codes if not layout.any_finding and code not in KNOWN_FINDINGS]
    if unknown:
        raise ConfigurationError(f"unknown finding code(s) {', '.join(unknown)}")
    unlabelled = [code for code in codes if not layout.labels(code)]
    if unlabelled:
        raise ConfigurationError(
            f"the {layout.name} layout does not label {', '.join(unlabelled)}; it labels "
            f"{', '.join(layout.codes)}"
        )


def load_dataset(
    layout: str, root: str | Path, codes: Sequence[str], **options: object
) -> list[Example]:
    """Examples (labels in the order of `codes`) from the dataset at `root` in `layout`.

    `split` ("all", "train" or "test") selects the layout's official split, or a patient-hash
    split where it has none; the other options are the layout's (see `LAYOUTS[name].options`).
    Labels are 0, 1 or `UNKNOWN_LABEL` (-1, e.g. CheXpert uncertain under `ignore`).
    """
    spec = get_layout(layout)
    _check_codes(spec, codes)
    check_options(layout, options)
    chosen = choice("split", options.get("split", "all"), SPLITS)
    split: Split = next(s for s in SPLITS if s == chosen)
    folder = Path(root)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder (the {layout} dataset root)")
    rest = {name: value for name, value in options.items() if name != "split"}
    examples = spec.loader(folder, list(codes), split=split, **rest)
    if not examples:
        raise DatasetError(
            f"{folder}: no usable {layout} examples in split {split!r} (after keeping frontal "
            "views with labels and images)"
        )
    for k, code in enumerate(codes):
        if all(example.labels[k] == UNKNOWN_LABEL for example in examples):
            raise DatasetError(f"{folder}: no {layout} example has a known label for {code}")
    return examples


def parse_option(text: str) -> tuple[str, OptionValue]:
    """`key=value` from the command line: true/false, numbers, otherwise the text itself."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigurationError(f"--option takes KEY=VALUE, not {text!r}")
    value = value.strip()
    parsed: OptionValue = value
    if value.lower() in ("true", "false"):
        parsed = value.lower() == "true"
    else:
        try:
            parsed = int(value)
        except ValueError:
            try:
                parsed = float(value)
            except ValueError:
                parsed = value
    return key.strip(), parsed
