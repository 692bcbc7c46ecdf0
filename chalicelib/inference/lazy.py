"""The served model, loaded on first use, once per warm container, from the store on EFS, with
explicit states (after Cog's): not_loaded -> loading -> ready, or failed (retried by the next
request, so a fixed store recovers without a restart). GET /health reports them.
"""
import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from chalicelib.errors import ModelUnavailable
from chalicelib.inference.classifier import Classifier, load_classifier
from chalicelib.inference.store import Manifest
from chalicelib.observability.request import note

log = logging.getLogger(__name__)


class LazyModel:
    """The classifier, loaded once (concurrent first requests wait for one load)."""

    NOT_LOADED, LOADING, READY, FAILED = "not_loaded", "loading", "ready", "failed"

    def __init__(self, model_path: Path, packages_path: Optional[Path], backend: str = "auto",
                 load: Callable[..., Classifier] = load_classifier, hint: str = "") -> None:
        self.model_path = model_path
        self._hint = hint  # what to do when the store is not there (Settings.store_hint)
        self._packages_path = packages_path
        self._backend = backend
        self._load_classifier = load
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
            classifier = self._load_classifier(self.model_path, self._packages_path,
                                               self._backend)
        except Exception as error:  # anything: a broken store must never take the API down
            self._state, self._error = self.FAILED, str(error) or type(error).__name__
            if not self.model_path.exists():
                self._error += self._hint
            log.error("model load failed: %s\n%s", self._error, traceback.format_exc())
            return
        self._load_ms = (time.perf_counter() - started) * 1000
        note(model_load_ms=round(self._load_ms, 1))  # the ModelLoadTime metric
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
            status["backend"] = self._classifier.backend
            status["load_ms"] = round(self._load_ms or 0.0, 1)
        return status
