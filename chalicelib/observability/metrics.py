"""CloudWatch metrics as Embedded Metric Format lines on stdout (Powertools), namespace
ChestXray: CloudWatch Logs extracts them, no API call and no extra permission is needed.

Dimensions stay few and bounded, since each combination of values is a metric of its own:
service, stage and route for everything; a request also counts once under its status class
(2xx/4xx/5xx), an error once under its error code (a class name from our code or Chalice's,
never free text) and a decoded upload once under its format. Each of those is its own EMF
document, so the latencies are not multiplied by every status and code. Values only: no
request id, no caller, no image detail beyond the format.

Powertools' EphemeralMetrics keeps no state between instances: one per document, so concurrent
requests under the threaded `chalice local` cannot mix their figures.
"""
import re
from typing import Dict, Mapping, Optional

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from chalicelib.observability.logging import SERVICE

NAMESPACE = "ChestXray"
# timings_ms step -> metric name
STEP_METRICS = {"decode": "DecodeLatency", "preprocess": "PreprocessLatency",
                "inference": "InferenceLatency", "heatmap": "HeatmapLatency",
                "model_load": "ModelLoadLatency"}
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def dimension_value(value: Optional[str], fallback: str = "other") -> str:
    """A dimension value we produce ourselves; anything else collapses into one bucket."""
    return value if value and _CODE.fullmatch(value) else fallback


def emit_request(*, stage: str, route: str, status: int, error_code: Optional[str],
                 total_ms: float, timings_ms: Mapping[str, float], upload_bytes: int,
                 cold_start: bool, image_format: Optional[str],
                 model_load_ms: Optional[float]) -> None:
    common = {"stage": stage, "route": route}
    main = _document(common)
    main.add_metric(name="Latency", unit=MetricUnit.Milliseconds, value=total_ms)
    for step, value in timings_ms.items():
        if step in STEP_METRICS:
            main.add_metric(name=STEP_METRICS[step], unit=MetricUnit.Milliseconds, value=value)
    if upload_bytes:
        main.add_metric(name="UploadBytes", unit=MetricUnit.Bytes, value=upload_bytes)
    if cold_start:
        main.add_metric(name="ColdStart", unit=MetricUnit.Count, value=1)
    if model_load_ms is not None:
        main.add_metric(name="ModelLoadTime", unit=MetricUnit.Milliseconds, value=model_load_ms)
    main.flush_metrics()
    _count("Requests", {**common, "status_class": status_class(status)})
    if error_code is not None:
        _count("Errors", {**common, "error_code": dimension_value(error_code)})
    if image_format is not None:
        _count("DecodedImages", {"stage": stage, "format": dimension_value(image_format)})


def _document(dimensions: Dict[str, str]) -> EphemeralMetrics:
    document = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
    for name, value in dimensions.items():
        document.add_dimension(name=name, value=value)
    return document


def _count(name: str, dimensions: Dict[str, str]) -> None:
    document = _document(dimensions)
    document.add_metric(name=name, unit=MetricUnit.Count, value=1)
    document.flush_metrics()
