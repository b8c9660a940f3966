"""The appearance profile: training-like images score below 1, others above."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from diagnostics.appearance import STD_FLOOR, AppearanceProfile, fit_profile, thumbnails


def _chest_like(rng: np.random.Generator, n: int) -> list[torch.Tensor]:
    """Two dark lung fields in a brighter body, with jitter: a layout, not a chest."""
    yy, xx = np.mgrid[:64, :64] / 64.0
    images = []
    for _ in range(n):
        dx, dy = rng.normal(0, 0.01, 2)
        body = 0.7 - 0.5 * ((np.abs(xx - 0.3 - dx) < 0.12) | (np.abs(xx - 0.7 - dx) < 0.12)) * (
            np.abs(yy - 0.45 - dy) < 0.3
        )
        images.append(
            torch.tensor(body + rng.normal(0, 0.03, body.shape), dtype=torch.float32)[None]
        )
    return images


def test_profile_accepts_alike_and_refuses_unlike() -> None:
    rng = np.random.default_rng(0)
    profile = fit_profile(
        _chest_like(rng, 60), _chest_like(rng, 30), fitted_on="a", threshold_chosen_on="b"
    )
    fresh = torch.stack(_chest_like(rng, 50))
    assert (profile.score(fresh) < 1.0).mean() >= 0.98
    assert (profile.score(fresh.flip(2)) > 1.0).all()  # upside down
    assert (profile.score(1.0 - fresh) > 1.0).all()  # inverted grey scale
    assert (profile.score(torch.full_like(fresh, 0.5)) > 1.0).all()  # blank


def test_profile_round_trips_and_validates() -> None:
    rng = np.random.default_rng(1)
    profile = fit_profile(
        _chest_like(rng, 8), _chest_like(rng, 8), fitted_on="a", threshold_chosen_on="b"
    )
    again = AppearanceProfile.model_validate_json(profile.model_dump_json())
    assert again == profile
    with pytest.raises(ValidationError, match="grid\\*grid"):
        AppearanceProfile(**{**profile.model_dump(), "mean": [0.0]})
    with pytest.raises(ValidationError, match="std at least"):
        AppearanceProfile(**{**profile.model_dump(), "std": [STD_FLOOR / 2] * len(profile.std)})


def test_thumbnails_average_channels_and_cells() -> None:
    image = torch.zeros(1, 3, 32, 32)
    image[:, :, :16] = 1.0
    cells = thumbnails(image, grid=2)
    np.testing.assert_allclose(cells, [[1.0, 1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="expected \\(N, C, H, W\\)"):
        thumbnails(torch.zeros(3, 32, 32))


def test_fitting_needs_images() -> None:
    with pytest.raises(ValueError, match="at least two"):
        fit_profile(
            [torch.zeros(1, 8, 8)],
            [torch.zeros(1, 8, 8)] * 3,
            fitted_on="a",
            threshold_chosen_on="b",
        )
