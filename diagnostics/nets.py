"""Model registry: CNNs built by name, all with the same features-then-linear-head shape.

Every model applies one linear layer at each spatial position of its feature map, giving a
class activation map (CAM) per finding, and pools each CAM into that finding's logit. The CAM is
computed in the forward pass, so the exported ONNX graph returns it beside the logits and
serving needs no gradients.

Pooling is log-sum-exp (a smooth maximum) rather than the mean: a 5 mm nodule covers one of
hundreds of CAM positions, and averaging would dilute its evidence until it is not learned.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from diagnostics.errors import ConfigurationError

LSE_SHARPNESS = 5.0
"""r in logit = log(mean(exp(r * cam))) / r: 0 would be the mean, infinity the maximum."""


def lse_pool(cam: torch.Tensor, sharpness: float = LSE_SHARPNESS) -> torch.Tensor:
    """Log-sum-exp pooling of (N, K, h, w) maps to (N, K), stable for any CAM values."""
    flat = cam.flatten(2)
    peak = flat.amax(dim=2, keepdim=True)
    pooled = (
        peak + torch.log(torch.exp(sharpness * (flat - peak)).mean(dim=2, keepdim=True)) / sharpness
    )
    return pooled.squeeze(2)


class CamNet(nn.Module):
    """A backbone producing (N, C, h, w) features and a linear multi-label head."""

    def __init__(self, features: nn.Module, channels: int, num_findings: int) -> None:
        super().__init__()
        self.features = features
        self.head = nn.Linear(channels, num_findings)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (N, K); what training optimises."""
        return self.forward_with_cam(image)[0]

    def forward_with_cam(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, K) and class activation maps (N, K, h, w) from one feature pass."""
        features = self.features(image)
        cam = torch.einsum("kc,nchw->nkhw", self.head.weight, features)
        cam = cam + self.head.bias[None, :, None, None]
        return lse_pool(cam), cam


class ExportWrapper(nn.Module):
    """What goes into ONNX: image -> (logits, cam)."""

    def __init__(self, model: CamNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_with_cam(image)


def _conv(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


def _compact(in_channels: int) -> tuple[nn.Module, int]:
    """A small CNN (about 0.6 M parameters, 0.23 GMAC at 256 px) that trains on two CPU cores
    in minutes: one cheap convolution at full resolution, pairs of convolutions below it.

    Output stride 16 keeps the CAM fine enough (16 x 16 at 256 px) to localise small nodules.
    """
    layers = _conv(in_channels, 16, stride=2)
    for c_in, c_out in ((16, 32), (32, 64), (64, 128)):
        layers += _conv(c_in, c_out, stride=2) + _conv(c_out, c_out)
    layers += _conv(128, 192)
    return nn.Sequential(*layers), 192


def _resnet(depth: int) -> Callable[[int], tuple[nn.Module, int]]:
    def build(in_channels: int) -> tuple[nn.Module, int]:
        from torchvision.models import resnet18, resnet50

        net = (resnet18 if depth == 18 else resnet50)(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        features = nn.Sequential(*list(net.children())[:-2])  # drop avgpool and fc
        return features, net.fc.in_features

    return build


def _densenet121(in_channels: int) -> tuple[nn.Module, int]:
    from monai.networks.nets import DenseNet121

    net = DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=1)
    # MONAI applies the final ReLU in its classification layers; keep it with the features.
    head = net.class_layers.out
    assert isinstance(head, nn.Linear)
    return nn.Sequential(net.features, nn.ReLU()), head.in_features


REGISTRY: dict[str, Callable[[int], tuple[nn.Module, int]]] = {
    "compact": _compact,
    "resnet18": _resnet(18),
    "resnet50": _resnet(50),
    "densenet121": _densenet121,
}


def build_model(name: str, in_channels: int, num_findings: int) -> CamNet:
    """Build a freshly initialised model by registry name (no pretrained weights exist here)."""
    builder = REGISTRY.get(name)
    if builder is None:
        raise ConfigurationError(
            f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}"
        )
    if num_findings < 1:
        raise ConfigurationError("a model needs at least one finding")
    features, channels = builder(in_channels)
    return CamNet(features, channels, num_findings)
