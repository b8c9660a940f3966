"""The project's own layout: a labelled folder of DICOM studies and `labels.csv`.

The contract (columns, values, locations) is `diagnostics.datasets.labelled`'s; `diagnostics
synth` and `diagnostics feedback export` write it. The layout labels the findings synth draws
(nodule, consolidation, cardiomegaly); the mapping is the identity. Every study is frontal (PA or
AP). Synthetic data are generated as separate train and test folders, so a folder is a split:
`split` selects the whole folder whatever its value, and the validation set is split off by
patient during training. Any catalogue finding with a column in labels.csv can be read.

The `labelled` layout (`load_labelled`) is the same contract read for a hospital's own data:
any folder structure, rows keyed by Study Instance UID or accession number, unknown labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from diagnostics.datasets.common import Split
from diagnostics.datasets.labelled import FINDING_CODES, load_hospital_folder, load_labelled_folder
from diagnostics.datasets.records import Example

LAYOUT = "synth"
MAPPING = {code: code for code in FINDING_CODES}


def load_synth(root: Path, codes: Sequence[str], *, split: Split = "all") -> list[Example]:
    """The labelled folder at `root` (all of it: see the module docstring about `split`)."""
    del split  # the folder is the split
    return load_labelled_folder(root, codes)


def load_labelled(root: Path, codes: Sequence[str], *, split: Split = "all") -> list[Example]:
    """The `labelled` layout: a hospital's folder at `root`, read tolerantly (unknown labels,
    unmatched rows and studies left out with a warning); the folder is the split, as for synth."""
    del split  # the folder is the split
    return load_hospital_folder(root, codes)
