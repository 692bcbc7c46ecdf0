"""The JSON Schemas (2020-12, the dialect of OpenAPI 3.1) of every answer and request body, as
the document's components/schemas.

Closed wherever the code builds the object itself (additionalProperties or unevaluatedProperties
false): a member added to an answer without being added here fails tests/openapi/, which
validates every real answer against these. Enumerations and patterns are the code's own
constants (statuses, formats, result types, model states, error classes), imported rather than
copied. The FHIR and DICOM JSON schemas are subsets: what this service produces, not the whole
of either standard.
"""
import inspect
from typing import Any, Dict, Iterable, List, Type

from chalice import ChaliceViewError

from chalicelib import errors
from chalicelib.dicomweb.stow import ANSWER_TAG, ERROR_TAG, PRIVATE_CREATOR
from chalicelib.imaging.formats import CONTENT_TYPES, DICOM, JPEG, PNG
from chalicelib.inference.intended_use import DEFAULT_ACCEPTS, FORCED, NOT_CHECKED, PASSED
from chalicelib.inference.lazy import LazyModel
from chalicelib.inference.store import MANIFEST_FORMAT
from chalicelib.jobs.layout import JOB_ID
from chalicelib.jobs.records import (
    AWAITING_UPLOAD,
    JOB_ABANDONED,
    STATUSES,
    SUCCEEDED,
    UPLOAD_NOT_RECEIVED,
)
from chalicelib.jobs.service import FIELDS
from chalicelib.settings import Settings

Schema = Dict[str, Any]


REF = "#/components/schemas/"
DATA_PNG = r"^data:image/png;base64,[A-Za-z0-9+/]+=*$"
SHA256 = "^[0-9a-f]{64}$"
MODEL_STATES = (LazyModel.NOT_LOADED, LazyModel.LOADING, LazyModel.READY, LazyModel.FAILED)
BACKENDS = ("onnxruntime", "torch")
# DICOM value representations (PS3.5 6.2), for the DICOM JSON model (PS3.18 F.2)
DICOM_VRS = ("AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD",
             "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI",
             "UL", "UN", "UR", "US", "UT", "UV")


def ref(name: str) -> Schema:
    return {"$ref": REF + name}


def closed(properties: Dict[str, Schema], required: Iterable[str], **more: Any) -> Schema:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False, **more}


def unit_interval(description: str = "") -> Schema:
    schema: Schema = {"type": "number", "minimum": 0, "maximum": 1}
    if description:
        schema["description"] = description
    return schema


def text(description: str, **more: Any) -> Schema:
    return {"type": "string", "description": description, **more}


def binary(media_type: str, description: str) -> Schema:
    """A body that is bytes, not JSON (format binary is what Swagger UI offers a file picker
    for; contentMediaType is 3.1's word for the same)."""
    return {"type": "string", "format": "binary", "contentMediaType": media_type,
            "description": description}


def unwrapped(doc: str) -> str:
    """A docstring's paragraphs, each on one line (its line breaks are the source's width)."""
    return "\n\n".join(" ".join(line.strip() for line in paragraph.splitlines())
                       for paragraph in doc.strip().split("\n\n"))


def describe(error: Type[ChaliceViewError]) -> str:
    return unwrapped(inspect.getdoc(error) or error.__name__)


def view_errors() -> List[Type[ChaliceViewError]]:
    """Every error class chalicelib/errors.py defines, in the order it defines them."""
    found = [value for value in vars(errors).values()
             if inspect.isclass(value) and issubclass(value, ChaliceViewError)
             and value.__module__ == errors.__name__]
    return found


def error_schemas() -> Dict[str, Schema]:
    client_codes = [error.__name__ for error in view_errors()
                    if issubclass(error, errors.ClientError) and error is not errors.ClientError]
    return {
        "Error": closed({"Code": text("The error's class: what went wrong, for a program"),
                         "Message": text("What went wrong and what to change, for a person")},
                        ["Code", "Message"],
                        description="Every error this service answers (chalicelib/errors.py, "
                                    "Chalice's own, and API Gateway's as the deploy commands "
                                    "shape them)."),
        "JobError": closed({
            "Code": text("A classification's error class (" + ", ".join(client_codes) +
                         f"), or the jobs path's own: {UPLOAD_NOT_RECEIVED} (no upload before "
                         f"the URL expired), {JOB_ABANDONED} (no worker finished it), "
                         "UploadReplaced, UploadSizeMismatch, InternalError"),
            "Message": text("What went wrong and what to do")}, ["Code", "Message"]),
    }


def classification_schemas() -> Dict[str, Schema]:
    formats = [PNG, JPEG, DICOM]
    return {
        "ModelIdentity": closed({
            "name": {"type": "string"}, "version": {"type": "string"},
            "sha256": text("sha256 of the weights that ran", pattern=SHA256),
            "trained": {"type": "boolean"},
            "warning": text("Present for an untrained (demo) model: its findings mean nothing"),
        }, ["name", "version", "sha256", "trained"]),
        "Finding": closed({
            "label": {"type": "string"},
            "probability": unit_interval("The model's sigmoid output for this label"),
            "threshold": unit_interval("At or above it, the label is positive"),
        }, ["label", "probability", "threshold"]),
        "IntendedUse": {
            **closed({
                "result": {"enum": [PASSED, NOT_CHECKED, FORCED]},
                "reason": text("Why it was not checked (PNG and JPEG carry no header)"),
                "refusal": {**ref("Error"),
                            "description": "The refusal ?force=true overrode (422 otherwise)"},
            }, ["result"]),
            "allOf": [
                {"if": {"properties": {"result": {"const": FORCED}}},
                 "then": {"required": ["refusal"]}},
                {"if": {"properties": {"result": {"const": NOT_CHECKED}}},
                 "then": {"required": ["reason"]}},
            ],
            "description": "The model's intended use (manifest 'accepts'; defaults: "
                           + "; ".join(f"{key} {', '.join(values)}"
                                       for key, values in DEFAULT_ACCEPTS.items())
                           + ") checked against a DICOM's header."},
        "ImageDescription": {
            "type": "object",
            "properties": {
                "format": {"enum": formats},
                "width": {"type": "integer", "minimum": 1,
                          "description": "The file's own width, whatever was decoded"},
                "height": {"type": "integer", "minimum": 1,
                           "description": "The file's own height, whatever was decoded"},
                "decoded": closed({
                    "level": {"type": "integer", "minimum": 1,
                              "description": "Each side divided by 2^level (rounded up)"},
                    "width": {"type": "integer", "minimum": 1},
                    "height": {"type": "integer", "minimum": 1},
                }, ["level", "width", "height"], description=(
                    "Only where the stage decodes no finer than the model needs "
                    "(XRAY_REDUCED_DECODING) and a coarser JPEG 2000 resolution level or JPEG "
                    "DCT scale was decoded: what the model's input was made from.")),
                "mode": text("PNG/JPEG: Pillow's mode of the file"),
                "bits": {"enum": [8, 16]},
                "photometric": text("DICOM PhotometricInterpretation"),
                "bits_stored": {"type": "integer", "minimum": 1},
                "transfer_syntax": {"type": "string"},
                "windowed": {"type": "boolean",
                             "description": "DICOM: a VOI window was applied"},
                "modality": text("DICOM Modality (0008,0060), when present"),
                "body_part": text("DICOM BodyPartExamined (0018,0015), when present"),
                "view": text("DICOM ViewPosition (0018,5101), when present"),
                "intended_use": ref("IntendedUse"),
            },
            "required": ["format", "width", "height"],
            "if": {"properties": {"format": {"const": DICOM}}},
            "then": {"required": ["photometric", "bits_stored", "transfer_syntax", "windowed"]},
            "else": {"required": ["mode", "bits"]},
            "unevaluatedProperties": False,
            "description": "What was decoded. Never a patient or study field."},
        "Timings": closed({name: {"type": "number", "minimum": 0}
                           for name in ("decode", "preprocess", "inference", "model_load",
                                        "heatmap")},
                          ["decode", "preprocess", "inference", "model_load"],
                          description="Milliseconds per step; heatmap only with ?heatmap"),
        "Heatmap": closed({
            "method": {"const": "Grad-CAM"},
            "target_layer": {"type": "string"},
            "label": text("The finding explained"),
            "probability": unit_interval(), "threshold": unit_interval(),
            "size": {"type": "array", "items": {"type": "integer", "minimum": 1},
                     "minItems": 2, "maxItems": 2,
                     "description": "The overlay's [width, height]: what the model saw"},
            "cam": {"type": "array", "minItems": 1,
                    "items": {"type": "array", "minItems": 1, "items": unit_interval()},
                    "description": "The map at the target layer's resolution, 0..1"},
            "peak": {"type": "number", "minimum": 0,
                     "description": "0: no region raised this label's score"},
            "png": text("The overlay on the preprocessed image", pattern=DATA_PNG),
        }, ["method", "target_layer", "label", "probability", "threshold", "size", "cam", "peak",
            "png"]),
        "Classification": {
            **closed({
                "model": ref("ModelIdentity"),
                "findings": {"type": "array", "items": ref("Finding"),
                             "description": "Every named output, by probability, highest "
                                            "first"},
                "positive": {"type": "array", "items": {"type": "string"},
                             "description": "The labels at or above their threshold"},
                "image": {"allOf": [ref("ImageDescription")], "required": ["intended_use"]},
                "timings_ms": ref("Timings"),
                "heatmap": ref("Heatmap"),
            }, ["model", "findings", "positive", "image", "timings_ms"]),
            "dependentSchemas": {"heatmap": {"properties": {
                "timings_ms": {"required": ["heatmap"]}}}},
            "description": "POST /xray's JSON answer (and a succeeded job's result)."},
        "Preview": closed({
            "image": {"allOf": [ref("ImageDescription")],
                      "not": {"required": ["intended_use"]}},
            "preview": closed({"width": {"type": "integer", "minimum": 1},
                               "height": {"type": "integer", "minimum": 1},
                               "png": text("8-bit grayscale PNG", pattern=DATA_PNG)},
                              ["width", "height", "png"]),
        }, ["image", "preview"]),
    }


def service_schemas() -> Dict[str, Schema]:
    required = ("format", "name", "version", "trained", "architecture", "labels", "thresholds",
                "input", "preprocessing", "weights", "provenance", "state")
    named = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    return {
        "ModelStatus": closed({
            "state": {"enum": list(MODEL_STATES)},
            "path": text("The model folder read"),
            "attempts": {"type": "integer", "minimum": 0},
            "loading_s": {"type": "number", "minimum": 0},
            "error": text("Why the last load failed"),
            "retry_in_s": {"type": "number", "minimum": 0},
            "model": ref("ModelIdentity"),
            "backend": {"enum": list(BACKENDS)},
            "load_ms": {"type": "number", "minimum": 0},
        }, ["state", "path", "attempts"]),
        "Health": closed({"live": {"const": True}, "ready": {"type": "boolean"},
                          "model": ref("ModelStatus")}, ["live", "ready", "model"]),
        "ModelManifest": closed({
            "format": {"const": MANIFEST_FORMAT},
            "name": {"type": "string"}, "version": {"type": "string"},
            "trained": {"type": "boolean"},
            "architecture": named,
            "labels": {"type": "array", "items": {"type": "string"},
                       "description": "One per output, in order; '' for an untrained one"},
            "thresholds": {"type": "object", "additionalProperties": unit_interval()},
            "input": {"type": "object", "properties": {
                "channels": {"enum": [1, 3]}, "size": {"type": "integer", "minimum": 1}},
                "required": ["channels", "size"]},
            "preprocessing": {"type": "object", "properties": {"recipe": {"type": "string"}},
                              "required": ["recipe"]},
            "weights": {"type": "object", "properties": {
                "file": {"type": "string"}, "format": {"const": "safetensors"},
                "sha256": {"type": "string", "pattern": SHA256}},
                "required": ["file", "format", "sha256"]},
            "onnx": {"type": "object", "properties": {
                "file": {"type": "string"}, "sha256": {"type": "string", "pattern": SHA256}},
                "required": ["file", "sha256"]},
            "accepts": closed({key: {"type": "array", "items": {"type": "string"}, "minItems": 1}
                               for key in DEFAULT_ACCEPTS}, []),
            "provenance": {"type": "object"},
            "state": {"enum": list(MODEL_STATES)},
        }, required, description="The served model's manifest.json and its load state"),
        "Page": {"type": "string", "contentMediaType": "text/html"},
        "OpenApiDocument": {"type": "object", "required": ["openapi", "info", "paths"],
                            "properties": {"openapi": {"type": "string",
                                                       "pattern": r"^3\.1\.\d+$"}},
                            "description": "This document"},
    }


def job_schemas(settings: Settings) -> Dict[str, Schema]:
    jobs = settings.jobs
    request_fields: Dict[str, Schema] = {
        "content_type": {"enum": list(CONTENT_TYPES),
                         "description": "The type of the file you will upload"},
        "size": {"type": "integer", "minimum": 1, "maximum": jobs.max_bytes,
                 "description": "The file's exact size in bytes (the upload must match)"},
        "force": {"type": "boolean", "default": False,
                  "description": "Classify a DICOM the model was not made for, as POST "
                                 "/xray?force=true does"},
        "notify": closed({"email": text("One address; needs the stage's SES sender",
                                        format="email"),
                          "webhook": text("https:// (http:// only for localhost); needs the "
                                          "stage's webhook secret", format="uri")}, []),
    }
    job_id = {"type": "string", "pattern": f"^{JOB_ID.pattern}$"}
    stamp = {"type": "string", "format": "date-time"}
    return {
        # the fields the service reads (jobs.service.FIELDS): one without a schema here is a
        # KeyError when the document is built, one with a schema but not read is left out
        "JobRequest": closed({name: request_fields[name] for name in FIELDS},
                             ["content_type", "size"]),
        "PresignedUpload": closed({
            "method": {"const": "POST"},
            "url": {"type": "string", "format": "uri"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"},
                       "required": ["key", "Content-Type"],
                       "description": "Send them all, then the file last, as "
                                      "multipart/form-data"},
            "max_bytes": {"type": "integer", "minimum": 1},
            "expires_at": stamp,
        }, ["method", "url", "fields", "max_bytes", "expires_at"]),
        "JobCreated": closed({"job_id": job_id, "status": {"const": AWAITING_UPLOAD},
                              "upload": ref("PresignedUpload"),
                              "status_url": {"type": "string", "format": "uri"}},
                             ["job_id", "status", "upload", "status_url"]),
        "JobView": {
            **closed({"job_id": job_id, "status": {"enum": list(STATUSES)},
                      "created_at": stamp, "updated_at": stamp,
                      "result": ref("Classification"), "error": ref("JobError")},
                     ["job_id", "status", "created_at", "updated_at"]),
            "if": {"properties": {"status": {"const": SUCCEEDED}}},
            "then": {"required": ["result"], "not": {"required": ["error"]}},
            "else": {"not": {"required": ["result"]}}},
    }


def report_schemas() -> Dict[str, Schema]:
    coding = {"type": "object", "properties": {"system": {"type": "string"},
                                               "code": {"type": "string"},
                                               "display": {"type": "string"}},
              "required": ["code"]}
    concept = {"type": "object", "properties": {
        "coding": {"type": "array", "items": ref("FhirCoding"), "minItems": 1},
        "text": {"type": "string"}}, "anyOf": [{"required": ["coding"]},
                                               {"required": ["text"]}]}
    reference = {"type": "object", "properties": {"reference": {"type": "string"}},
                 "required": ["reference"]}

    def resource(kind: str, required: List[str], **properties: Schema) -> Schema:
        return {"type": "object",
                "properties": {"resourceType": {"const": kind}, "id": {"type": "string"},
                               **properties},
                "required": ["resourceType", *required]}

    by_type = ("DiagnosticReport", "Observation", "Device")
    return {
        "DicomSR": binary("application/dicom",
                          "A DICOM Part 10 Comprehensive 3D SR (TID 1500 Measurement Report, "
                          "IHE AI Results): one qualitative evaluation per finding; for a DICOM "
                          "input it joins the input's study."),
        "FhirCoding": coding,
        "FhirCodeableConcept": concept,
        "FhirReference": reference,
        "FhirDiagnosticReport": resource(
            "DiagnosticReport", ["status", "code"], status={"const": "preliminary"},
            category={"type": "array", "items": ref("FhirCodeableConcept")},
            code=ref("FhirCodeableConcept"),
            result={"type": "array", "items": ref("FhirReference")}),
        "FhirObservation": resource(
            "Observation", ["status", "code"], status={"type": "string"},
            code=ref("FhirCodeableConcept"),
            valueQuantity={"type": "object", "properties": {"value": {"type": "number"}},
                           "required": ["value"]},
            interpretation={"type": "array", "items": ref("FhirCodeableConcept")}),
        "FhirDevice": resource("Device", []),
        "FhirBundle": {
            "type": "object",
            "properties": {
                "resourceType": {"const": "Bundle"},
                "id": {"type": "string"},
                "type": {"type": "string"},
                "entry": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "properties": {"fullUrl": {"type": "string"},
                                   "resource": {
                                       "type": "object",
                                       "properties": {"resourceType": {"type": "string"}},
                                       "required": ["resourceType"],
                                       "allOf": [{"if": {"properties": {
                                           "resourceType": {"const": kind}}},
                                           "then": ref("Fhir" + kind)} for kind in by_type]}},
                    "required": ["resource"]}},
            },
            "required": ["resourceType", "type", "entry"],
            "description": "A FHIR R4 Bundle: a preliminary DiagnosticReport, one Observation "
                           "per finding, the model's Device (a subset of FHIR's schema: the "
                           "resources this service writes, by their required members)."},
        "DicomJsonAttribute": {
            "type": "object",
            "properties": {"vr": {"enum": list(DICOM_VRS)},
                           "Value": {"type": "array"},
                           "InlineBinary": {"type": "string"},
                           "BulkDataURI": {"type": "string"}},
            "required": ["vr"],
            "additionalProperties": False},
        "DicomJsonDataset": {
            "type": "object",
            "propertyNames": {"pattern": "^[0-9A-F]{8}$"},
            "additionalProperties": ref("DicomJsonAttribute"),
            "description": "A dataset in the DICOM JSON model (PS3.18 F.2): tag -> attribute"},
        "StoreInstancesResponse": {
            "allOf": [ref("DicomJsonDataset")],
            "properties": {
                "00081190": {**ref("DicomJsonAttribute"),
                             "description": "Retrieve URL: empty, nothing is stored here"},
                "00081198": sequence("FailedSopItem", "Failed SOP Sequence"),
                "00081199": sequence("ReferencedSopItem", "Referenced SOP Sequence"),
            },
            "anyOf": [{"required": ["00081199"]}, {"required": ["00081198"]}],
            "description": "PS3.18's Store Instances Response Module: the Referenced SOP "
                           "Sequence (0008,1199) for the instances classified, each with its "
                           "findings; the Failed SOP Sequence (0008,1198) for the rest, each "
                           "with a Failure Reason (0008,1197, PS3.18 Table I.2-2)."},
        "ReferencedSopItem": {
            "allOf": [ref("DicomJsonDataset")],
            "properties": {
                ANSWER_TAG: private("ANSWER", "Classification",
                                    "The instance's findings: what POST /xray answers for it"),
            },
            "required": ["00081150", "00081155", ANSWER_TAG]},
        "FailedSopItem": {
            "allOf": [ref("DicomJsonDataset")],
            "properties": {
                "00081197": {"type": "object", "properties": {
                    "vr": {"const": "US"},
                    "Value": {"type": "array", "items": {"type": "integer"},
                              "minItems": 1, "maxItems": 1}},
                    "required": ["vr", "Value"], "description": "Failure Reason"},
                ERROR_TAG: private("ERROR", "Error", "Why: the error POST /xray would answer"),
            },
            "required": ["00081197", ERROR_TAG]},
        "MultipartRelatedDicom": binary(
            'multipart/related; type="application/dicom"',
            "One or more DICOM Part 10 instances, each a part of type application/dicom "
            "(PS3.18 STOW-RS)"),
    }


def sequence(item: str, description: str) -> Schema:
    return {"type": "object", "description": description,
            "properties": {"vr": {"const": "SQ"}, "Value": {"type": "array", "items": ref(item)}},
            "required": ["vr", "Value"]}


def private(name: str, schema: str, description: str) -> Schema:
    """A private element of ours (creator PRIVATE_CREATOR) holding JSON text."""
    return {"type": "object", "description": f"{description} (private {name} element, "
                                             f"creator {PRIVATE_CREATOR})",
            "properties": {"vr": {"const": "UT"},
                           "Value": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                               "type": "string", "contentMediaType": "application/json",
                               "contentSchema": ref(schema)}}},
            "required": ["vr", "Value"]}


def image_body(media_type: str) -> Schema:
    return binary(media_type, "The image's bytes as they are (not a form, not base64)")


def components(settings: Settings) -> Dict[str, Schema]:
    return {**error_schemas(), **classification_schemas(), **service_schemas(),
            **job_schemas(settings), **report_schemas()}
