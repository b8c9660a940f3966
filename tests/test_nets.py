"""Model registry: every architecture has the same contract, and its CAM is exact, not approximate.

Serving localises findings with the CAM the exported graph returns; if the CAM's mean drifted
from the logit the heat map would describe a different decision than the probability does.
"""

from __future__ import annotations

import pytest
import torch

from diagnostics.errors import ConfigurationError
from diagnostics.nets import LSE_SHARPNESS, REGISTRY, CamNet, ExportWrapper, build_model

SIZE = 64
FINDINGS = 3
HEAVY = {"resnet50", "densenet121"}
"""Architectures too big to run at more than batch 1 within the test budget."""


def _arch_params() -> list[object]:
    params: list[object] = []
    for name in sorted(REGISTRY):
        marks = [pytest.mark.slow] if name == "densenet121" else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def _run(name: str, in_channels: int = 1) -> tuple[CamNet, torch.Tensor]:
    """A seeded model in eval mode and an input batch (1 for heavy architectures, else 3)."""
    torch.manual_seed(0)
    model = build_model(name, in_channels, FINDINGS).eval()
    batch = 1 if name in HEAVY else 3
    return model, torch.rand(batch, in_channels, SIZE, SIZE)


@pytest.mark.parametrize("name", _arch_params())
def test_every_architecture_gives_logits_and_cams_whose_mean_is_the_logit(name: str) -> None:
    model, image = _run(name)
    with torch.inference_mode():
        logits = model(image)
        cam_logits, cam = model.forward_with_cam(image)
        features = model.features(image)
    n = len(image)
    assert logits.shape == (n, FINDINGS)
    assert cam.ndim == 4 and cam.shape[:2] == (n, FINDINGS)
    assert cam.shape[2:] == features.shape[2:]  # one CAM cell per feature-map position
    assert cam.shape[2] >= 2 and cam.shape[3] >= 2  # a map, not a single number
    # The defining property: the logit is the log-sum-exp pooling of the CAM, computed here
    # by the textbook formula in float64; it lies between the CAM's mean and its maximum.
    r = LSE_SHARPNESS
    direct = torch.log(torch.exp(r * cam.double()).mean(dim=(2, 3))) / r
    torch.testing.assert_close(direct.float(), logits, atol=1e-4, rtol=1e-4)
    assert (logits >= cam.mean(dim=(2, 3)) - 1e-5).all()
    assert (logits <= cam.amax(dim=(2, 3)) + 1e-5).all()
    torch.testing.assert_close(cam_logits, logits, atol=1e-5, rtol=1e-5)


def test_cam_is_the_head_applied_at_each_position() -> None:
    """Recompute one CAM cell by hand from the features and the head's weights."""
    model, image = _run("compact")
    with torch.no_grad():
        _, cam = model.forward_with_cam(image)
        features = model.features(image)
    weight, bias = model.head.weight.detach(), model.head.bias.detach()
    n, k, y, x = 1, 2, 1, 3
    expected = float(weight[k] @ features[n, :, y, x] + bias[k])
    assert float(cam[n, k, y, x]) == pytest.approx(expected, abs=1e-5)


def test_compact_output_stride_is_16() -> None:
    """The CAM resolution the docstring promises for small-nodule localisation."""
    model = build_model("compact", 1, 1).eval()
    with torch.inference_mode():
        _, cam = model.forward_with_cam(torch.rand(1, 1, 128, 96))
    assert cam.shape == (1, 1, 8, 6)


def test_three_channel_input_is_accepted() -> None:
    model = build_model("compact", 3, 2).eval()
    with torch.inference_mode():
        logits = model(torch.rand(2, 3, SIZE, SIZE))
    assert logits.shape == (2, 2)


def test_export_wrapper_returns_the_cam_pair() -> None:
    model, image = _run("compact")
    with torch.inference_mode():
        logits, cam = ExportWrapper(model)(image)
        expected_logits, expected_cam = model.forward_with_cam(image)
    assert torch.equal(logits, expected_logits)
    assert torch.equal(cam, expected_cam)


def test_unknown_name_is_refused_listing_the_available_ones() -> None:
    with pytest.raises(ConfigurationError, match="unknown model 'vgg16'") as excinfo:
        build_model("vgg16", 1, 3)
    message = str(excinfo.value)
    for name in REGISTRY:
        assert name in message


@pytest.mark.parametrize("count", [0, -1])
def test_a_model_without_findings_is_refused(count: int) -> None:
    with pytest.raises(ConfigurationError, match="at least one finding"):
        build_model("compact", 1, count)


def test_models_are_freshly_initialised_per_build() -> None:
    """Two builds must not share parameters (a registry caching instances would)."""
    first, second = build_model("compact", 1, 3), build_model("compact", 1, 3)
    assert first.head.weight.data_ptr() != second.head.weight.data_ptr()
