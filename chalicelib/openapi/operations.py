"""What the route table cannot say about each route: its answers (status -> media type ->
schema), the error classes it can raise, its query and path parameters. Keyed by (path,
method) as app.routes is; document.py refuses a route that has no entry here, and tests/openapi/
fails on an entry whose route is gone, so the table and app.py cannot drift apart.

Errors are named by their classes (chalicelib/errors.py): their status is the class's
STATUS_CODE and their description its docstring. What Chalice or API Gateway answer by
themselves (415 for a Content-Type the route does not list, 401/403 for a missing credential)
document.py adds from the route's own content_types and authorizer.
"""
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple, Type, Union

from chalice import ChaliceViewError

from chalicelib import errors
from chalicelib.reports.negotiation import DICOM_SR, FHIR, JSON, RESULT_TYPES
from chalicelib.web.params import FALSE, TRUE

DICOM_JSON = "application/dicom+json"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'
REPORT_SCHEMAS = {JSON: "Classification", DICOM_SR: "DicomSR", FHIR: "FhirBundle"}
# The schema of each result type a negotiating route answers in: a type added to
# negotiation.RESULT_TYPES without a schema is a KeyError on import
RESULT_SCHEMAS = {media: REPORT_SCHEMAS[media] for media in RESULT_TYPES}
STOW_SCHEMAS = {DICOM_JSON: "StoreInstancesResponse", MULTIPART_DICOM: "MultipartRelatedDicom"}
NO_BODY: Mapping[str, str] = {}

# The answer's headers, by name (document.py turns them into header objects)
HEADERS = {
    "Vary": "Accept: the answer's format follows the request's Accept header",
    "Allow": "The methods the path takes (a preflight without Origin)",
    "Access-Control-Allow-Origin": "The allowed origin (XRAY_CORS_ORIGINS)",
    "Access-Control-Allow-Methods": "The methods a browser may use",
    "Access-Control-Allow-Headers": "The request headers a browser may send",
    "Access-Control-Max-Age": "Seconds a browser may cache this preflight",
}

QUERY = {
    "heatmap": {
        "description": "Add a Grad-CAM heatmap to the JSON answer: 'top' (or empty, 1, true) "
                       "for the most probable finding, or a label of the model (GET /model). "
                       "JSON only: with another Accept it is a 400. Without it no gradient is "
                       "computed.",
        "schema": {"type": "string"}, "examples": {"top": {"value": "top"},
                                                   "label": {"value": "Cardiomegaly"}}},
    "force": {
        "description": "Classify a DICOM whose header says the model was not made for it "
                     "(422 otherwise); the answer's image.intended_use says 'forced'.",
        "schema": {"type": "string", "enum": list(TRUE + FALSE)}},
}

PATH_PARAMETERS = {
    "job_id": {"description": "The job's id, as POST /xray/jobs answered it (an id of another "
                              "form is a 404, like an unknown one)",
               "schema": {"type": "string"}},
    "study": {"description": "The Study Instance UID every instance must belong to",
              "schema": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$", "maxLength": 64}},
}


@dataclass(frozen=True)
class Answer:
    description: str
    content: Mapping[str, str] = field(default_factory=dict)  # media type -> schema name
    headers: Tuple[str, ...] = ()


ErrorClass = Union[Type[ChaliceViewError], str]  # a class, or the name of one in errors.py


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    answers: Mapping[int, Answer]
    errors: Tuple[ErrorClass, ...] = ()
    query: Tuple[str, ...] = ()
    # the schema of a request body whose content type is not an image type (those are bytes)
    body: Optional[str] = None


def classification(description: str) -> Answer:
    return Answer(description, RESULT_SCHEMAS, ("Vary",))


IMAGE_ERRORS = (errors.InvalidImage, errors.PayloadTooLarge, errors.UnsupportedImageType,
                errors.UnclassifiableImage)
MODEL_ERRORS = (errors.ModelUnavailable, errors.ModelStillLoading)
JOBS_DOWN = (errors.JobsUnavailable,)
STOW_ANSWERS = {
    200: Answer("Every instance classified", STOW_SCHEMAS, ("Vary",)),
    202: Answer("Some instances classified, some not (Failed SOP Sequence; with Accept "
                "multipart/related, a last application/dicom+json part says which)",
                STOW_SCHEMAS, ("Vary",)),
    409: Answer("No instance classified (each has its Failure Reason): the module, whatever "
                "Accept asked for", {DICOM_JSON: "StoreInstancesResponse"}, ("Vary",)),
}
STOW_ERRORS: Tuple[ErrorClass, ...] = (
    errors.InvalidStowRequest, errors.NotAcceptable, errors.PayloadTooLarge) + MODEL_ERRORS

# (path, method) -> Operation. PREFLIGHT documents every OPTIONS route (one view answers them).
OPERATIONS: Dict[Tuple[str, str], Operation] = {
    ("/", "GET"): Operation(
        "The upload page", "page",
        {200: Answer("A self-contained HTML page", {"text/html": "Page"})}),
    ("/openapi.json", "GET"): Operation(
        "This contract", "service",
        {200: Answer("The OpenAPI 3.1 document of this stage", {JSON: "OpenApiDocument"})}),
    ("/xray", "POST"): Operation(
        "Classify one radiograph", "classification",
        {200: classification("The findings, in the format Accept asked for")},
        IMAGE_ERRORS + (errors.InvalidParameter, errors.NotAChestRadiograph,
                        errors.UnsupportedView, errors.NotAcceptable) + MODEL_ERRORS,
        query=("heatmap", "force")),
    ("/preview", "POST"): Operation(
        "Decode an image to a small PNG", "classification",
        {200: Answer("What was decoded, and its preview", {JSON: "Preview"})},
        IMAGE_ERRORS),
    ("/health", "GET"): Operation(
        "Liveness, readiness and the model's load state", "service",
        {200: Answer("Always 200 while the function runs; ready says whether the model is",
                     {JSON: "Health"})}),
    ("/model", "GET"): Operation(
        "The served model's manifest", "service",
        {200: Answer("manifest.json of the served model and its load state",
                     {JSON: "ModelManifest"})},
        (errors.ModelUnavailable,)),
    ("/xray/jobs", "POST"): Operation(
        "Create an upload job (for files over the synchronous limit)", "jobs",
        {202: Answer("The job, with the presigned S3 POST to upload the file with",
                     {JSON: "JobCreated"})},
        (errors.InvalidJobRequest, errors.PayloadTooLarge, errors.UnsupportedImageType)
        + JOBS_DOWN, body="JobRequest"),
    ("/xray/jobs/{job_id}", "GET"): Operation(
        "A job's status, and its result once succeeded", "jobs",
        {200: Answer("The job as JSON, or (Accept) a succeeded job's result as its DICOM SR or "
                     "FHIR Bundle", {**RESULT_SCHEMAS, JSON: "JobView"}, ("Vary",))},
        (errors.NotAcceptable, errors.JobNotFound) + JOBS_DOWN),
    ("/xray/jobs/{job_id}", "DELETE"): Operation(
        "Delete a job, its upload and its result now", "jobs",
        {204: Answer("Deleted")},
        (errors.JobNotFound,) + JOBS_DOWN),
    ("/studies", "POST"): Operation(
        "DICOMweb STOW-RS: classify the instances of one request", "dicomweb",
        STOW_ANSWERS, STOW_ERRORS, query=("force",), body="MultipartRelatedDicom"),
    ("/studies/{study}", "POST"): Operation(
        "DICOMweb STOW-RS into one study: classify the instances of one request", "dicomweb",
        STOW_ANSWERS, STOW_ERRORS, query=("force",), body="MultipartRelatedDicom"),
}

PREFLIGHT = Operation(
    "CORS preflight", "cors",
    {204: Answer("Allowed: the CORS headers, or Allow without an Origin",
                 headers=("Allow", "Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
                          "Access-Control-Allow-Headers", "Access-Control-Max-Age"))},
    (errors.OriginNotAllowed,))

# The classes of chalicelib/errors.py that never reach a client (the notifier's), which no
# operation lists on purpose
INTERNAL = (errors.NotifierMisconfigured, errors.NotificationFailed)

def operation(path: str, method: str) -> Optional[Operation]:
    if method == "OPTIONS":
        return PREFLIGHT
    return OPERATIONS.get((path, method))
