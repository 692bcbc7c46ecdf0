"""The requests the contract tests send, each with the status it must get: every route, every
answer and every error the document lists, over the shared radiographs and DICOMs made for the
refusals. Four stages of the app, each with its own fresh getters: "loading" (the model not
loaded yet), "main" (the demo model, no jobs bucket, one CORS origin), "jobs" (a moto jobs stack)
and "no_model" (an empty model store). A stage runs its cases in the order given.

The preflight cases are made for every OPTIONS route app.routes holds, and the STOW-RS cases
only where app.routes holds those routes (they come with their own branch)."""
import io
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Union

from chalicelib.inference.lazy import ANSWER_MARGIN_S
from chalicelib.reports.negotiation import DICOM_SR, FHIR, JSON
from chalicelib.settings import DEFAULT_MAX_UPLOAD_BYTES
from lambda_sim.context import LambdaContext
from tests.support.contract import Exchange, through_client, through_lambda
from tests.support.dicom_factory import make_dicom
from tests.support.fixtures import DCM_MONO2, PNG_CARDIOMEGALY, PNG_NOFINDING, jpeg_of

ORIGIN = "https://viewer.example.org"     # the main stage's XRAY_CORS_ORIGINS
OTHER_ORIGIN = "https://elsewhere.example.org"
JOB_LIMIT = 16 * 1024 * 1024              # the jobs stage's XRAY_JOB_MAX_BYTES
UNKNOWN_JOB = "A" * 32                    # a well-formed id no job has
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
BOUNDARY = "contract-test-boundary"

# What a document may list that no local run can answer, and why: API Gateway's own refusals
# (chalicelib/openapi/gateway.py), which `chalice local` and Chalice's test client never make
GATEWAY_ONLY = "API Gateway answers it before the function runs; locally nothing enforces "
NOT_REPRODUCIBLE = {
    "Unauthorized": GATEWAY_ONLY + "the Cognito authorizer",
    "MissingAuthenticationToken": GATEWAY_ONLY + "the IAM authorizer",
    "InvalidSignature": GATEWAY_ONLY + "the IAM authorizer",
    "ExpiredToken": GATEWAY_ONLY + "the IAM authorizer",
    "AccessDenied": GATEWAY_ONLY + "IAM policies",
    "InvalidApiKey": GATEWAY_ONLY + "API keys",
    "QuotaExceeded": GATEWAY_ONLY + "usage plans",
    "Throttled": GATEWAY_ONLY + "a request rate",
    "RequestTooLarge": GATEWAY_ONLY + "its 10 MB (the app's own limit, 413 PayloadTooLarge, is "
                                      "lower and is answered locally)",
    "IntegrationTimeout": GATEWAY_ONLY + "its 29 s",
}

Body = Union[bytes, Callable[[], bytes]]
Path = Union[str, Callable[["Stage"], str]]


@dataclass
class Stage:
    """One configuration of the app while its cases run."""
    name: str
    client: Any                   # chalice.test.Client
    module: Any                   # app.py
    jobs: Any = None              # tests.jobs.conftest.JobsApp on the jobs stage
    made: Dict[str, str] = field(default_factory=dict)  # job ids by kind

    def job(self, kind: str) -> str:
        """A job in the given state, made once: awaiting (created), succeeded (a radiograph
        uploaded and classified by the worker), failed (garbage uploaded)."""
        if kind not in self.made:
            from tests.support.jobs import upload
            body, content_type = {"awaiting": (PNG_CARDIOMEGALY.read_bytes(), "image/png"),
                                  "succeeded": (PNG_NOFINDING.read_bytes(), "image/png"),
                                  "failed": (b"\x89PNG\r\n\x1a\n" + b"\0garbage" * 64,
                                             "image/png")}[kind]
            answer = self.jobs.job(content_type, len(body))
            if kind != "awaiting":
                assert upload(answer["upload"], body).status_code == 204
                for event in self.jobs.stack.worker_events():
                    self.jobs.deliver(event)
            self.made[kind] = answer["job_id"]
        return self.made[kind]


@dataclass(frozen=True)
class Case:
    name: str
    stage: str
    status: int                   # what the case must be answered
    run: Callable[[Stage, str], Exchange]
    # a module whose absence on this branch makes this case's answer impossible yet
    needs_module: Optional[str] = None


def _bytes(body: Body) -> bytes:
    return body() if callable(body) else body


def _path(path: Path, stage: Stage) -> str:
    return path(stage) if callable(path) else path


def http(method: str, template: str, path: Optional[Path] = None, body: Body = b"",
         headers: Optional[Dict[str, str]] = None) -> Callable[[Stage, str], Exchange]:
    """Through Chalice's test client (path: with its parameters and query; the template's
    own by default)."""
    def run(stage: Stage, name: str) -> Exchange:
        return through_client(stage.client, name, method, template,
                              _path(path or template, stage), _bytes(body), headers)
    return run


def entry(method: str, template: str, body: Body = b"", headers: Optional[Dict[str, str]] = None,
          query: Optional[Dict[str, str]] = None,
          parameters: Optional[Callable[[Stage], Dict[str, str]]] = None,
          timeout_s: Optional[float] = None) -> Callable[[Stage, str], Exchange]:
    """Through the Lambda entry, app(event, context): binary answers and preflights.
    parameters: the path parameters; the path is the template with them filled in."""
    def run(stage: Stage, name: str) -> Exchange:
        values = parameters(stage) if parameters else None
        path = template
        for key, value in (values or {}).items():
            path = path.replace("{" + key + "}", value)
        context = LambdaContext(timeout_s=timeout_s) if timeout_s is not None else None
        return through_lambda(stage.module.app, name, method, template, path, _bytes(body),
                              headers, query, values, context)
    return run


def png(width: int, height: int) -> bytes:
    from PIL import Image
    out = io.BytesIO()
    Image.new("L", (width, height), 128).save(out, "PNG")
    return out.getvalue()


def dicom(**attributes: str) -> bytes:
    import numpy as np
    pixels = (np.arange(256 * 256, dtype=np.uint16).reshape(256, 256) % 256).astype(np.uint8)
    return make_dicom(pixels, **{"BodyPartExamined": "CHEST", "ViewPosition": "PA",
                                 **attributes})


def multipart(parts: List[bytes], boundary: str = BOUNDARY) -> bytes:
    out = b""
    for part in parts:
        out += (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part
                + b"\r\n")
    return out + f"--{boundary}--\r\n".encode()


def stow_type(boundary: str = BOUNDARY) -> str:
    return f"{MULTIPART_DICOM}; boundary={boundary}"


def study_of(body: bytes) -> str:
    import pydicom
    return str(pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True).StudyInstanceUID)


PNG = {"Content-Type": "image/png"}
DCM = {"Content-Type": "application/dicom"}


def main_cases() -> List[Case]:
    radiograph = PNG_CARDIOMEGALY.read_bytes

    def xray(name: str, status: int, body: Body, headers: Dict[str, str], query: str = "",
             **more: Any) -> Case:
        return Case(name, "main", status, http("POST", "/xray", "/xray" + query, body, headers),
                    **more)

    def preview(name: str, status: int, body: Body, headers: Dict[str, str]) -> Case:
        return Case(name, "main", status, http("POST", "/preview", body=body, headers=headers))

    return [
        xray("xray-png", 200, radiograph, PNG),
        xray("xray-jpeg", 200, lambda: jpeg_of(PNG_NOFINDING), {"Content-Type": "image/jpeg"}),
        xray("xray-dicom", 200, DCM_MONO2.read_bytes, DCM),
        xray("xray-octet-stream", 200, DCM_MONO2.read_bytes,
             {"Content-Type": "application/octet-stream"}),
        xray("xray-heatmap", 200, radiograph, PNG, "?heatmap=top"),
        xray("xray-accept-json", 200, radiograph, {**PNG, "Accept": JSON}),
        xray("xray-forced-lateral", 200, lambda: dicom(ViewPosition="LL"), DCM, "?force=true"),
        Case("xray-accept-sr", "main", 200,
             entry("POST", "/xray", DCM_MONO2.read_bytes, {**DCM, "Accept": DICOM_SR}),
             needs_module="chalicelib.reports.sr"),
        xray("xray-accept-fhir", 200, DCM_MONO2.read_bytes, {**DCM, "Accept": FHIR},
             needs_module="chalicelib.reports.fhir"),
        xray("xray-empty", 400, b"", PNG),
        xray("xray-truncated", 400, lambda: radiograph()[:50_000], PNG),
        xray("xray-unknown-heatmap-label", 400, radiograph, PNG, "?heatmap=NoSuchFinding"),
        xray("xray-heatmap-with-sr", 400, radiograph, {**PNG, "Accept": DICOM_SR},
             "?heatmap=top"),
        xray("xray-force-not-a-flag", 400, radiograph, PNG, "?force=maybe"),
        xray("xray-not-acceptable", 406, radiograph, {**PNG, "Accept": "text/csv"}),
        xray("xray-too-large", 413, lambda: b"\0" * (DEFAULT_MAX_UPLOAD_BYTES + 1),
             {"Content-Type": "application/octet-stream"}),
        xray("xray-garbage", 415, b"not an image at all", PNG),
        xray("xray-form", 415, radiograph, {"Content-Type": "multipart/form-data; boundary=x"}),
        xray("xray-unlisted-type", 415, b"hello", {"Content-Type": "text/plain"}),
        xray("xray-too-small", 422, lambda: png(16, 16), PNG),
        xray("xray-ct", 422, lambda: dicom(Modality="CT"), DCM),
        xray("xray-lateral", 422, lambda: dicom(ViewPosition="LL"), DCM),
        preview("preview-png", 200, radiograph, PNG),
        preview("preview-dicom", 200, DCM_MONO2.read_bytes, DCM),
        preview("preview-truncated", 400, lambda: DCM_MONO2.read_bytes()[:100_000], DCM),
        preview("preview-too-large", 413, lambda: b"\0" * (DEFAULT_MAX_UPLOAD_BYTES + 1),
                {"Content-Type": "application/octet-stream"}),
        preview("preview-mislabelled", 415, radiograph, {"Content-Type": "image/jpeg"}),
        preview("preview-unlisted-type", 415, b"hello", {"Content-Type": "text/plain"}),
        preview("preview-too-small", 422, lambda: png(16, 16), PNG),
        Case("health", "main", 200, http("GET", "/health")),
        Case("model", "main", 200, http("GET", "/model")),
        Case("page", "main", 200, http("GET", "/")),
        Case("openapi", "main", 200, http("GET", "/openapi.json")),
        Case("jobs-create-without-bucket", "main", 503,
             http("POST", "/xray/jobs", body=b'{"content_type": "image/png", "size": 10}',
                  headers={"Content-Type": "application/json"})),
        Case("jobs-status-without-bucket", "main", 503,
             http("GET", "/xray/jobs/{job_id}", f"/xray/jobs/{UNKNOWN_JOB}")),
        Case("jobs-delete-without-bucket", "main", 503,
             http("DELETE", "/xray/jobs/{job_id}", f"/xray/jobs/{UNKNOWN_JOB}")),
    ]


def preflight_cases(routes: Dict[str, Dict[str, Any]]) -> List[Case]:
    """Three per OPTIONS route: an allowed origin, no Origin (not a browser), a refused one."""
    cases = []
    for template, methods in routes.items():
        if "OPTIONS" not in methods:
            continue
        values = {name: UNKNOWN_JOB for name in methods["OPTIONS"].view_args}

        def parameters(stage: Stage, values: Dict[str, str] = values) -> Dict[str, str]:
            return values
        asked = {"Access-Control-Request-Method": "POST"}
        cases += [
            Case(f"preflight-allowed {template}", "main", 204,
                 entry("OPTIONS", template, headers={"Origin": ORIGIN, **asked},
                       parameters=parameters)),
            Case(f"preflight-no-origin {template}", "main", 204,
                 entry("OPTIONS", template, parameters=parameters)),
            Case(f"preflight-refused {template}", "main", 403,
                 entry("OPTIONS", template, headers={"Origin": OTHER_ORIGIN, **asked},
                       parameters=parameters)),
        ]
    return cases


def job_cases() -> List[Case]:
    json_type = {"Content-Type": "application/json"}

    def create(name: str, status: int, body: bytes, headers: Dict[str, str] = json_type) -> Case:
        return Case(name, "jobs", status, http("POST", "/xray/jobs", body=body, headers=headers))

    def status_of(name: str, status: int, kind: str, headers: Optional[Dict[str, str]] = None
                  ) -> Case:
        return Case(name, "jobs", status,
                    http("GET", "/xray/jobs/{job_id}",
                         lambda stage: f"/xray/jobs/{stage.job(kind)}", headers=headers))

    return [
        create("jobs-create", 202, b'{"content_type": "application/dicom", "size": 7200056}'),
        create("jobs-create-forced", 202, b'{"content_type": "application/dicom", "size": 1000, '
                                          b'"force": true}'),
        create("jobs-create-notify-nothing", 202,
               b'{"content_type": "image/png", "size": 1000, "notify": {}}'),
        create("jobs-create-not-json", 400, b"content_type=image/png"),
        create("jobs-create-unknown-field", 400,
               b'{"content_type": "image/png", "size": 10, "colour": "blue"}'),
        create("jobs-create-too-large", 413,
               f'{{"content_type": "image/png", "size": {JOB_LIMIT + 1}}}'.encode()),
        create("jobs-create-unsupported-type", 415, b'{"content_type": "text/plain", "size": 10}'),
        create("jobs-create-unlisted-type", 415, b"{}", {"Content-Type": "text/plain"}),
        status_of("jobs-status-awaiting", 200, "awaiting"),
        status_of("jobs-status-succeeded", 200, "succeeded"),
        status_of("jobs-status-failed", 200, "failed"),
        # whatever format a job's status answers in for these, the document must list it
        status_of("jobs-status-accept-sr", 200, "succeeded", {"Accept": DICOM_SR}),
        status_of("jobs-status-accept-fhir", 200, "succeeded", {"Accept": FHIR}),
        status_of("jobs-status-report-before-result", 406, "awaiting", {"Accept": DICOM_SR}),
        status_of("jobs-status-not-acceptable", 406, "succeeded", {"Accept": "text/csv"}),
        Case("jobs-status-unknown", "jobs", 404,
             http("GET", "/xray/jobs/{job_id}", f"/xray/jobs/{UNKNOWN_JOB}")),
        Case("jobs-status-malformed-id", "jobs", 404,
             http("GET", "/xray/jobs/{job_id}", "/xray/jobs/not-an-id")),
        Case("jobs-delete", "jobs", 204,
             http("DELETE", "/xray/jobs/{job_id}",
                  lambda stage: f"/xray/jobs/{stage.job('awaiting')}")),
        Case("jobs-delete-unknown", "jobs", 404,
             http("DELETE", "/xray/jobs/{job_id}", f"/xray/jobs/{UNKNOWN_JOB}")),
        Case("openapi-jobs", "jobs", 200, http("GET", "/openapi.json")),
    ]


def loading_cases(routes: Dict[str, Dict[str, Any]]) -> List[Case]:
    """A fresh app whose model is still loading when these requests' deadlines have come (a
    Lambda context with no more time than the answer's margin): the first starts the load."""
    cases = [Case("xray-model-still-loading", "loading", 503,
                  entry("POST", "/xray", PNG_CARDIOMEGALY.read_bytes, PNG,
                        timeout_s=ANSWER_MARGIN_S))]
    for template in (t for t in STOW_TEMPLATES if t in routes):
        values = {"study": study_of(DCM_MONO2.read_bytes())} if "{study}" in template else None
        cases.append(Case(f"stow-model-still-loading {template}", "loading", 503,
                          entry("POST", template, lambda: multipart([DCM_MONO2.read_bytes()]),
                                {"Content-Type": stow_type()},
                                parameters=(lambda stage, v=values: v) if values else None,
                                timeout_s=ANSWER_MARGIN_S)))
    return cases


def no_model_cases(routes: Dict[str, Dict[str, Any]]) -> List[Case]:
    cases = [
        Case("xray-no-model", "no_model", 503,
             http("POST", "/xray", body=PNG_CARDIOMEGALY.read_bytes, headers=PNG)),
        Case("model-no-model", "no_model", 503, http("GET", "/model")),
        Case("health-no-model", "no_model", 200, http("GET", "/health")),
        Case("openapi-no-model", "no_model", 200, http("GET", "/openapi.json")),
    ]
    for template in (t for t in STOW_TEMPLATES if t in routes):
        cases.append(Case(f"stow-no-model {template}", "no_model", 503,
                          http("POST", template, stow_path(template),
                               lambda: multipart([DCM_MONO2.read_bytes()]),
                               {"Content-Type": stow_type()})))
    return cases


STOW_TEMPLATES = ("/studies", "/studies/{study}")


def stow_path(template: str) -> Callable[["Stage"], str]:
    """The path a STOW-RS case posts to: /studies/{study} into the study of its instance."""
    return lambda stage: template.replace("{study}", study_of(DCM_MONO2.read_bytes()))


def stow_cases(routes: Dict[str, Dict[str, Any]]) -> List[Case]:
    """PS3.18 STOW-RS on each of its routes: 200 all stored (here: classified), 202 some failed,
    409 none; the answer in DICOM JSON, or the SRs with Accept multipart/related."""
    good, bad = DCM_MONO2.read_bytes, (lambda: b"not a DICOM file")
    stow = {"Content-Type": stow_type()}
    cases: List[Case] = []
    for template in (t for t in STOW_TEMPLATES if t in routes):
        path = stow_path(template)

        def studies(name: str, status: int, parts: Callable[[], List[bytes]],
                    headers: Dict[str, str] = stow, template: str = template,
                    path: Callable[["Stage"], str] = path) -> Case:
            return Case(f"{name} {template}", "main", status,
                        http("POST", template, path, lambda: multipart(parts()), headers))

        def multipart_answer(name: str, status: int, parts: Callable[[], List[bytes]],
                             template: str = template) -> Case:
            values = ({"study": study_of(good())} if "{study}" in template else None)
            return Case(f"{name} {template}", "main", status,
                        entry("POST", template, lambda: multipart(parts()),
                              {**stow, "Accept": MULTIPART_DICOM},
                              parameters=(lambda stage: values) if values else None))

        cases += [
            studies("stow-one", 200, lambda: [good()]),
            studies("stow-some-failed", 202, lambda: [good(), bad()]),
            studies("stow-none-classified", 409, lambda: [bad()]),
            multipart_answer("stow-srs", 200, lambda: [good()]),
            multipart_answer("stow-srs-some-failed", 202, lambda: [good(), bad()]),
            studies("stow-not-acceptable", 406, lambda: [good()],
                    {**stow, "Accept": "text/csv"}),
            studies("stow-no-boundary", 400, lambda: [good()],
                    {"Content-Type": MULTIPART_DICOM}),
            studies("stow-too-large", 413, lambda: [b"\0" * (DEFAULT_MAX_UPLOAD_BYTES + 1)]),
            studies("stow-unlisted-type", 415, lambda: [good()], {"Content-Type": "text/plain"}),
        ]
    if "/studies/{study}" in routes:
        cases.append(Case("stow-into-another-study", "main", 409,
                          http("POST", "/studies/{study}", "/studies/1.2.3.4.5",
                               lambda: multipart([good()]), stow)))
    return cases


def all_cases(routes: Dict[str, Dict[str, Any]]) -> List[Case]:
    cases = (loading_cases(routes) + main_cases() + preflight_cases(routes) + stow_cases(routes)
             + job_cases() + no_model_cases(routes))
    names = [case.name for case in cases]
    assert len(names) == len(set(names)), "two cases share a name"
    return cases
