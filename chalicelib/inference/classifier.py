"""The served model, after TorchServe's handler lifecycle: initialize = load_classifier() builds
a Classifier from the manifest and safetensors weights (the sha256 is checked, nothing is
unpickled); preprocess, inference and postprocess are its methods, explain adds a heatmap:
from the ONNX graph's feature map output and the head's weights, in numpy, when the graph has
that output (inference.gradcam's closed form, no torch), else through a torch network built from
the same verified weights on the first heatmap request (models exported before that output).
Loading it once per warm container, on first use, is lazy.LazyModel's job.

Each store file is read once and hashed, and the backends are built from those bytes: neither
onnxruntime nor torch opens a file of the model, so a file swapped or damaged on EFS after its
check can never run. A classifier is returned only after one forward pass through the whole
path agreed with the manifest (input shape, one output per label, finite values): a manifest
that lies fails the load instead of serving wrong or truncated findings.
"""
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from chalicelib.errors import InvalidParameter, ModelUnavailable
from chalicelib.inference.store import (
    Manifest,
    ManifestError,
    read_file,
    read_manifest,
    safetensors_layout,
    sha256_hex,
)
from chalicelib.inference.torch_import import TorchUnavailable, import_torch

if TYPE_CHECKING:
    import numpy as np

    from chalicelib.imaging.image import Grid
    from chalicelib.inference.architectures.registry import GradCamHead

# largest |logit| difference between the graph's logits and its head applied to its feature
# map in numpy (float32 sums in another order: about 1e-6 on the demo)
FEATURE_MAP_TOLERANCE = 1e-3
UNTRAINED_WARNING = ("These weights are an untrained demo (random, seeded): the findings are "
                     "meaningless and are not a diagnosis.")


@dataclass
class Explained:
    """What Classifier.explain answers."""
    probabilities: List[float]  # the serving backend's, as inference() gives them
    heatmap: Dict[str, Any]     # the JSON answer's `heatmap` member
    forward_ms: float           # the forward pass alone: what a plain classification costs


class Classifier:
    def __init__(self, manifest: Manifest, backend: Any, weights: bytes,
                 packages_path: Optional[Path]) -> None:
        from chalicelib.inference.preprocessing import RECIPES
        self.manifest = manifest
        self._backend = backend
        self._weights = weights  # kept for the torch network the heatmap builds on demand
        self._packages_path = packages_path
        self._torch_backend: Optional[Any] = backend if backend.name == "torch" else None
        self._torch_lock = threading.Lock()
        self._recipe = RECIPES[manifest.preprocessing["recipe"]]
        self._size = manifest.input_size
        # the closed-form heatmap's head: (GradCamHead, its linear weight as a view of the
        # verified bytes), when the backend gives the feature map
        self._closed_form: Optional[Tuple["GradCamHead", "np.ndarray"]] = None
        if getattr(backend, "features", None) is not None:
            from chalicelib.inference.architectures.registry import HEADS
            head = HEADS[manifest.architecture["name"]]
            self._closed_form = (head, safetensors_array(weights, head.weight))

    @property
    def closed_form_heatmaps(self) -> bool:
        """Heatmaps come from the graph's feature map with numpy (no torch)."""
        return self._closed_form is not None

    @property
    def backend(self) -> str:
        return self._backend.name

    def identity(self) -> Dict[str, Any]:
        identity = self.manifest.identity()
        if not self.manifest.trained:
            identity["warning"] = UNTRAINED_WARNING
        return identity

    def preprocess(self, pixels: "np.ndarray", grid: Optional["Grid"] = None) -> "np.ndarray":
        """grid: where a coarser decoded level sits on the full image (None: the full image)."""
        return self._recipe.forward(pixels, self._size, grid)

    def logits(self, batch: "np.ndarray") -> "np.ndarray":
        """The serving backend's raw outputs: (batch, outputs)."""
        return self._backend.logits(batch)

    def inference(self, batch: "np.ndarray") -> List[float]:
        from chalicelib.inference.backends import sigmoid
        return sigmoid(self.logits(batch))[0].tolist()

    def torch_backend(self) -> Any:
        """The torch network, which computes gradients (the heatmap of a graph without the
        feature map output); with the onnxruntime backend it is built from the same verified
        weights on the first such heatmap request."""
        with self._torch_lock:
            if self._torch_backend is None:
                from chalicelib.inference.backends import TorchBackend, build_torch_network
                try:
                    torch = import_torch(self._packages_path)
                except TorchUnavailable as error:
                    raise ModelUnavailable(f"Heatmaps of this model need torch (for "
                                           f"gradients: its ONNX graph has no feature map "
                                           f"output; re-importing the model adds it), which "
                                           f"cannot be loaded here: {error}. Classification "
                                           f"without ?heatmap works.") from None
                self._torch_backend = TorchBackend(
                    build_torch_network(self.manifest, self._weights, torch), torch)
            return self._torch_backend

    def label_index(self, wanted: Optional[str]) -> Optional[int]:
        """A heatmap request's label -> its output index; None = the top finding.
        Case-insensitive; unnamed (untrained) outputs cannot be asked for."""
        if wanted is None:
            return None
        by_name = {label.lower(): i for i, label in enumerate(self.manifest.labels) if label}
        index = by_name.get(wanted.strip().lower())
        if index is None:
            named = [label for label in self.manifest.labels if label]
            raise InvalidParameter(f"heatmap={wanted!r} is not a label of this model. Use "
                                   f"heatmap=top or one of: {', '.join(named)}.")
        return index

    def explain(self, batch: "np.ndarray", label: Optional[int]) -> Explained:
        """inference() plus a Grad-CAM heatmap for output `label` (None: the most probable
        named finding). The probabilities are always the serving backend's, so a heatmap never
        changes the findings."""
        from chalicelib.inference import gradcam
        labels = self.manifest.labels
        served: Optional[List[float]] = None

        def choose(probabilities: Sequence[float]) -> int:
            if label is not None:
                return label
            ranked = served if served is not None else probabilities
            return max((i for i, name in enumerate(labels) if name), key=ranked.__getitem__)

        if self._closed_form is not None:
            explanation = self._explain_closed_form(batch, choose)
            served, forward_ms = explanation.probabilities, explanation.forward_ms
        else:
            from chalicelib.inference.architectures.registry import spec
            torch_backend = self.torch_backend()
            forward_ms = 0.0
            if torch_backend is not self._backend:
                started = time.perf_counter()
                served = self.inference(batch)
                forward_ms = (time.perf_counter() - started) * 1000
            split = spec(self.manifest.architecture["name"]).gradcam_split
            explanation = gradcam.explain(torch_backend.network, split, torch_backend.torch,
                                          batch, choose)
            if served is None:  # the torch backend: its forward pass was the inference
                served, forward_ms = explanation.probabilities, explanation.forward_ms
        name = labels[explanation.index]
        answer = gradcam.heatmap_answer(explanation, batch, name, self.manifest.thresholds[name],
                                        self._recipe)
        answer["probability"] = round(served[explanation.index], 6)
        return Explained(served, answer, forward_ms)

    def _explain_closed_form(self, batch: "np.ndarray",
                             choose: Callable[[Sequence[float]], int]) -> Any:
        """gradcam.Explanation from one onnxruntime pass fetching the logits and the feature
        map (the logits are those inference() gives: the same session, the same pass)."""
        from chalicelib.inference import gradcam
        from chalicelib.inference.backends import sigmoid
        assert self._closed_form is not None
        head, weight = self._closed_form
        started = time.perf_counter()
        logits, features = self._backend.logits_and_features(batch)
        probabilities = sigmoid(logits)[0].tolist()
        forward_ms = (time.perf_counter() - started) * 1000
        index = choose(probabilities)
        cam = gradcam.closed_form_cam(features[0], weight[index], head.relu)
        return gradcam.Explanation(probabilities, index, cam, head.layer, forward_ms)

    def postprocess(self, probabilities: List[float]) -> Dict[str, Any]:
        thresholds = self.manifest.thresholds
        rows: List[Dict[str, Any]] = [
            {"label": label, "probability": round(p, 6), "threshold": thresholds[label]}
            for label, p in zip(self.manifest.labels, probabilities)
            if label]  # an unnamed output was not trained: never reported
        rows.sort(key=lambda row: row["probability"], reverse=True)
        return {"findings": rows,
                "positive": [row["label"] for row in rows
                             if row["probability"] >= row["threshold"]]}


def choose_backend(manifest: Manifest, wanted: str) -> str:
    """auto: onnxruntime when the model has an ONNX graph and onnxruntime is installed."""
    if wanted == "torch":
        return "torch"
    if manifest.onnx is None:
        if wanted == "onnxruntime":
            raise ManifestError("XRAY_BACKEND=onnxruntime, but the model has no ONNX graph "
                                "(re-import it with python -m vendor_efs.models import)")
        return "torch"
    if wanted == "auto":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "torch"
    return "onnxruntime"


def load_classifier(model_path: Path, packages_path: Optional[Path],
                    backend: str = "auto") -> Classifier:
    from chalicelib.inference.architectures.registry import NAMES, is_known
    from chalicelib.inference.backends import TorchBackend, build_torch_network
    from chalicelib.inference.preprocessing import RECIPES

    manifest = read_manifest(model_path)
    if not is_known(manifest.architecture["name"]):
        raise ManifestError(f"unknown architecture {manifest.architecture['name']!r}; known: "
                            f"{', '.join(NAMES)}")
    if manifest.preprocessing["recipe"] not in RECIPES:
        raise ManifestError(f"unknown preprocessing recipe {manifest.preprocessing['recipe']!r}")
    weights = _verified(manifest.weights_path, manifest.sha256)
    onnx = manifest.onnx
    if choose_backend(manifest, backend) == "onnxruntime" and onnx is not None:
        graph = _verified(manifest.directory / onnx["file"], onnx["sha256"])
        runner: Any = _onnx_backend(manifest, onnx["file"], graph, weights)
    else:
        torch = import_torch(packages_path)  # before anything else touches torch
        runner = TorchBackend(build_torch_network(manifest, weights, torch), torch)
    classifier = Classifier(manifest, runner, weights, packages_path)
    self_test(classifier)
    return classifier


def _onnx_backend(manifest: Manifest, name: str, graph: bytes, weights: bytes) -> Any:
    """The onnxruntime session of graph (the manifest's file `name`), checked against the
    manifest's input and output shapes."""
    from chalicelib.inference.backends import OnnxBackend
    feature_map = (manifest.onnx or {}).get("feature_map")
    features = feature_map["output"] if feature_map else None
    try:
        runner = OnnxBackend(graph, {manifest.weights_path.name: weights}, features=features)
    except Exception as error:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
        raise ManifestError(f"onnxruntime cannot load {name}: {_first_line(error)}. Re-export "
                            f"the model (python -m vendor_efs.models import).") from None
    expected = [manifest.raw["input"]["channels"], manifest.input_size, manifest.input_size]
    dims = runner.input_shape()[1:]
    if any(isinstance(d, int) and d != e for d, e in zip(dims, expected)) or len(dims) != 3:
        raise ManifestError(f"{name} takes input {dims} (channels, height, width); the manifest "
                            f"says {expected}. Fix \"input\" in manifest.json or re-import the "
                            f"model.")
    outputs = (runner.output_shape() or [None])[-1]
    if isinstance(outputs, int) and outputs != len(manifest.labels):
        raise ManifestError(_label_count_message(len(manifest.labels), outputs))
    if features is not None and runner.output_shape(features) is None:
        raise ManifestError(f"{name} has no output {features!r}, which \"onnx.feature_map\" "
                            f"names. Re-import the model (or remove \"feature_map\": heatmaps "
                            f"then need torch).")
    return runner


def safetensors_array(weights: bytes, name: str) -> "np.ndarray":
    """One float32 tensor of a safetensors file's bytes, as a read-only numpy view of them
    (no copy, no torch)."""
    import numpy as np
    layout = safetensors_layout(weights)
    if name not in layout:
        raise ManifestError(f"the weights have no tensor {name!r}: not the architecture the "
                            f"manifest names. Fix manifest.json or re-import the model.")
    dtype, shape, offset, length = layout[name]
    if dtype != "F32" or length != 4 * int(np.prod(shape)):
        raise ManifestError(f"{name} is {dtype}{shape} in the weights; float32 expected. "
                            f"Re-import the model.")
    return np.frombuffer(weights, np.float32, count=length // 4, offset=offset).reshape(shape)


def self_test(classifier: Classifier) -> None:
    """One forward pass of a mid-gray image through preprocess and the backend: the shapes the
    manifest promises, one finite logit per label. Raises ManifestError saying what disagrees."""
    import numpy as np
    manifest = classifier.manifest
    size = manifest.input_size
    batch = classifier.preprocess(np.full((size, size), 0.5, dtype=np.float32))
    expected = (1, manifest.raw["input"]["channels"], size, size)
    if batch.shape != expected:
        raise ManifestError(f"the preprocessing recipe {manifest.preprocessing['recipe']!r} "
                            f"gives a batch of shape {batch.shape}; \"input\" says {expected}. "
                            f"Fix manifest.json or re-import the model.")
    features = None
    try:
        if classifier.closed_form_heatmaps:  # the one pass a heatmap runs: logits and features
            logits, features = classifier._backend.logits_and_features(batch)
        else:
            logits = np.asarray(classifier.logits(batch))
    except Exception as error:  # onnxruntime's and torch's own error types
        raise ManifestError(f"the model does not run on the input the manifest describes "
                            f"{expected}: {_first_line(error)}. Fix \"input\" in manifest.json "
                            f"or re-import the model.") from None
    if logits.ndim != 2 or logits.shape[1] != len(manifest.labels):
        raise ManifestError(_label_count_message(len(manifest.labels), logits.shape[-1]))
    if not np.isfinite(logits).all():
        raise ManifestError("the model's outputs are not finite numbers (NaN or infinite "
                            "weights?). Re-import the model.")
    if features is not None:
        _check_feature_map(classifier, features, logits)


def _check_feature_map(classifier: Classifier, features: "np.ndarray",
                       logits: "np.ndarray") -> None:
    """The graph's feature map is the tensor the head reads: the head's closed form (pool,
    linear) applied to it in numpy gives the logits of the same pass. Otherwise the
    closed-form heatmap would explain some other tensor. (That a pass fetching the feature map
    gives the same logits as one that does not is the tests' to check: a second forward pass
    here would lengthen every cold start.)"""
    import numpy as np

    assert classifier._closed_form is not None
    manifest = classifier.manifest
    head, weight = classifier._closed_form
    bias = safetensors_array(classifier._weights, head.bias)
    output = manifest.onnx["feature_map"]["output"] if manifest.onnx else ""
    if features.ndim != 4 or features.shape[1] != weight.shape[1]:
        raise ManifestError(f"the graph's {output!r} has shape {list(features.shape)}; "
                            f"{manifest.architecture['name']}'s head reads (batch, "
                            f"{weight.shape[1]}, h, w). Re-import the model.")
    a = features.astype(np.float64)
    pooled = (np.maximum(a, 0.0) if head.relu else a).mean(axis=(2, 3))
    difference = float(np.abs(pooled @ weight.T.astype(np.float64) + bias - logits).max())
    if difference > FEATURE_MAP_TOLERANCE:
        raise ManifestError(f"the graph's {output!r} is not what its head reads (the head "
                            f"applied to it differs from the logits by {difference:.2e}). "
                            f"Re-import the model.")


def _label_count_message(labels: int, outputs: Any) -> str:
    return (f"the manifest lists {labels} labels but the model has {outputs} outputs: "
            f"\"labels\" must name every output, in order (\"\" for an untrained one). Fix "
            f"manifest.json or re-import the model.")


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300].rstrip(".")


def _verified(path: Path, sha256: str) -> bytes:
    """The file's bytes, read once, if their sha256 is the manifest's."""
    data = read_file(path)
    digest = sha256_hex(data)
    if digest != sha256:
        raise ManifestError(f"{path.name} has sha256 {digest[:12]}... ({len(data):,} bytes), "
                            f"the manifest says {sha256[:12]}...: an incomplete or altered "
                            f"copy. Re-install the model version.")
    return data
