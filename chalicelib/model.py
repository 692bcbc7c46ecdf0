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
from chalicelib.runtime import import_torch
from chalicelib.store import Manifest, ManifestError, read_manifest, sha256_hex

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

UNTRAINED_WARNING = ("These weights are an untrained demo (random, seeded): the findings are "
                     "meaningless and are not a diagnosis.")


class Classifier:
    def __init__(self, manifest: Manifest, network: Any, torch: Any) -> None:
        from chalicelib.preprocessing import RECIPES
        self.manifest = manifest
        self._network = network
        self._torch = torch
        self._recipe = RECIPES[manifest.preprocessing["recipe"]]
        self._size = manifest.input_size

    def identity(self) -> Dict[str, Any]:
        identity = self.manifest.identity()
        if not self.manifest.trained:
            identity["warning"] = UNTRAINED_WARNING
        return identity

    def preprocess(self, pixels: "np.ndarray") -> "np.ndarray":
        return self._recipe(pixels, self._size)

    def inference(self, batch: "np.ndarray") -> List[float]:
        torch = self._torch
        with torch.inference_mode():
            logits = self._network(torch.from_numpy(batch))
            return torch.sigmoid(logits)[0].tolist()

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
        named finding). Returns (probabilities, the JSON `heatmap` member)."""
        from chalicelib import gradcam
        labels = self.manifest.labels

        def choose(probabilities: Sequence[float]) -> int:
            if label is not None:
                return label
            return max((i for i, name in enumerate(labels) if name),
                       key=probabilities.__getitem__)

        explanation = gradcam.explain(self._network, self._torch, batch, choose)
        name = labels[explanation.index]
        answer = gradcam.heatmap_answer(explanation, batch, name, self.manifest.thresholds[name],
                                        self.manifest.preprocessing["recipe"], self._torch)
        return explanation.probabilities, {**answer, "forward_ms": explanation.forward_ms}

    def postprocess(self, probabilities: List[float]) -> Dict[str, Any]:
        thresholds = self.manifest.thresholds
        rows = [{"label": label, "probability": round(p, 6), "threshold": thresholds[label]}
                for label, p in zip(self.manifest.labels, probabilities)
                if label]  # an unnamed output was not trained: never reported
        rows.sort(key=lambda row: row["probability"], reverse=True)
        return {"findings": rows,
                "positive": [row["label"] for row in rows
                             if row["probability"] >= row["threshold"]]}


def load_classifier(model_path: Path, packages_path: Optional[Path]) -> Classifier:
    torch = import_torch(packages_path)  # before anything else touches torch
    from safetensors.torch import load as load_safetensors

    from chalicelib.architectures import ARCHITECTURES
    from chalicelib.preprocessing import RECIPES

    manifest = read_manifest(model_path)
    architecture = dict(manifest.architecture)
    build = ARCHITECTURES.get(architecture.pop("name"))
    if build is None:
        raise ManifestError(f"unknown architecture {manifest.architecture['name']!r}; known: "
                            f"{', '.join(ARCHITECTURES)}")
    if manifest.preprocessing["recipe"] not in RECIPES:
        raise ManifestError(f"unknown preprocessing recipe {manifest.preprocessing['recipe']!r}")
    try:
        data = manifest.weights_path.read_bytes()
    except OSError as error:
        raise ManifestError(f"cannot read the weights {manifest.weights_path}: "
                            f"{error.strerror}") from None
    digest = sha256_hex(data)
    if digest != manifest.sha256:
        raise ManifestError(f"{manifest.weights_path.name} has sha256 {digest[:12]}..., the "
                            f"manifest says {manifest.sha256[:12]}... (incomplete copy?)")
    state = load_safetensors(data)
    with torch.device("meta"):  # no random init: every parameter comes from the file
        network = build(num_classes=len(manifest.labels), **architecture)
    missing, unexpected = _key_mismatch(network.state_dict(), state)
    if missing or unexpected:
        raise ManifestError(f"the weights do not fit {manifest.architecture['name']}: missing "
                            f"{missing[:3]}, unexpected {unexpected[:3]}")
    network.load_state_dict(state, strict=True, assign=True)
    network.eval()
    return Classifier(manifest, network, torch)


def _key_mismatch(expected: Dict[str, Any], got: Dict[str, Any]) -> tuple:
    return sorted(set(expected) - set(got)), sorted(set(got) - set(expected))


class LazyModel:
    """Loads the classifier on first use and keeps it. Concurrent first requests load once;
    a failed load is retried by the next request, so a fixed store recovers without restart."""

    NOT_LOADED, LOADING, READY, FAILED = "not_loaded", "loading", "ready", "failed"

    def __init__(self, model_path: Path, packages_path: Optional[Path],
                 loader: Callable[[Path, Optional[Path]], Classifier] = load_classifier) -> None:
        self.model_path = model_path
        self._packages_path = packages_path
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
            classifier = self._loader(self.model_path, self._packages_path)
        except Exception as error:  # anything: a broken store must never take the API down
            self._state, self._error = self.FAILED, str(error) or type(error).__name__
            log.error("model load failed: %s\n%s", self._error, traceback.format_exc())
            return
        self._load_ms = (time.perf_counter() - started) * 1000
        self._classifier, self._state, self._error = classifier, self.READY, None
        log.info("model %s loaded in %.0f ms", classifier.manifest.identity(), self._load_ms)

    def loaded_manifest(self) -> Optional[Manifest]:
        return self._classifier.manifest if self._classifier is not None else None

    def status(self) -> Dict[str, Any]:
        status: Dict[str, Any] = {"state": self._state, "path": str(self.model_path)}
        if self._error:
            status["error"] = self._error
        if self._classifier is not None:
            status["model"] = self._classifier.identity()
            status["load_ms"] = round(self._load_ms or 0.0, 1)
        return status
