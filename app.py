"""Chest X-ray classification API. Routes only; the work is in chalicelib.

Nothing heavy is imported here: `chalice deploy` and `chalice package` import this file on a
machine without torch, and Lambda's init phase should not pay for what a request may not need.
"""
from functools import lru_cache

from chalice import Chalice, Rate, Response

from chalicelib.dicomweb import STOW_CONTENT_TYPES
from chalicelib.imaging.formats import ROUTE_CONTENT_TYPES
from chalicelib.jobs.events import notifier_pattern, worker_pattern
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
# multipart/related: STOW-RS bodies, and the SRs it answers with.
app.api.binary_types = sorted(set(app.api.binary_types) | set(ROUTE_CONTENT_TYPES)
                              | set(STOW_CONTENT_TYPES))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()


# Who may call the data routes (XRAY_AUTH, per stage: chalicelib/web/auth.py). Not the page,
# which holds no data and must load for a Cognito sign-in, nor the contract, nor the CORS
# preflights.
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


@lru_cache(maxsize=1)
def get_job_store():
    from chalicelib.errors import JobsUnavailable
    from chalicelib.jobs.clients import client
    from chalicelib.jobs.store import JobStore, reachable
    from chalicelib.settings import JOBS_BUCKET
    jobs = get_settings().jobs
    if not jobs.enabled:
        raise JobsUnavailable(f"This stage takes no upload jobs ({JOBS_BUCKET} is not set): "
                              "send images of up to "
                              f"{get_settings().max_upload_bytes:,} bytes to POST /xray")
    with reachable(jobs.bucket):  # a broken profile or configuration: a 503, not a 500
        return JobStore(client("s3"), jobs.bucket)


@lru_cache(maxsize=1)
def get_job_service():
    from chalicelib.jobs.service import JobService
    return JobService(get_settings().jobs, get_job_store())


@lru_cache(maxsize=1)
def get_upload_origin():
    """The jobs bucket's upload origin, for the page's CSP: asked of a botocore client, which
    takes tens of milliseconds to make, so once per process rather than once per page."""
    from chalicelib.jobs.clients import upload_origin
    return upload_origin(get_settings().jobs.bucket)


@lru_cache(maxsize=1)
def get_openapi():
    """The API's contract, built once per process from this app's route table."""
    from chalicelib.openapi.document import build
    return build(app.routes, get_settings(), app.app_name)


def get_worker(context=None):
    """The worker for one event: context is the Lambda context of that invocation (Chalice
    sets app.lambda_context for HTTP requests only), whose remaining time bounds the wait for
    the model. Cheap to make: the service, model and store are the cached ones."""
    from chalicelib.inference.lazy import wait_deadline
    from chalicelib.jobs.worker import Worker
    service = get_service()

    def classify(body, content_type, max_bytes, force):
        return service.classify(body, content_type, max_bytes=max_bytes,
                                deadline=wait_deadline(context), force=force)

    def ready():
        get_model().get(wait_deadline(context))

    return Worker(get_settings().jobs, get_job_store(), classify, ready,
                  stage=get_settings().stage)


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
    limit, auth, jobs = settings.max_upload_bytes, settings.auth, settings.jobs
    # larger files go the jobs way, straight to the bucket
    origin = get_upload_origin() if page.job_limit(limit, jobs) else None
    return Response(body=page.render(limit, auth, jobs),
                    headers=dict(page.headers(limit, auth, jobs, origin)))


@app.route("/openapi.json", methods=["GET"])
def openapi_document():
    """This API's contract, OpenAPI 3.1, built from the routes themselves (chalicelib/openapi).
    No authorizer: like the page it holds no data, only what a caller needs to know before it
    can call, its credentials included; with the request's own base URL as its server."""
    from chalicelib.openapi.document import served
    from chalicelib.web.links import base_url
    return served(get_openapi(), base_url(app.current_request, get_settings().jobs.public_url))


@app.route("/xray", methods=["POST"], content_types=ROUTE_CONTENT_TYPES, **PROTECTED)
def classify_xray():
    """The findings as JSON, or (Accept) as a DICOM SR or a FHIR Bundle (chalicelib/reports).
    ?heatmap=top (or a label) adds a Grad-CAM heatmap to the JSON; without it no gradient is
    computed. ?force=true classifies a DICOM the model was not made for (the answer says so)."""
    request = app.current_request
    params = request.query_params or {}
    heatmap = params.get("heatmap")
    from chalicelib.errors import InvalidParameter, ModelUnavailable
    from chalicelib.inference.lazy import wait_deadline
    from chalicelib.reports.negotiation import JSON, negotiate
    from chalicelib.reports.respond import respond
    from chalicelib.web.params import flag
    from chalicelib.web.uploads import upload_bytes
    media = negotiate(request.headers.get("accept"))  # a 406 before any work
    if heatmap is not None and media != JSON:
        raise InvalidParameter(f"A heatmap is part of the JSON answer only: ask for "
                               f"Accept: {JSON} with ?heatmap, or leave ?heatmap out.")
    try:  # a slow model store: a JSON 503 before the function's deadline, never a gateway 504
        classification = get_service().classify(
            upload_bytes(request), request.headers.get("content-type", ""), heatmap=heatmap,
            deadline=wait_deadline(app.lambda_context), force=flag(params, "force"))
    except ModelUnavailable as error:  # raised, it would lose its Retry-After header
        return error.response()
    answer = classification.answer
    observed.note(image=answer["image"], timings_ms=answer["timings_ms"])
    return respond(answer, classification.header, media)


@app.route("/studies", methods=["POST"], content_types=STOW_CONTENT_TYPES, **PROTECTED)
@app.route("/studies/{study}", methods=["POST"], content_types=STOW_CONTENT_TYPES, **PROTECTED)
def store_instances(study=None):
    """DICOMweb STOW-RS (PS3.18 10.5), the way a PACS or router pushes instances: each DICOM
    instance of the multipart/related body is classified (nothing is stored) and the answer is
    the Store Instances Response Module with each one's findings, or (Accept: multipart/related;
    type="application/dicom") their SRs (chalicelib/dicomweb). ?force=true as on /xray."""
    request = app.current_request
    from chalicelib.dicomweb import stow
    from chalicelib.errors import ModelUnavailable
    from chalicelib.inference.lazy import wait_deadline
    from chalicelib.web.params import flag
    from chalicelib.web.uploads import upload_bytes
    media = stow.negotiate(request.headers.get("accept"))  # a 406 before any work
    try:
        outcomes = stow.store(get_service(), upload_bytes(request),
                              request.headers.get("content-type", ""),
                              max_bytes=get_settings().max_upload_bytes, study=study,
                              force=flag(request.query_params, "force"),
                              deadline=wait_deadline(app.lambda_context),
                              reports=media == stow.MULTIPART_RELATED)
    except ModelUnavailable as error:  # raised, it would lose its Retry-After header
        return error.response()
    observed.note(**stow.notes(outcomes))
    return stow.respond(outcomes, media)


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


@app.route("/xray/jobs", methods=["POST"], content_types=["application/json"], **PROTECTED)
def create_job():
    """An upload job for a file of any size up to the stage's job limit: 202 with a presigned
    S3 POST to upload it with, and the status URL to poll (chalicelib/jobs/)."""
    from chalicelib.web.links import base_url
    from chalicelib.web.principal import principal_of
    request = app.current_request
    answer = get_job_service().create(request.raw_body,
                                      base_url(request, get_settings().jobs.public_url),
                                      requested_by=principal_of(request.context).as_log())
    return Response(body=answer, status_code=202)


@app.route("/xray/jobs/{job_id}", methods=["GET"], **PROTECTED)
def job_status(job_id):
    """The status, then the result: JSON, or (Accept) the result's DICOM SR or FHIR."""
    return get_job_service().answer(job_id, app.current_request.headers.get("accept"))


@app.route("/xray/jobs/{job_id}", methods=["DELETE"], **PROTECTED)
def delete_job(job_id):
    """The upload, the record and the result, deleted now."""
    get_job_service().delete(job_id)
    return Response(body="", status_code=204)


# CORS preflight, answered by the function itself (not by API Gateway's MOCK integration that
# Chalice's cors=True generates, which can only name one origin): see chalicelib/web/cors.py.
@app.route("/xray", methods=["OPTIONS"])
@app.route("/preview", methods=["OPTIONS"])
@app.route("/health", methods=["OPTIONS"])
@app.route("/model", methods=["OPTIONS"])
@app.route("/xray/jobs", methods=["OPTIONS"])
@app.route("/xray/jobs/{job_id}", methods=["OPTIONS"])
@app.route("/studies", methods=["OPTIONS"])
@app.route("/studies/{study}", methods=["OPTIONS"])
def preflight(job_id=None, study=None):
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


# The jobs path's functions (chalicelib/jobs/). S3 -> EventBridge -> these rules, on both deploy
# paths (`chalice package` refuses on_s3_event). The bucket is the stage's, read at import.
@app.on_cw_event(worker_pattern(get_settings().jobs.bucket), name="job_worker")
def job_worker(event):
    """Classifies an uploaded job (or a bucket batch input); in the VPC, beside EFS."""
    from chalicelib.observability.logging import logger
    outcome = get_worker(event.context).handle(event.to_dict())
    logger.info("job event", extra={"event": "job", "outcome": outcome})
    return {"outcome": outcome}


@app.on_cw_event(notifier_pattern(get_settings().jobs.bucket), name="job_notifier")
def job_notifier(event):
    """Sends a final job's e-mail and webhook; outside the VPC, so it needs no NAT."""
    from chalicelib.jobs.notify import handle
    return {"outcome": handle(event.to_dict(), get_settings().jobs, get_job_store())}


@app.schedule(Rate(get_settings().jobs.sweep_minutes, unit=Rate.MINUTES), name="job_sweeper")
def job_sweeper(event):
    """Requeues uploads whose event never came, releases dead claims, expires stale jobs."""
    if not get_settings().jobs.enabled:  # the schedule exists on every stage; the jobs may not
        return
    from chalicelib.jobs.sweeper import sweep
    sweep(get_settings().jobs, get_job_store())
