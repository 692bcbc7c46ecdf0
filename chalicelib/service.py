"""POST /xray from request bytes to response JSON, with the time each stage took: imaging
decodes, inference checks the model's intended use, preprocesses, runs and explains, and this
module puts the answer together. The answer is JSON; chalicelib/reports renders it as a DICOM SR
or FHIR, for which a DICOM input's header travels beside it."""
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Optional

from chalicelib.errors import PayloadTooLarge
from chalicelib.imaging.dispatch import decode
from chalicelib.imaging.image import EXACT, Limits, Resolution
from chalicelib.inference import intended_use
from chalicelib.inference.lazy import LazyModel
from chalicelib.inference.store import ManifestError, read_manifest
from chalicelib.settings import Settings

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

# heatmap= values that mean "the most probable finding"
TOP = ("", "top", "1", "true")


@dataclass
class Classification:
    answer: Dict[str, Any]  # what POST /xray answers as JSON
    # a DICOM input's header without pixels (patient fields included: never logged), or None
    header: Optional["Dataset"] = field(default=None, repr=False)


class XrayService:
    def __init__(self, settings: Settings, model: LazyModel) -> None:
        self._max_bytes = settings.max_upload_bytes
        self._limits = Limits(max_pixels=settings.max_pixels, min_side=settings.min_side)
        self._reduced_decoding = settings.reduced_decoding
        self.model = model

    def preview(self, body: bytes, content_type: str) -> Dict[str, Any]:
        from chalicelib.imaging.preview import preview
        check_size(body, self._max_bytes)
        return preview(body, content_type, self._limits)

    def classify(self, body: bytes, content_type: str, heatmap: Optional[str] = None,
                 deadline: Optional[float] = None,
                 max_bytes: Optional[int] = None, force: bool = False) -> Classification:
        """heatmap: None = no heatmap (no gradient work at all); "top" (or "", "1", "true") =
        a Grad-CAM heatmap for the most probable finding; a label = for that finding.
        deadline: the time.monotonic() until which to wait for a model still loading
        (lazy.wait_deadline); None = as long as the load takes.
        max_bytes: the size limit when it is not the synchronous route's (an upload job's).
        force: classify a DICOM whose header says the model was not made for it (marked)."""
        check_size(body, max_bytes or self._max_bytes)
        started = time.perf_counter()
        # Decode before touching the model: bad input is refused without loading torch.
        image = decode(body, content_type, self._limits, self.resolution())
        decoded = time.perf_counter()
        classifier = self.model.get(deadline)
        loaded = time.perf_counter()
        described = image.describe()
        described["intended_use"] = intended_use.check(described, classifier.manifest.accepts,
                                                       force)
        explain = heatmap is not None
        label = None if heatmap is None or heatmap.strip().lower() in TOP else heatmap
        label_index = classifier.label_index(label)  # an unknown label fails before the work
        batch = classifier.preprocess(image.pixels, image.grid)
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
                  "image": described, "timings_ms": timings}
        if explained is not None:
            # the forward pass counts as inference; gradients, upsampling and PNG as heatmap
            timings["inference"] = round(explained.forward_ms, 2)
            timings["heatmap"] = round(_ms(preprocessed, inferred) - explained.forward_ms, 2)
            answer["heatmap"] = explained.heatmap
        return Classification(answer, image.header)

    def resolution(self) -> Resolution:
        """How finely to decode: every pixel, unless the stage opted in to reduced decoding; then
        no finer than the served model needs and no coarser than its manifest allows. Before
        the model is loaded its manifest is read from the store (a few hundred bytes), so that
        bad input is still refused without loading the model."""
        if not self._reduced_decoding:
            return EXACT
        manifest = self.model.loaded_manifest()
        if manifest is None:
            try:
                manifest = read_manifest(self.model.model_path)
            except ManifestError:  # the model's load reports it, as for every request
                return EXACT
        return Resolution(coarsest_level=manifest.coarsest_level,
                          min_side=manifest.reduced_min_side)


def check_size(body: bytes, max_bytes: int) -> None:
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"The upload is {len(body):,} bytes; the limit is {max_bytes:,} bytes "
            f"(a Lambda request holds 6 MB after base64). Send a smaller or compressed image.")


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 2)
