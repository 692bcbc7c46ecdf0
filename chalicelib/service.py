"""POST /xray from request bytes to response JSON, with the time each stage took: imaging
decodes, inference preprocesses, runs and explains, and this module puts the answer together."""
import time
from typing import Any, Dict, Optional

from chalicelib.errors import PayloadTooLarge
from chalicelib.imaging.dispatch import decode
from chalicelib.imaging.image import Limits
from chalicelib.inference.lazy import LazyModel
from chalicelib.settings import Settings

# heatmap= values that mean "the most probable finding"
TOP = ("", "top", "1", "true")


class XrayService:
    def __init__(self, settings: Settings, model: LazyModel) -> None:
        self._max_bytes = settings.max_upload_bytes
        self._limits = Limits(max_pixels=settings.max_pixels, min_side=settings.min_side)
        self.model = model

    def preview(self, body: bytes, content_type: str) -> Dict[str, Any]:
        from chalicelib.imaging.preview import preview
        check_size(body, self._max_bytes)
        return preview(body, content_type, self._limits)

    def classify(self, body: bytes, content_type: str, heatmap: Optional[str] = None,
                 deadline: Optional[float] = None,
                 max_bytes: Optional[int] = None) -> Dict[str, Any]:
        """heatmap: None = no heatmap (no gradient work at all); "top" (or "", "1", "true") =
        a Grad-CAM heatmap for the most probable finding; a label = for that finding.
        deadline: the time.monotonic() until which to wait for a model still loading
        (lazy.wait_deadline); None = as long as the load takes.
        max_bytes: the size limit when it is not the synchronous route's (an upload job's)."""
        check_size(body, max_bytes or self._max_bytes)
        started = time.perf_counter()
        # Decode before touching the model: bad input is refused without loading torch.
        image = decode(body, content_type, self._limits)
        decoded = time.perf_counter()
        classifier = self.model.get(deadline)
        loaded = time.perf_counter()
        explain = heatmap is not None
        label = None if heatmap is None or heatmap.strip().lower() in TOP else heatmap
        label_index = classifier.label_index(label)  # an unknown label fails before the work
        batch = classifier.preprocess(image.pixels)
        preprocessed = time.perf_counter()
        explained = classifier.explain(batch, label_index) if explain else None
        probabilities = (explained.probabilities if explained is not None
                         else classifier.inference(batch))
        inferred = time.perf_counter()
        timings = {
            "decode": _ms(started, decoded),
            "preprocess": _ms(loaded, preprocessed),
            "inference": _ms(preprocessed, inferred),
            "model_load": _ms(decoded, loaded),  # ~0 except on the first request
        }
        answer = {"model": classifier.identity(), **classifier.postprocess(probabilities),
                  "image": image.describe(), "timings_ms": timings}
        if explained is not None:
            # the forward pass counts as inference; gradients, upsampling and PNG as heatmap
            timings["inference"] = round(explained.forward_ms, 2)
            timings["heatmap"] = round(_ms(preprocessed, inferred) - explained.forward_ms, 2)
            answer["heatmap"] = explained.heatmap
        return answer


def check_size(body: bytes, max_bytes: int) -> None:
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"The upload is {len(body):,} bytes; the limit is {max_bytes:,} bytes "
            f"(a Lambda request holds 6 MB after base64). Send a smaller or compressed image.")


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 2)
