"""Chest X-ray classification API. Routes only; the work is in chalicelib.

Nothing heavy is imported here: `chalice deploy` and `chalice package` import this file on a
machine without torch, and Lambda's init phase should not pay for what a request may not need.
"""
import json
import logging
import time
from contextvars import ContextVar
from functools import lru_cache

from chalice import Chalice, Response

from chalicelib.imaging.formats import ROUTE_CONTENT_TYPES
from chalicelib.settings import Settings
from chalicelib.web import cors

app = Chalice(app_name="chest-xray")
app.debug = False  # never send tracebacks to clients
app.log.setLevel(logging.INFO)
# API Gateway must pass these bodies through as bytes; application/dicom is not a default. The
# form types are only ever refused, but `chalice deploy` wants a route's types all binary or not.
app.api.binary_types = sorted(set(app.api.binary_types) | set(ROUTE_CONTENT_TYPES))

_cold_start = True
# What a view adds to its request's access-log line (one line per request, written last).
_log_details: ContextVar[dict] = ContextVar("log_details")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


@lru_cache(maxsize=1)
def get_model():
    from chalicelib.inference.lazy import LazyModel
    settings = get_settings()
    return LazyModel(settings.model_path, settings.packages_path, settings.backend)


@lru_cache(maxsize=1)
def get_service():
    from chalicelib.service import XrayService
    return XrayService(get_settings(), get_model())


@app.middleware("http")
def label_and_log(event, get_response):
    """Every answer is labelled (JSON unless a view says otherwise: Chalice leaves the header to
    API Gateway's default), carries the CORS headers its Origin is allowed, and leaves one
    access-log line: method, path, status and duration, nothing from the body (a view may add
    what it decoded and how long each stage took)."""
    started = time.perf_counter()
    details: dict = {}
    _log_details.set(details)
    response = get_response(event)
    response.headers.setdefault("Content-Type", "application/json")
    # CORS for the allowlisted origins on every answer, errors included (chalicelib/web/cors.py)
    for name, value in cors.response_headers(event.headers.get("origin"),
                                             get_settings().cors_origins).items():
        previous = response.headers.get(name)
        response.headers[name] = f"{previous}, {value}" if name == "Vary" and previous else value
    app.log.info(json.dumps({"event": "request", "method": event.method, "path": event.path,
                             "status": response.status_code,
                             "ms": round((time.perf_counter() - started) * 1000, 1), **details}))
    return response


@app.route("/", methods=["GET"])
def upload_page():
    """The upload page (chalicelib/web/page.html): pick or drop an X-ray, see findings and
    heatmap."""
    from chalicelib.web import page
    max_bytes = get_settings().max_upload_bytes
    return Response(body=page.render(max_bytes), headers=dict(page.headers(max_bytes)))


@app.route("/xray", methods=["POST"], content_types=ROUTE_CONTENT_TYPES)
def classify_xray():
    """?heatmap=top (or a label) adds a Grad-CAM heatmap; without it no gradient is computed."""
    global _cold_start
    request = app.current_request
    cold, _cold_start = _cold_start, False
    heatmap = (request.query_params or {}).get("heatmap")
    from chalicelib.errors import ModelUnavailable
    from chalicelib.inference.lazy import wait_deadline
    from chalicelib.web.uploads import upload_bytes
    try:  # a slow model store: a JSON 503 before the function's deadline, never a gateway 504
        result = get_service().classify(upload_bytes(request),
                                        request.headers.get("content-type", ""), heatmap=heatmap,
                                        deadline=wait_deadline(app.lambda_context))
    except ModelUnavailable as error:  # raised, it would lose its Retry-After header
        return error.response()
    # Never log pixels, DICOM fields or findings: what was decoded and how long it took.
    _log_details.get().update(cold_start=cold, image=result["image"],
                              timings_ms=result["timings_ms"])
    return result


@app.route("/preview", methods=["POST"], content_types=ROUTE_CONTENT_TYPES)
def preview_xray():
    """The decoded image as a small PNG (for DICOM, which browsers cannot show). No model."""
    request = app.current_request
    from chalicelib.web.uploads import upload_bytes
    return get_service().preview(upload_bytes(request), request.headers.get("content-type", ""))


@app.route("/health", methods=["GET"])
def health():
    status = get_model().status()
    return {"live": True, "ready": status["state"] == "ready", "model": status}


@app.route("/model", methods=["GET"])
def model_manifest():
    from chalicelib.errors import ModelUnavailable
    from chalicelib.inference.store import ManifestError, read_manifest
    model = get_model()
    manifest = model.loaded_manifest()
    if manifest is None:  # not loaded yet: the manifest alone is cheap and needs no torch
        try:
            manifest = read_manifest(model.model_path)
        except ManifestError as error:
            raise ModelUnavailable(f"The model is not available: {error}") from None
    return {**manifest.raw, "state": model.status()["state"]}


# CORS preflight, answered by the function itself (not by API Gateway's MOCK integration that
# Chalice's cors=True generates, which can only name one origin): see chalicelib/web/cors.py.
@app.route("/xray", methods=["OPTIONS"])
@app.route("/preview", methods=["OPTIONS"])
@app.route("/health", methods=["OPTIONS"])
@app.route("/model", methods=["OPTIONS"])
def preflight():
    request = app.current_request
    origin = request.headers.get("origin")
    if origin is None:  # not a browser preflight: say what the path allows
        return Response(body="", status_code=204, headers={"Allow": cors.ALLOWED_METHODS})
    headers = cors.preflight_headers(origin, get_settings().cors_origins)
    if headers is None:  # the middleware adds no Access-Control-Allow-Origin either
        from chalicelib.errors import OriginNotAllowed
        raise OriginNotAllowed(f"Origin {origin} may not call this API from a browser "
                               f"(see XRAY_CORS_ORIGINS).")
    return Response(body="", status_code=204, headers=headers)


@app.lambda_function(name="efs_loader")
def efs_loader(event, context):
    """Installs a runtime or model archive from S3 onto EFS, verified (python -m vendor_efs.ship).
    A separate function: the API itself never writes to EFS."""
    from chalicelib.efs_loader import handle
    return handle(event, get_settings().efs_root)
