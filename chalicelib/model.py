"""The served model: loaded on first use, once per warm container, from the store on EFS.

Lifecycle (after TorchServe's handler): initialize = LazyModel.get() builds a Classifier from the
manifest and safetensors weights (the sha256 is checked, nothing is unpickled); preprocess,
inference and postprocess are Classifier methods.
"""
import logging
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

from chalicelib.errors import InvalidParameter, ModelUnavailable
from chalicelib.runtime import RuntimeUnavailable, import_torch
from chalicelib.store import Manifest, ManifestError, read_manifest, sha256_hex

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

UNTRAINED_WARNING = ("These weights are an untrained demo (random, seeded): the findings are "
                     "meaningless and are not a diagnosis.")


class Classifier:
    def __init__(self, manifest: Manifest, backend: Any, weights: bytes,
                 packages_path: Optional[Path]) -> None:
        from chalicelib.preprocessing import RECIPES
        self.manifest = manifest
        self._backend = backend
        self._weights = weights  # kept for the torch network the heatmap builds on demand
        self._packages_path = packages_path
        self._torch_backend: Optional[Any] = backend if backend.name == "torch" else None
        self._torch_lock = threading.Lock()
        self._recipe = RECIPES[manifest.preprocessing["recipe"]]
        self._size = manifest.input_size

    @property
    def backend(self) -> str:
        return self._backend.name

    def identity(self) -> Dict[str, Any]:
        identity = self.manifest.identity()
        if not self.manifest.trained:
            identity["warning"] = UNTRAINED_WARNING
        return identity

    def preprocess(self, pixels: "np.ndarray") -> "np.ndarray":
        return self._recipe(pixels, self._size)

    def inference(self, batch: "np.ndarray") -> List[float]:
        from chalicelib.backends import sigmoid
        return sigmoid(self._backend.logits(batch))[0].tolist()

    def torch_backend(self) -> Any:
        """The torch network, which computes gradients (the heatmap); with the onnxruntime
        backend it is built from the same verified weights on the first heatmap request."""
        with self._torch_lock:
            if self._torch_backend is None:
                from chalicelib.backends import TorchBackend, build_torch_network
                try:
                    torch = import_torch(self._packages_path)
                except RuntimeUnavailable as error:
                    raise ModelUnavailable(f"Heatmaps need torch (for gradients), which cannot "
                                           f"be loaded here: {error}. Classification without "
                                           f"?heatmap works.") from None
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

    def explain(self, batch: "np.ndarray", label: Optional[int]) -> tuple:
        """inference() plus a Grad-CAM heatmap for output `label` (None: the most probable
        named finding). Returns (probabilities, the JSON `heatmap` member). The probabilities
        are always the serving backend's, so a heatmap never changes the findings."""
        import time

        from chalicelib import gradcam
        labels = self.manifest.labels
        torch_backend = self.torch_backend()
        served: Optional[List[float]] = None
        forward_ms = 0.0
        if torch_backend is not self._backend:
            started = time.perf_counter()
            served = self.inference(batch)
            forward_ms = (time.perf_counter() - started) * 1000

        def choose(probabilities: Sequence[float]) -> int:
            if label is not None:
                return label
            ranked = served if served is not None else probabilities
            return max((i for i, name in enumerate(labels) if name), key=ranked.__getitem__)

        explanation = gradcam.explain(torch_backend.network, torch_backend.torch, batch, choose)
        if served is None:  # the torch backend: its forward pass was the inference
            served, forward_ms = explanation.probabilities, explanation.forward_ms
        name = labels[explanation.index]
        answer = gradcam.heatmap_answer(explanation, batch, name, self.manifest.thresholds[name],
                                        self.manifest.preprocessing["recipe"], torch_backend.torch)
        answer["probability"] = round(served[explanation.index], 6)
        return served, {**answer, "forward_ms": forward_ms}

    def postprocess(self, probabilities: List[float]) -> Dict[str, Any]:
        thresholds = self.manifest.thresholds
        rows = [{"label": label, "probability": round(p, 6), "threshold": thresholds[label]}
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
                                "(re-import it with vendor_efs.import_model)")
        return "torch"
    if wanted == "auto":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "torch"
    return "onnxruntime"


def load_classifier(model_path: Path, packages_path: Optional[Path],
                    backend: str = "auto") -> Classifier:
    from chalicelib.architectures import ARCHITECTURES
    from chalicelib.backends import OnnxBackend, TorchBackend, build_torch_network
    from chalicelib.preprocessing import RECIPES

    manifest = read_manifest(model_path)
    if manifest.architecture["name"] not in ARCHITECTURES:
        raise ManifestError(f"unknown architecture {manifest.architecture['name']!r}; known: "
                            f"{', '.join(ARCHITECTURES)}")
    if manifest.preprocessing["recipe"] not in RECIPES:
        raise ManifestError(f"unknown preprocessing recipe {manifest.preprocessing['recipe']!r}")
    weights = _verified(manifest.weights_path, manifest.sha256)
    if choose_backend(manifest, backend) == "onnxruntime":
        graph = manifest.directory / manifest.onnx["file"]
        _verified(graph, manifest.onnx["sha256"])
        runner: Any = OnnxBackend(graph)
    else:
        torch = import_torch(packages_path)  # before anything else touches torch
        runner = TorchBackend(build_torch_network(manifest, weights, torch), torch)
    return Classifier(manifest, runner, weights, packages_path)


def _verified(path: Path, sha256: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ManifestError(f"cannot read {path}: {error.strerror}") from None
    digest = sha256_hex(data)
    if digest != sha256:
        raise ManifestError(f"{path.name} has sha256 {digest[:12]}..., the manifest says "
                            f"{sha256[:12]}... (incomplete copy?)")
    return data


class LazyModel:
    """Loads the classifier on first use and keeps it. Concurrent first requests load once;
    a failed load is retried by the next request, so a fixed store recovers without restart."""

    NOT_LOADED, LOADING, READY, FAILED = "not_loaded", "loading", "ready", "failed"

    def __init__(self, model_path: Path, packages_path: Optional[Path], backend: str = "auto",
                 loader: Callable[..., Classifier] = load_classifier) -> None:
        self.model_path = model_path
        self._packages_path = packages_path
        self._backend = backend
        self._loader = loader
        self._lock = threading.Lock()
        self._classifier: Optional[Classifier] = None
        self._state = self.NOT_LOADED
        self._error: Optional[str] = None
        self._load_ms: Optional[float] = None

    def get(self) -> Classifier:
        classifier = self._classifier
        if classifier is not None:
            return classifier
        with self._lock:
            if self._classifier is None:
                self._load()
            if self._classifier is None:
                raise ModelUnavailable(f"The model is not available: {self._error}")
            return self._classifier

    def _load(self) -> None:
        self._state, started = self.LOADING, time.perf_counter()
        try:
            classifier = self._loader(self.model_path, self._packages_path, self._backend)
        except Exception as error:  # anything: a broken store must never take the API down
            self._state, self._error = self.FAILED, str(error) or type(error).__name__
            log.error("model load failed: %s\n%s", self._error, traceback.format_exc())
            return
        self._load_ms = (time.perf_counter() - started) * 1000
        self._classifier, self._state, self._error = classifier, self.READY, None
        log.info("model %s loaded in %.0f ms", classifier.manifest.identity(), self._load_ms)

    def import_runtime(self) -> str:
        """Imports what the load will run on (for the benchmark's cold-start split)."""
        name = choose_backend(read_manifest(self.model_path), self._backend)
        if name == "onnxruntime":
            import onnxruntime  # noqa: F401
        else:
            import_torch(self._packages_path)
        return name

    def loaded_manifest(self) -> Optional[Manifest]:
        return self._classifier.manifest if self._classifier is not None else None

    def status(self) -> Dict[str, Any]:
        status: Dict[str, Any] = {"state": self._state, "path": str(self.model_path)}
        if self._error:
            status["error"] = self._error
        if self._classifier is not None:
            status["model"] = self._classifier.identity()
            status["backend"] = self._classifier.backend
            status["load_ms"] = round(self._load_ms or 0.0, 1)
        return status
