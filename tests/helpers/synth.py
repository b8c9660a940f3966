"""The repository's bundled model and synthetic studies made to its field of view."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from diagnostics.synth import SynthConfig, generate
from diagnostics.synth.study import StudyTruth

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "models" / "cxr-demo"
FIELD_OF_VIEW_MM = 409.6
"""The bundled model's training images: 512 pixels of 0.8 mm."""


class SynthStudies(NamedTuple):
    """A folder written by the synth generator and the truth of each study in it."""

    folder: Path
    truths: list[StudyTruth]

    @property
    def files(self) -> list[Path]:
        """Each study's first image, in the order of `truths`."""
        return [self.folder / t.file for t in self.truths]


def make_synth_studies(
    folder: Path, count: int, seed: int, size: int, workers: int = 1, **config: Any
) -> SynthStudies:
    """`count` studies of `size` x `size` pixels over the training field of view; `config`
    sets further `SynthConfig` fields."""
    settings = SynthConfig(rows=size, columns=size, spacing_mm=FIELD_OF_VIEW_MM / size, **config)
    return SynthStudies(folder, generate(folder, count, seed, settings, workers=workers))


SynthFactory = Callable[..., SynthStudies]
"""The root conftest's `synth_factory` fixture: `(name, count, seed, size, workers=1,
**config)`, written to a fresh temporary folder named after `name`; see `make_synth_studies`."""
