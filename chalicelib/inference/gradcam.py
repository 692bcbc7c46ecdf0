"""Grad-CAM (Selvaraju et al., 2017) on the served network, only when a request asks for it.

Target layer: the last convolutional stage's output, i.e. the very tensor the classifier head
reads, named by each architecture's spec (its gradcam_split: `features.norm5` for DenseNet,
`layer4` for ResNet). The head after it is (ReLU for DenseNet,) global average pool over the
h x w positions and one linear layer W, so the gradient needs no autograd:

    y_k = b_k + sum_c W_kc * mean_ij relu(A_cij)          (no ReLU for ResNet)
    dy_k/dA_cij = W_kc * relu'(A_cij) / (h w)             relu'(a) = 1 if a > 0 else 0, as torch
    alpha_c = mean_ij dy_k/dA_cij = W_kc * n_c / (h w)^2  n_c: positions where A_c > 0 (h w
                                                           without the ReLU)
    cam = ReLU(sum_c alpha_c A_c)                         7 x 7, upsampled to the input

closed_form_cam computes that with numpy from the feature map onnxruntime outputs beside the
logits (the graph's feature map output, architectures.registry.HEADS for W and the ReLU), so a
heatmap imports no torch. explain() is the autograd way, through the torch network: the trunk
runs once without a graph, like inference, and only the head is differentiated. It serves the
torch backend and graphs exported without the feature map output, and is the reference the
tests hold the closed form to.

The overlay is drawn on the preprocessed image the model saw (center crop, 224 x 224), all in
numpy. Imported lazily by Classifier.explain: a request without a heatmap never loads this module.
"""
import base64
import io
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

from chalicelib.inference.architectures.registry import GradCamSplit
from chalicelib.inference.backends import sigmoid
from chalicelib.inference.preprocessing import Recipe

OVERLAY_OPACITY = 0.6  # at the hottest point; cold regions show the radiograph untouched


@dataclass
class Explanation:
    probabilities: List[float]
    index: int            # the output explained
    cam: np.ndarray       # float32 (h, w) >= 0, at the target layer's resolution, not normalised
    target_layer: str
    forward_ms: float     # of the whole: the part a plain classification would take too


def explain(network: Any, split: GradCamSplit, torch: Any, batch: np.ndarray,
            choose: Callable[[Sequence[float]], int]) -> Explanation:
    """One forward pass giving the probabilities and, for the output `choose` picks from them,
    the Grad-CAM map. `split` is the architecture's (its ArchitectureSpec.gradcam_split)."""
    trunk, head, target_layer = split(network)
    started = time.perf_counter()
    x = torch.from_numpy(batch)
    with torch.no_grad():
        activations = trunk(x)
    activations = activations.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = head(activations)
        # the same sigmoid as plain inference (inference.backends), to the last bit
        probabilities = sigmoid(logits.detach().numpy())[0].tolist()
        forward_ms = (time.perf_counter() - started) * 1000
        index = choose(probabilities)
        (gradients,) = torch.autograd.grad(logits[0, index], activations)
    with torch.no_grad():
        weights = gradients.mean(dim=(2, 3), keepdim=True)           # (1, C, 1, 1)
        cam = torch.relu((weights * activations).sum(dim=1))[0]       # (h, w)
    return Explanation(probabilities, index, cam.numpy().astype(np.float32), target_layer,
                       forward_ms)


def closed_form_cam(features: np.ndarray, weights: np.ndarray, relu: bool) -> np.ndarray:
    """Grad-CAM from the target layer's tensor alone. features: (C, h, w) for one image;
    weights: (C,) the linear layer's row for the explained output; relu: the head applies a
    ReLU before pooling (registry.GradCamHead.relu). float32 (h, w) >= 0, not normalised."""
    channels, height, width = features.shape
    positions = height * width
    a = features.astype(np.float64)
    passed = np.count_nonzero(a > 0, axis=(1, 2)) if relu else positions  # n_c
    alpha = weights.astype(np.float64) * passed / (positions * positions)
    cam = np.tensordot(alpha, a, axes=1)
    return np.maximum(cam, 0.0).astype(np.float32)


def normalised(cam: np.ndarray) -> np.ndarray:
    peak = float(cam.max())
    return cam / peak if peak > 0 else np.zeros_like(cam)


@lru_cache(maxsize=8)
def _bilinear_matrix(source: int, size: int) -> np.ndarray:
    """(size, source): row i weighs the source samples that output sample i interpolates,
    pixel centres aligned (torch's align_corners=False): x = (i + 0.5) * source / size - 0.5,
    clamped at 0, between floor(x) and the next sample (the last one repeats)."""
    x = np.maximum((np.arange(size, dtype=np.float64) + 0.5) * (source / size) - 0.5, 0.0)
    low = np.floor(x).astype(np.int64)
    high = np.minimum(low + 1, source - 1)
    frac = x - low
    matrix = np.zeros((size, source), dtype=np.float64)
    np.add.at(matrix, (np.arange(size), low), 1.0 - frac)
    np.add.at(matrix, (np.arange(size), high), frac)
    return matrix


def upsample(cam: np.ndarray, size: int) -> np.ndarray:
    """Bilinear, pixel centres aligned (what pytorch-grad-cam, cv2.resize and torch's
    interpolate(align_corners=False) do), to (size, size), clipped to [0, 1]."""
    rows = _bilinear_matrix(cam.shape[0], size)
    columns = _bilinear_matrix(cam.shape[1], size)
    up = rows @ cam.astype(np.float64) @ columns.T
    return up.clip(0.0, 1.0).astype(np.float32)


JET_CENTRES = np.array([3.0, 2.0, 1.0], dtype=np.float32)  # red, green, blue


def jet(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB in [0, 1], float32: blue, cyan, yellow, red (the usual Grad-CAM
    colormap)."""
    colour = np.multiply(values[..., None], np.float32(4.0), dtype=np.float32) - JET_CENTRES
    np.abs(colour, out=colour)
    np.subtract(np.float32(1.5), colour, out=colour)
    return np.clip(colour, 0.0, 1.0, out=colour)


def overlay(radiograph: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """radiograph and heat: (h, w) in [0, 1] -> uint8 RGB. The heat's own value sets the
    opacity, so only the regions that raised the score are coloured:
    gray + opacity * heat * (jet(heat) - gray), in float32 and in place (a heatmap's budget is a
    few milliseconds)."""
    gray = radiograph.astype(np.float32, copy=False)[..., None]
    colour = jet(heat)
    colour -= gray
    colour *= (np.float32(OVERLAY_OPACITY * 255) * heat.astype(np.float32, copy=False))[..., None]
    colour += gray * np.float32(255)
    return np.rint(colour, out=colour).astype(np.uint8)


def png_data_url(rgb: np.ndarray) -> str:
    """A data: URL of the PNG. zlib's fastest level with run-length matching: quicker than
    level 1's default strategy, and no larger for an overlay."""
    import zlib

    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, "PNG", compress_level=1, compress_type=zlib.Z_RLE)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def heatmap_answer(explanation: Explanation, batch: np.ndarray, label: str, threshold: float,
                   recipe: Recipe) -> Dict[str, Any]:
    """The `heatmap` member of the JSON answer."""
    cam = normalised(explanation.cam)
    size = batch.shape[-1]
    heat = upsample(cam, size)
    return {
        "method": "Grad-CAM",
        "target_layer": explanation.target_layer,
        "label": label,
        "probability": round(explanation.probabilities[explanation.index], 6),
        "threshold": threshold,
        "size": [size, size],
        # the map itself, 0..1 at the layer's resolution, for clients drawing their own overlay
        "cam": [[round(float(v), 4) for v in row] for row in cam],
        # 0 means no region raised this label's score: the overlay is then the bare radiograph
        "peak": round(float(explanation.cam.max()), 6),
        # drawn on what the model saw: the recipe's inverse undoes its scaling
        "png": png_data_url(overlay(recipe.inverse(batch), heat)),
    }
