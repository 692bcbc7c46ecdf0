"""Chest X-ray classification API. Routes only; the work is in chalicelib.

Nothing heavy is imported here: `chalice deploy` and `chalice package` import this file on a
machine without torch, and Lambda's init phase should not pay for what a request may not need.
"""
from functools import lru_cache

from chalice import Chalice, Response

from chalicelib.imaging.formats import ROUTE_CONTENT_TYPES
from chalicelib.observability import logging as observability_logging
from chalicelib.observability import request as observed
from chalicelib.settings import Settings
from chalicelib.web import cors
from chalicelib.web.auth import route_auth

# Logs are Powertools JSON lines (chalicelib/observability/logging.py), not Chalice's plain ones.
app = Chalice(app_name=observability_logging.SERVICE, configure_logs=False)
app.debug = False  # never send tracebacks to clients
observability_logging.install()
# API Gateway must pass these bodies through as bytes; application/dicom is not a default. The
# form types are only ever refused, but `chalice deploy` wants a route's types all binary or not.
app.api.binary_types = sorted(set(app.api.binary_types) | set(ROUTE_CONTENT_TYPES))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


# Who may call the data routes (XRAY_AUTH, per stage: chalicelib/web/auth.py). Not the page,
# which holds no data and must load for a Cognito sign-in, nor the CORS preflights.
PROTECTED = route_auth(get_settings().auth)


@lru_cache(maxsize=1)
def get_model():
    from chalicelib.inference.lazy import LazyModel
    settings = get_settings()
    return LazyModel(settings.model_path, settings.packages_path, settings.backend,
                     hint=settings.store_hint())


@lru_cache(maxsize=1)
def get_service():
    from chalicelib.service import XrayService
    return XrayService(get_settings(), get_model())


@app.middleware("http")
def label_and_log(event, get_response):
    """Every answer is labelled (JSON unless a view says otherwise: Chalice leaves the header to
    API Gateway's default), carries the CORS headers its Origin is allowed, and is observed: one
    request line, its EMF metrics and, for a classification, an audit line, nothing from the
    body (chalicelib/observability; a view notes what it decoded and how long each step took)."""
    observation = observed.begin()
    response = get_response(event)
    response.headers.setdefault("Content-Type", "application/json")
    # CORS for the allowlisted origins on every answer, errors included (chalicelib/web/cors.py)
    for name, value in cors.response_headers(event.headers.get("origin"),
                                             get_settings().cors_origins).items():
        previous = response.headers.get(name)
        response.headers[name] = f"{previous}, {value}" if name == "Vary" and previous else value
    observed.finish(observation, event, response, lambda_context=app.lambda_context,
                    stage=get_settings().stage, model=get_model)
    return response


@app.route("/", methods=["GET"])
def upload_page():
    """The upload page (chalicelib/web/page.html): pick or drop an X-ray, see findings and
    heatmap. No authorizer: it holds no data, and a Cognito sign-in returns to it."""
    from chalicelib.web import page
    settings = get_settings()
    return Response(body=page.render(settings.max_upload_bytes, settings.auth),
                    headers=dict(page.headers(settings.max_upload_bytes, settings.auth)))


@app.route("/xray", methods=["POST"], content_types=ROUTE_CONTENT_TYPES, **PROTECTED)
def classify_xray():
    """?heatmap=top (or a label) adds a Grad-CAM heatmap; without it no gradient is computed."""
    request = app.current_request
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
    observed.note(image=result["image"], timings_ms=result["timings_ms"])
    return result


@app.route("/preview", methods=["POST"], content_types=ROUTE_CONTENT_TYPES, **PROTECTED)
def preview_xray():
    """The decoded image as a small PNG (for DICOM, which browsers cannot show). No model."""
    request = app.current_request
    from chalicelib.web.uploads import upload_bytes
    result = get_service().preview(upload_bytes(request), request.headers.get("content-type", ""))
    observed.note(image=result["image"])
    return result


@app.route("/health", methods=["GET"], **PROTECTED)
def health():
    status = get_model().status()
    return {"live": True, "ready": status["state"] == "ready", "model": status}


@app.route("/model", methods=["GET"], **PROTECTED)
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
