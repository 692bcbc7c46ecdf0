"""POST /xray from request bytes to response JSON, with the time each stage took."""
import time
from typing import Any, Dict

from chalicelib.decoding import Limits, decode
from chalicelib.errors import PayloadTooLarge
from chalicelib.model import LazyModel
from chalicelib.settings import Settings


class XrayService:
    def __init__(self, settings: Settings, model: LazyModel) -> None:
        self._max_bytes = settings.max_upload_bytes
        self._limits = Limits(max_pixels=settings.max_pixels, min_side=settings.min_side)
        self.model = model

    def classify(self, body: bytes, content_type: str) -> Dict[str, Any]:
        if len(body) > self._max_bytes:
            raise PayloadTooLarge(
                f"The upload is {len(body):,} bytes; the limit is {self._max_bytes:,} bytes "
                f"(a Lambda request holds 6 MB after base64). Send a smaller or compressed image.")
        started = time.perf_counter()
        # Decode before touching the model: bad input is refused without loading torch.
        image = decode(body, content_type, self._limits)
        decoded = time.perf_counter()
        classifier = self.model.get()
        loaded = time.perf_counter()
        batch = classifier.preprocess(image.pixels)
        preprocessed = time.perf_counter()
        probabilities = classifier.inference(batch)
        inferred = time.perf_counter()
        return {
            "model": classifier.identity(),
            **classifier.postprocess(probabilities),
            "image": image.describe(),
            "timings_ms": {
                "decode": _ms(started, decoded),
                "preprocess": _ms(loaded, preprocessed),
                "inference": _ms(preprocessed, inferred),
                "model_load": _ms(decoded, loaded),  # ~0 except on the first request
            },
        }


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 2)
