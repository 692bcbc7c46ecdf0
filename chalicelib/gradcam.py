"""Grad-CAM (Selvaraju et al., 2017) on the served network, only when a request asks for it.

Target layer: the last convolutional stage's output, i.e. the very tensor the classifier head
reads: `features.norm5` for DenseNet (the last dense block, normalised: 1024 x 7 x 7 for a 224
input), `layer4` for ResNet. Its gradient only flows back through the head (ReLU for DenseNet,
global average pool, linear), so the convolutional trunk runs once without autograd, exactly as
for a plain classification, and only the head is differentiated:

    A = trunk(x)                         no graph, like inference
    y = head(A)[label]                   with a graph, from A on
    alpha_c = mean_ij dy/dA_cij          autograd, through the real model's weights
    cam = ReLU(sum_c alpha_c A_c)        7 x 7, upsampled to the input and laid over it

The overlay is drawn on the preprocessed image the model saw (center crop, 224 x 224).
Imported lazily by Classifier.explain: a request without a heatmap never loads this module.
"""
import base64
import io
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np

from chalicelib.backends import sigmoid

OVERLAY_OPACITY = 0.6  # at the hottest point; cold regions show the radiograph untouched


@dataclass
class Explanation:
    probabilities: List[float]
    index: int            # the output explained
    cam: np.ndarray       # float32 (h, w) >= 0, at the target layer's resolution, not normalised
    target_layer: str
    forward_ms: float     # of the whole: the part a plain classification would take too


def split(network: Any, torch: Any) -> Tuple[Callable, Callable, str]:
    """(trunk, head, target layer name) such that network(x) == head(trunk(x)). The head must
    not work in place on its input (autograd needs it intact); tests check the equality for
    every architecture in chalicelib.architectures."""
    functional = torch.nn.functional
    if hasattr(network, "features") and hasattr(network, "classifier"):  # DenseNet
        def densenet_head(activations: Any) -> Any:
            pooled = functional.adaptive_avg_pool2d(functional.relu(activations), (1, 1))
            return network.classifier(pooled.flatten(1))
        return network.features, densenet_head, "features.norm5"
    if hasattr(network, "layer4") and hasattr(network, "fc"):  # ResNet
        def resnet_trunk(x: Any) -> Any:
            x = network.maxpool(network.relu(network.bn1(network.conv1(x))))
            return network.layer4(network.layer3(network.layer2(network.layer1(x))))

        def resnet_head(activations: Any) -> Any:
            return network.fc(torch.flatten(network.avgpool(activations), 1))
        return resnet_trunk, resnet_head, "layer4"
    raise NotImplementedError(f"no Grad-CAM target layer known for {type(network).__name__}")


def explain(network: Any, torch: Any, batch: np.ndarray,
            choose: Callable[[Sequence[float]], int]) -> Explanation:
    """One forward pass giving the probabilities and, for the output `choose` picks from them,
    the Grad-CAM map."""
    trunk, head, target_layer = split(network, torch)
    started = time.perf_counter()
    x = torch.from_numpy(batch)
    with torch.no_grad():
        activations = trunk(x)
    activations = activations.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = head(activations)
        # the same sigmoid as plain inference (chalicelib.backends), to the last bit
        probabilities = sigmoid(logits.detach().numpy())[0].tolist()
        forward_ms = (time.perf_counter() - started) * 1000
        index = choose(probabilities)
        (gradients,) = torch.autograd.grad(logits[0, index], activations)
    with torch.no_grad():
        weights = gradients.mean(dim=(2, 3), keepdim=True)           # (1, C, 1, 1)
        cam = torch.relu((weights * activations).sum(dim=1))[0]       # (h, w)
    return Explanation(probabilities, index, cam.numpy().astype(np.float32), target_layer,
                       forward_ms)


def normalised(cam: np.ndarray) -> np.ndarray:
    peak = float(cam.max())
    return cam / peak if peak > 0 else np.zeros_like(cam)


def upsample(cam: np.ndarray, size: int, torch: Any) -> np.ndarray:
    """Bilinear, pixel centres aligned (what pytorch-grad-cam and cv2.resize do)."""
    tensor = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    up = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear",
                                         align_corners=False)
    return up[0, 0].numpy().clip(0.0, 1.0)


def jet(values: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB in [0, 1]: blue, cyan, yellow, red (the usual Grad-CAM colormap)."""
    v = values[..., None]
    centres = np.array([3.0, 2.0, 1.0], dtype=np.float32)  # red, green, blue
    return np.clip(1.5 - np.abs(4.0 * v - centres), 0.0, 1.0)


def overlay(radiograph: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """radiograph and heat: (h, w) in [0, 1] -> uint8 RGB. The heat's own value sets the
    opacity, so only the regions that raised the score are coloured."""
    gray = np.repeat(radiograph[..., None], 3, axis=2)
    alpha = OVERLAY_OPACITY * heat[..., None]
    return np.round((gray * (1 - alpha) + jet(heat) * alpha) * 255).astype(np.uint8)


def model_input_as_unit(batch: np.ndarray, recipe: str) -> np.ndarray:
    """The preprocessed (1, c, h, w) batch -> its first channel as (h, w) in [0, 1], undoing
    the recipe's scaling (chalicelib.preprocessing) so the overlay shows what the model saw."""
    channel = batch[0, 0].astype(np.float32)
    if recipe == "xrv":        # [-1024, 1024]
        unit = (channel + 1024.0) / 2048.0
    elif recipe == "imagenet":  # (x - mean) / std, the gray value repeated in every channel
        unit = channel * 0.229 + 0.485
    else:
        low, high = float(channel.min()), float(channel.max())
        unit = (channel - low) / (high - low) if high > low else np.zeros_like(channel)
    return unit.clip(0.0, 1.0)


def png_data_url(rgb: np.ndarray) -> str:
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, "PNG", compress_level=1)  # ~3 ms; level 6: ~15 ms, -10%
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def heatmap_answer(explanation: Explanation, batch: np.ndarray, label: str, threshold: float,
                   recipe: str, torch: Any) -> Dict[str, Any]:
    """The `heatmap` member of the JSON answer."""
    cam = normalised(explanation.cam)
    size = batch.shape[-1]
    heat = upsample(cam, size, torch)
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
        "png": png_data_url(overlay(model_input_as_unit(batch, recipe), heat)),
    }
