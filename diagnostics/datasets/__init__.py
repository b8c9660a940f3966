"""Research dataset layouts (NIH, RSNA, CheXpert, COVID collections, synth) as `Example`s.

    from diagnostics.datasets import load_dataset
    examples = load_dataset("nih", "/data/chestxray14", ["nodule", "cardiomegaly"], split="test")

Each layout's module documents its files, its mapping to our coded findings, its view filter,
its split and its intensity convention. Every layout yields `records.Example`s; the project's own
layout, the labelled folder that `diagnostics synth` and `feedback export` write, has its contract
(columns, reader, writer) in `labelled`.
"""

from diagnostics.datasets.common import SPLITS, Split
from diagnostics.datasets.registry import (
    LAYOUTS,
    Layout,
    OptionValue,
    check_options,
    get_layout,
    load_dataset,
    parse_option,
)

__all__ = [
    "LAYOUTS",
    "SPLITS",
    "Layout",
    "OptionValue",
    "Split",
    "check_options",
    "get_layout",
    "load_dataset",
    "parse_option",
]
