"""PyTorch -> ONNX export with a numeric parity check that runs every time.

The exported graph takes `image` float32 [N, C, H, W] (dynamic N) and returns `logits` [N, K]
and `cam` [N, K, h, w]. Before a package is written, ONNX Runtime and PyTorch run the same real,
preprocessed inputs at two batch sizes; a probability difference above the tolerance refuses
the export rather than shipping a model that serves different answers than it was validated on.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from diagnostics.errors import ModelPackageError
from diagnostics.nets import CamNet, ExportWrapper

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
"""Largest allowed |sigmoid(logit_onnx) - sigmoid(logit_torch)| on real inputs."""
CAM_TOLERANCE = 1e-3
"""Largest allowed difference in the class activation maps, which place the boxes."""
OPSET = 17


def export_onnx(model: CamNet, sample: torch.Tensor, path: Path) -> None:
    """Write `model` as ONNX with a dynamic batch axis and check the graph."""
    wrapper = ExportWrapper(model).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript; the TorchScript path is the one this project tests and ships.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (sample[:1].contiguous(),),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["logits", "cam"],
            dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}, "cam": {0: "N"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelPackageError(f"exported ONNX graph fails onnx.checker: {exc}") from None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


def parity(model: CamNet, onnx_path: Path, inputs: torch.Tensor) -> dict[str, float]:
    """Largest differences between ONNX Runtime and PyTorch on `inputs` (batch 1 and full)."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model = model.eval()
    worst = {"probability": 0.0, "logit": 0.0, "cam": 0.0}
    for batch in (inputs[:1], inputs):
        with torch.inference_mode():
            logits, cam = model.forward_with_cam(batch.contiguous())
        onnx_logits, onnx_cam = session.run(["logits", "cam"], {"image": batch.numpy()})
        reference = logits.numpy().astype(np.float64)
        worst["probability"] = max(
            worst["probability"],
            float(np.abs(_sigmoid(onnx_logits.astype(np.float64)) - _sigmoid(reference)).max()),
        )
        worst["logit"] = max(worst["logit"], float(np.abs(onnx_logits - reference).max()))
        worst["cam"] = max(worst["cam"], float(np.abs(onnx_cam - cam.numpy()).max()))
    return worst


def export_checked(model: CamNet, inputs: torch.Tensor, path: Path) -> dict[str, float]:
    """Export, then refuse (delete and raise) unless parity holds within `PARITY_TOLERANCE`."""
    if inputs.ndim != 4 or len(inputs) < 2:
        raise ValueError("parity needs a batch of at least two real preprocessed inputs")
    model = model.to(memory_format=torch.contiguous_format).eval()
    export_onnx(model, inputs, path)
    worst = parity(model, path, inputs)
    log.info("ONNX parity: %s", worst)
    if worst["probability"] > PARITY_TOLERANCE or worst["cam"] > CAM_TOLERANCE:
        path.unlink(missing_ok=True)
        raise ModelPackageError(
            f"ONNX and PyTorch disagree by {worst['probability']:.2e} in probability "
            f"(tolerance {PARITY_TOLERANCE:.0e}) and {worst['cam']:.2e} in the CAM "
            f"(tolerance {CAM_TOLERANCE:.0e}); export refused"
        )
    return worst
