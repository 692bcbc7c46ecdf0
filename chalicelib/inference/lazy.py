"""The served model, loaded on first use, once per warm container, from the store on EFS, with
explicit states (after Cog's): not_loaded -> loading -> ready, or failed. GET /health reports
them.

The load runs in a background thread and requests wait for it on an event, each until its own
deadline (the Lambda context's remaining time less a margin for the answer): a slow store (EFS
under load) gets a JSON 503 with Retry-After before the function's timeout, never API
Gateway's bare 504, and when the load finishes the requests still waiting proceed. Lambda
freezes the whole environment, this thread included, between invocations: a load that outlives
its request pauses and resumes with the next request to the same container, so no work is lost.

A failed load is retried, but not by every request: after a failure the next attempt waits a
backoff that doubles from RETRY_FIRST_S up to RETRY_MAX_S, and requests
meanwhile get the same 503 at once, saying when the retry comes. A broken store under load then
costs one read of the weights per container per backoff, not one per request (which would add
load to an EFS that may be the fault), and a fixed store is picked up within RETRY_MAX_S,
without a restart. A half-built classifier is never served: it is published only once
load_classifier has returned it whole.
"""
import contextvars
import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from chalicelib.errors import ModelStillLoading, ModelUnavailable
from chalicelib.inference.classifier import Classifier, load_classifier
from chalicelib.inference.store import Manifest
from chalicelib.observability.request import note

log = logging.getLogger(__name__)

# What a request keeps, of its Lambda deadline, for the work after the model is ready
# (preprocessing, the forward pass, the JSON answer) and for the 503 itself when it is not.
ANSWER_MARGIN_S = 2.0


def wait_deadline(context: Any, margin_s: float = ANSWER_MARGIN_S) -> Optional[float]:
    """The time.monotonic() by which the model must be ready for this request to answer before
    its function times out; None without a Lambda context (no deadline: wait for the load)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.monotonic() + remaining() / 1000 - margin_s


class LazyModel:
    """The classifier, loaded once (concurrent first requests wait for one load)."""

    NOT_LOADED, LOADING, READY, FAILED = "not_loaded", "loading", "ready", "failed"
    RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0

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
        self._loaded = threading.Event()  # set when the current attempt has ended
        self._started = 0.0               # time.monotonic() of the current attempt's start
        self._failures = 0                # failed attempts so far
        self._retry_at = 0.0              # no attempt before this time.monotonic()
        self._attempts = 0                # loads started

    def get(self, deadline: Optional[float] = None) -> Classifier:
        """The classifier, loading it if needed; deadline: a time.monotonic() after which to
        stop waiting for a load in progress (None: wait for it). Raises ModelUnavailable (the
        load failed, or failed recently and is not retried yet) or ModelStillLoading."""
        classifier = self._classifier
        if classifier is not None:
            return classifier
        with self._lock:
            if self._classifier is not None:
                return self._classifier
            if self._state == self.FAILED and time.monotonic() < self._retry_at:
                wait = self._retry_at - time.monotonic()
                raise ModelUnavailable(f"The model is not available: {self._error} (the next "
                                       f"attempt to load it is in {wait:.0f} s)",
                                       retry_after_s=wait)
            if self._state != self.LOADING:
                self._start_load()
            loaded, started = self._loaded, self._started
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not loaded.wait(timeout):
            so_far = time.monotonic() - started
            raise ModelStillLoading(f"The model is still loading ({so_far:.0f} s so far: the "
                                    f"model store is slow); retry in a few seconds.",
                                    retry_after_s=min(5.0, max(1.0, so_far)))
        if self._classifier is not None:
            return self._classifier
        raise ModelUnavailable(f"The model is not available: {self._error}",
                               retry_after_s=max(0.0, self._retry_at - time.monotonic()))

    def _start_load(self) -> None:  # under self._lock
        self._state, self._error = self.LOADING, None
        self._started, self._loaded = time.monotonic(), threading.Event()
        self._attempts += 1
        # in the starting request's context, so that its observation gets the load's note
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(self._load, self._loaded),
                         name="model-load", daemon=True).start()

    def _load(self, loaded: threading.Event) -> None:
        started = time.perf_counter()
        try:
            classifier = self._load_classifier(self.model_path, self._packages_path,
                                               self._backend)
        except Exception as error:  # anything: a broken store must never take the API down
            message = str(error) or type(error).__name__
            if not self.model_path.exists():
                message += self._hint
            with self._lock:
                backoff = min(self.RETRY_MAX_S, self.RETRY_FIRST_S * 2 ** self._failures)
                self._failures += 1
                self._state, self._error = self.FAILED, message
                self._retry_at = time.monotonic() + backoff
            log.error("model load failed (retry in %.0f s): %s\n%s", backoff, message,
                      traceback.format_exc())
        else:
            with self._lock:
                self._load_ms = (time.perf_counter() - started) * 1000
                self._classifier, self._state, self._error = classifier, self.READY, None
            note(model_load_ms=round(self._load_ms, 1))  # the ModelLoadTime metric
            log.info("model %s loaded in %.0f ms", classifier.manifest.identity(),
                     self._load_ms)
        finally:
            loaded.set()

    def loaded_manifest(self) -> Optional[Manifest]:
        return self._classifier.manifest if self._classifier is not None else None

    def status(self) -> Dict[str, Any]:
        with self._lock:
            status: Dict[str, Any] = {"state": self._state, "path": str(self.model_path),
                                      "attempts": self._attempts}
            if self._state == self.LOADING:
                status["loading_s"] = round(time.monotonic() - self._started, 1)
            if self._error:
                status["error"] = self._error
                status["retry_in_s"] = round(max(0.0, self._retry_at - time.monotonic()), 1)
            if self._classifier is not None:
                status["model"] = self._classifier.identity()
                status["backend"] = self._classifier.backend
                status["load_ms"] = round(self._load_ms or 0.0, 1)
            return status
