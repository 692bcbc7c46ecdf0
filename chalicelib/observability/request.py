"""One HTTP request, observed: the middleware begins it, views (and the model loader) note what
they decoded and timed, and the middleware finishes it with the request line, its metrics and,
for a classification, the audit line.

What a request line may carry is listed here and nowhere else: ids, cold start, stage, method,
route (the resource, never the raw path or query), status, error code (never the message: our
messages quote the Content-Type or Origin the client sent), timings per step, sizes, and what
was decoded (format, size in pixels, Pillow mode or photometric, bits, transfer syntax) and, for
STOW-RS, how many instances came and how each failed (counts and Failure Reason codes). Never
headers, body, findings, UIDs or any DICOM field beyond those image-describing ones.
"""
import json
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional

from chalicelib.observability import audit, metrics
from chalicelib.observability.logging import logger
from chalicelib.web.principal import principal_of, source_ip

# (method, route) of the classifications, each of which leaves an audit line (one per request,
# STOW-RS's included, whose line counts its instances)
AUDITED = {("POST", "/xray"), ("POST", "/studies"), ("POST", "/studies/{study}")}
# (method, route) -> action of the job routes, each of which leaves an audit line too
JOB_ACTIONS = {("POST", "/xray/jobs"): "create_job", ("GET", "/xray/jobs/{job_id}"): "read_job",
               ("DELETE", "/xray/jobs/{job_id}"): "delete_job"}
# what a view may note, and what of the decoded image's description may be logged
NOTES = ("image", "timings_ms", "model_load_ms", "stow")
# what of a STOW-RS request's note may be logged (chalicelib/dicomweb/stow.notes)
STOW_FIELDS = ("instances", "classified", "failure_reasons")
IMAGE_FIELDS = ("format", "width", "height", "mode", "bits", "photometric", "bits_stored",
                "transfer_syntax", "windowed", "modality", "body_part", "view", "intended_use",
                "decoded")

_cold_start = True


@dataclass
class Observation:
    started: float
    cold_start: bool
    notes: Dict[str, Any] = field(default_factory=dict)


_current: ContextVar[Optional[Observation]] = ContextVar("observation", default=None)


def begin() -> Observation:
    """The first request a process serves is its cold start."""
    global _cold_start
    observation = Observation(time.perf_counter(), _cold_start)
    _cold_start = False
    _current.set(observation)
    return observation


def note(**details: Any) -> None:
    """What the request in progress decoded and timed (keys: NOTES). Outside a request (a
    script, a test calling the service directly) it does nothing."""
    unknown = set(details) - set(NOTES)
    if unknown:
        raise ValueError(f"not a request note: {', '.join(sorted(unknown))} (see NOTES)")
    observation = _current.get()
    if observation is not None:
        observation.notes.update(details)


def finish(observation: Observation, request: Any, response: Any, *, lambda_context: Any,
           stage: str, model: Callable[[], Any]) -> None:
    """request: Chalice's Request; response: the Response about to be sent; model: the getter of
    the LazyModel, asked for the served model's identity by the audit line. Never raises: a
    failure here is logged (as its type and frames) and the answer goes out regardless."""
    try:
        _finish(observation, request, response, lambda_context, stage, model)
    except Exception:
        logger.exception("could not observe the request", extra={"event": "observability"})


def _finish(observation: Observation, request: Any, response: Any, lambda_context: Any,
            stage: str, model: Callable[[], Any]) -> None:
    context = request.context or {}
    route = context.get("resourcePath") or "unknown"
    status = int(response.status_code)
    error_code = error_code_of(response.body) if status >= 400 else None
    total_ms = round((time.perf_counter() - observation.started) * 1000, 2)
    upload = body_size(request.to_original_event())
    notes = observation.notes
    image = notes.get("image")
    image = {key: image[key] for key in IMAGE_FIELDS if key in image} if image else None
    timings = {str(step): float(ms) for step, ms in (notes.get("timings_ms") or {}).items()}
    stow = notes.get("stow")
    stow = {key: stow[key] for key in STOW_FIELDS if key in stow} if stow else None
    request_id = context.get("requestId")
    line: Dict[str, Any] = {
        "event": "request", "request_id": request_id,
        "lambda_request_id": getattr(lambda_context, "aws_request_id", None),
        "cold_start": observation.cold_start, "stage": stage, "method": request.method,
        "route": route, "status": status, "error_code": error_code, "total_ms": total_ms,
        "request_bytes": upload, "response_bytes": response_size(response.body),
    }
    if timings:
        line["timings_ms"] = timings
    if image:
        line["image"] = image
    if stow:
        line["stow"] = stow
    logger.info("request", extra=line)
    metrics.emit_request(stage=stage, route=route, status=status, error_code=error_code,
                         total_ms=total_ms, timings_ms=timings, upload_bytes=upload,
                         cold_start=observation.cold_start,
                         image_format=image.get("format") if image else None,
                         model_load_ms=notes.get("model_load_ms"))
    if (request.method, route) in AUDITED:
        manifest = model().loaded_manifest()
        audit.classification(
            request_id=request_id, stage=stage, principal=principal_of(context),
            source_ip=source_ip(context), model=manifest.identity() if manifest else None,
            status=status, error_code=error_code,
            heatmap="heatmap" in (request.query_params or {}), instances=stow)
    action = JOB_ACTIONS.get((request.method, route))
    if action is not None:
        job_id = (request.uri_params or {}).get("job_id")
        if job_id is None and isinstance(response.body, Mapping):
            job_id = response.body.get("job_id")  # the one just created
        audit.job_access(action=action, request_id=request_id, stage=stage,
                         principal=principal_of(context), source_ip=source_ip(context),
                         job_id=job_id if isinstance(job_id, str) else None, status=status,
                         error_code=error_code)


def error_code_of(body: Any) -> Optional[str]:
    """The Code of a Chalice error body ({"Code": <class name>, "Message": ...})."""
    code = body.get("Code") if isinstance(body, Mapping) else None
    return metrics.dimension_value(code) if isinstance(code, str) else "Unknown"


def body_size(event: Mapping[str, Any]) -> int:
    """The request body's size in bytes, from the proxy event, without decoding it."""
    body = event.get("body")
    if not isinstance(body, str) or not body:
        return 0
    if not event.get("isBase64Encoded"):
        return len(body.encode("utf-8"))
    return len(body) * 3 // 4 - (len(body) - len(body.rstrip("=")))


def response_size(body: Any) -> int:
    """The answer's size as Chalice serializes it (compact JSON unless it is text or bytes)."""
    if body is None:
        return 0
    if isinstance(body, bytes):
        return len(body)
    if isinstance(body, str):
        return len(body.encode("utf-8"))
    return len(json.dumps(body, separators=(",", ":"), default=str).encode("utf-8"))
