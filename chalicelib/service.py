"""POST /xray from request bytes to response JSON, with the time each stage took."""
import time
from typing import Any, Dict, Optional

from chalicelib.decoding import Limits, decode, import_decoders
from chalicelib.errors import PayloadTooLarge
from chalicelib.model import LazyModel
from chalicelib.settings import Settings


# heatmap= values that mean "the most probable finding"
TOP = ("", "top", "1", "true")


class XrayService:
    def __init__(self, settings: Settings, model: LazyModel) -> None:
        self._max_bytes = settings.max_upload_bytes
        self._limits = Limits(max_pixels=settings.max_pixels, min_side=settings.min_side)
        self.model = model

    def import_runtime(self) -> str:
        """Imports what a PNG or JPEG classification runs on (the decoder, numpy and the
        model's backend) and names the backend: the "import" phase of a cold start."""
        import chalicelib.uploads  # noqa: F401  (the routes' base64 decoder, pybase64)
        import_decoders()
        return self.model.import_runtime()

    def preview(self, body: bytes, content_type: str) -> Dict[str, Any]:
        from chalicelib.preview import preview
        check_size(body, self._max_bytes)
        return preview(body, content_type, self._limits)

    def classify(self, body: bytes, content_type: str,
                 heatmap: Optional[str] = None) -> Dict[str, Any]:
        """heatmap: None = no heatmap (no gradient work at all); "top" (or "", "1", "true") =
        a Grad-CAM heatmap for the most probable finding; a label = for that finding."""
        check_size(body, self._max_bytes)
        started = time.perf_counter()
        # Decode before touching the model: bad input is refused without loading torch.
        image = decode(body, content_type, self._limits)
        decoded = time.perf_counter()
        classifier = self.model.get()
        loaded = time.perf_counter()
        explain = heatmap is not None
        label = None if not explain or heatmap.strip().lower() in TOP else heatmap
        label_index = classifier.label_index(label)  # an unknown label fails before the work
        batch = classifier.preprocess(image.pixels)
        preprocessed = time.perf_counter()
        if explain:
            probabilities, heatmap_member = classifier.explain(batch, label_index)
            inference_ms = heatmap_member.pop("forward_ms")
        else:
            probabilities = classifier.inference(batch)
        inferred = time.perf_counter()
        timings = {
            "decode": _ms(started, decoded),
            "preprocess": _ms(loaded, preprocessed),
            "inference": _ms(preprocessed, inferred),
            "model_load": _ms(decoded, loaded),  # ~0 except on the first request
        }
        answer = {"model": classifier.identity(), **classifier.postprocess(probabilities),
                  "image": image.describe(), "timings_ms": timings}
        if explain:
            # the forward pass counts as inference; gradients, upsampling and PNG as heatmap
            timings["inference"] = round(inference_ms, 2)
            timings["heatmap"] = round(_ms(preprocessed, inferred) - inference_ms, 2)
            answer["heatmap"] = heatmap_member
        return answer


def check_size(body: bytes, max_bytes: int) -> None:
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"The upload is {len(body):,} bytes; the limit is {max_bytes:,} bytes "
            f"(a Lambda request holds 6 MB after base64). Send a smaller or compressed image.")


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 2)
