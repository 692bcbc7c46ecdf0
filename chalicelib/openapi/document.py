"""The OpenAPI 3.1 document of the app's route table (app.routes: path -> method -> Chalice's
RouteEntry). What the route says about itself is read from it: its methods, its path
parameters, the request Content-Types it takes, its authorizer and API key requirement, its
docstring. What it answers comes from operations.py (statuses, schemas, error classes) and
schemas.py. A route with no entry in operations.py is refused (UndocumentedRoute) rather than
left out, so that a new route cannot be served undocumented.

Security follows the stage's XRAY_AUTH as app.py gave it to each route (chalicelib/web/auth.py),
with the AND of both mechanisms where a route needs both (Chalice's own Swagger lists them as
alternatives, which is not what API Gateway enforces). The Cognito authorizer's user pool ARNs
are left out: the document is public and they name the AWS account.
"""
import inspect
from collections import Counter
from typing import Any, Dict, List, Mapping, Tuple

from chalice.app import Authorizer, RouteEntry

import chalicelib
from chalicelib import errors
from chalicelib.imaging.formats import FORMAT_OF_CONTENT_TYPE, MISTAKEN_CONTENT_TYPES
from chalicelib.openapi import gateway
from chalicelib.openapi.operations import (
    HEADERS,
    PATH_PARAMETERS,
    QUERY,
    Answer,
    Operation,
    operation,
)
from chalicelib.openapi.schemas import (
    REF,
    Schema,
    components,
    describe,
    image_body,
    ref,
    unwrapped,
)
from chalicelib.settings import Settings
from chalicelib.web.page import API_KEY_HEADER

OPENAPI = "3.1.0"
ERROR_MEDIA = "application/json"
BODY_METHODS = ("POST", "PUT", "PATCH")
# Chalice's own refusal of a Content-Type a route does not list (its error code, not a class)
UNSUPPORTED_MEDIA_TYPE = ("UnsupportedMediaType", 415,
                          "Chalice's own: the request's Content-Type is none of those listed "
                          "under requestBody.")
API_KEY_SCHEME = "api_key"  # Chalice's name for api_key_required in its Swagger
SCHEME_DESCRIPTIONS = {
    "sigv4": "AWS Signature Version 4 for the service execute-api (XRAY_AUTH=iam): sign each "
             "request with credentials allowed execute-api:Invoke on this API (curl "
             "--aws-sigv4, awscurl, an AWS SDK).",
    "cognito_user_pool": "An ID token of the stage's Cognito user pool (XRAY_AUTH=cognito), as "
                         "the whole value of the Authorization header (no 'Bearer'). The upload "
                         "page gets one through the pool's hosted UI.",
    API_KEY_SCHEME: "An API key of one of the stage's usage plans (XRAY_AUTH=...+api_key).",
}
SCHEME_NAMES = {"sigv4": "IAM (SigV4)", "cognito_user_pool": "a Cognito ID token",
                API_KEY_SCHEME: "an API key"}
TAGS = {
    "classification": "Findings for one image, sent as its bytes",
    "jobs": "Files over the synchronous limit: upload straight to storage, then poll",
    "dicomweb": "Images the way a PACS sends them (DICOMweb STOW-RS)",
    "service": "The service itself: health, the model, this contract",
    "page": "The browser page",
    "cors": "Browser preflights (XRAY_CORS_ORIGINS)",
}


class UndocumentedRoute(LookupError):
    """A route of app.routes that operations.py has no entry for."""


Routes = Mapping[str, Mapping[str, RouteEntry]]
ErrorEntry = Tuple[str, int, str]  # (Code, status, description)
GATEWAY = "API Gateway, before the function runs: "


def build(routes: Routes, settings: Settings, title: str) -> Dict[str, Any]:
    """The document for these routes under these settings (no servers: served() adds the
    request's own base URL)."""
    schemes: Dict[str, Schema] = {}
    views = Counter(entry.view_name for methods in routes.values() for entry in methods.values())
    paths: Dict[str, Any] = {}
    used_tags = set()
    for path, methods in routes.items():
        item: Dict[str, Any] = {}
        for method, entry in methods.items():
            spec = operation(path, method)
            if spec is None:
                raise UndocumentedRoute(f"{method} {path} ({entry.view_name}) has no entry in "
                                        "chalicelib/openapi/operations.py: document its answers "
                                        "and errors there")
            operation_id = entry.view_name if views[entry.view_name] == 1 else \
                f"{entry.view_name}_{_slug(path)}"
            item[method.lower()] = _operation(path, method, entry, spec, operation_id, settings,
                                              schemes)
            used_tags.add(spec.tag)
        paths[path] = item
    document: Dict[str, Any] = {
        "openapi": OPENAPI,
        "info": _info(title, schemes),
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()
                 if name in used_tags],
        "paths": paths,
        "components": {"schemas": _used(paths, components(settings))},
    }
    if schemes:
        document["components"]["securitySchemes"] = schemes
    return document


def _used(paths: Dict[str, Any], schemas: Dict[str, Schema]) -> Dict[str, Schema]:
    """The schemas the paths refer to, directly or through other schemas (the STOW-RS ones
    only with its routes)."""
    found: Dict[str, Schema] = {}
    pending: List[Any] = [paths]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            target = value.get("$ref")
            if isinstance(target, str) and target.startswith(REF):
                name = target[len(REF):]
                if name not in found:
                    found[name] = schemas[name]
                    pending.append(schemas[name])
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return {name: schema for name, schema in schemas.items() if name in found}


def served(document: Dict[str, Any], base_url: str) -> Dict[str, Any]:
    """The document as GET /openapi.json answers it: with the request's base URL (API Gateway's
    stage path included, or XRAY_PUBLIC_URL) as its server."""
    return {**document, "servers": [{"url": base_url, "description": "This stage"}]}


def error_entries(entry: RouteEntry, spec: Operation, has_body: bool) -> List[ErrorEntry]:
    """The errors an operation can answer as (Code, status, description): its classes', then
    Chalice's own, then API Gateway's (gateway.py)."""
    classes = [getattr(errors, error) if isinstance(error, str) else error
               for error in spec.errors]
    found: List[ErrorEntry] = [(error.__name__, error.STATUS_CODE, describe(error))
                               for error in classes]
    if has_body:
        found.append(UNSUPPORTED_MEDIA_TYPE)
    found += [(refusal.code, refusal.status, GATEWAY + refusal.description)
              for refusal in gateway.refusals(entry, has_body)]
    return found


def _operation(path: str, method: str, entry: RouteEntry, spec: Operation, operation_id: str,
               settings: Settings, schemes: Dict[str, Schema]) -> Dict[str, Any]:
    result: Dict[str, Any] = {"operationId": operation_id, "summary": spec.summary,
                              "tags": [spec.tag]}
    doc = inspect.getdoc(entry.view_function)
    if doc:
        result["description"] = unwrapped(doc)
    parameters = [_path_parameter(name) for name in entry.view_args]
    parameters += [{"name": name, "in": "query", "required": False, **QUERY[name]}
                   for name in spec.query]
    if parameters:
        result["parameters"] = parameters
    has_body = method in BODY_METHODS
    if has_body:
        result["requestBody"] = _request_body(entry, spec, settings)
    result["responses"] = _responses(spec, error_entries(entry, spec, has_body), entry)
    result["security"] = _security(entry, schemes)
    return result


def _path_parameter(name: str) -> Dict[str, Any]:
    if name not in PATH_PARAMETERS:
        raise UndocumentedRoute(f"path parameter {{{name}}} has no entry in PATH_PARAMETERS "
                                "(chalicelib/openapi/operations.py)")
    return {"name": name, "in": "path", "required": True, **PATH_PARAMETERS[name]}


def _request_body(entry: RouteEntry, spec: Operation, settings: Settings) -> Dict[str, Any]:
    content: Dict[str, Any] = {}
    for media in entry.content_types:
        if media in MISTAKEN_CONTENT_TYPES:  # routed to the view only to be refused (a 415)
            continue
        if media in FORMAT_OF_CONTENT_TYPE:
            content[media] = {"schema": image_body(media)}
        elif spec.body is not None:
            content[media] = {"schema": ref(spec.body)}
        else:
            raise UndocumentedRoute(f"{entry.method} {entry.uri_pattern} takes {media}, for "
                                    "which its operation names no body schema")
    images = [media for media in content if media in FORMAT_OF_CONTENT_TYPE]
    description = ""
    if images:
        description = (f"At most {settings.max_upload_bytes:,} bytes (POST /xray/jobs takes "
                       "larger files). application/octet-stream: the format is recognised from "
                       "the bytes. " + ", ".join(MISTAKEN_CONTENT_TYPES) + " get a 415 "
                       "UnsupportedImageType saying what to send instead.")
    body: Dict[str, Any] = {"required": True, "content": content}
    if description:
        body["description"] = description
    return body


def _responses(spec: Operation, found: List[ErrorEntry], entry: RouteEntry) -> Dict[str, Any]:
    responses: Dict[str, Any] = {str(status): _answer(answer)
                                 for status, answer in spec.answers.items()}
    by_status: Dict[int, List[ErrorEntry]] = {}
    for error in found:
        by_status.setdefault(error[1], []).append(error)
    for status, errors_of_status in sorted(by_status.items()):
        if str(status) in responses:
            raise ValueError(f"{entry.method} {entry.uri_pattern}: status {status} is both an "
                             "answer and an error")
        responses[str(status)] = _error_response(errors_of_status)
    return dict(sorted(responses.items()))


def _answer(answer: Answer) -> Dict[str, Any]:
    response: Dict[str, Any] = {"description": answer.description}
    if answer.content:
        response["content"] = {media: {"schema": ref(name)}
                               for media, name in answer.content.items()}
    if answer.headers:
        response["headers"] = {name: {"description": HEADERS[name],
                                      "schema": {"type": "string"}} for name in answer.headers}
    return response


def _error_response(found: List[ErrorEntry]) -> Dict[str, Any]:
    codes = list(dict.fromkeys(code for code, _, _ in found))
    response: Dict[str, Any] = {
        "description": "\n\n".join(f"{code}: {text}" for code, _, text in found),
        "content": {ERROR_MEDIA: {"schema": {"allOf": [ref("Error")],
                                             "properties": {"Code": {"enum": codes}}}}}}
    retrying = [code for code in codes
                if issubclass(getattr(errors, code, type(None)), errors.ModelUnavailable)]
    if retrying:
        response["headers"] = {"Retry-After": {
            "description": "Seconds after which a retry can succeed, when known (the model "
                           "is loading, or its next load attempt is due)",
            "schema": {"type": "integer", "minimum": 1}}}
    return response


def _security(entry: RouteEntry, schemes: Dict[str, Schema]) -> List[Dict[str, List[str]]]:
    requirement: Dict[str, List[str]] = {}
    if entry.authorizer is not None:
        name = entry.authorizer.name
        schemes[name] = _scheme(entry.authorizer)
        requirement[name] = list(getattr(entry.authorizer, "scopes", None) or [])
    if entry.api_key_required:
        schemes[API_KEY_SCHEME] = {"type": "apiKey", "in": "header", "name": API_KEY_HEADER,
                                   "description": SCHEME_DESCRIPTIONS[API_KEY_SCHEME]}
        requirement[API_KEY_SCHEME] = []
    return [requirement] if requirement else []  # [] : no credential at all


def _scheme(authorizer: Authorizer) -> Schema:
    """The authorizer's own Swagger snippet (what API Gateway is given), less the
    authorizer's configuration (the user pool ARNs)."""
    scheme = {key: value for key, value in authorizer.to_swagger().items()
              if key != "x-amazon-apigateway-authorizer"}
    description = SCHEME_DESCRIPTIONS.get(authorizer.name)
    if description:
        scheme["description"] = description
    return scheme


def _info(title: str, schemes: Mapping[str, Schema]) -> Dict[str, Any]:
    """schemes: the security schemes the routes use (XRAY_AUTH as app.py gave it to them)."""
    mechanisms = " and ".join(SCHEME_NAMES.get(name, name) for name in schemes) or \
        "none (no credential)"
    return {
        "title": title,
        "version": chalicelib.__version__,
        "summary": "Chest X-ray classification: findings as JSON, DICOM SR or FHIR",
        "description": (
            "Send a chest radiograph (PNG, JPEG or DICOM) to POST /xray and get the model's "
            "findings. This stage's authentication (XRAY_AUTH): " + mechanisms + ". Every "
            "error is JSON {\"Code\", \"Message\"}: Code names the error's class, Message says "
            "what to change; API Gateway's own refusals have the same shape on a stage the "
            "deploy commands made (other ones than those listed carry API Gateway's type name "
            "as their Code). A path that does not exist is API Gateway's 403 "
            "MissingAuthenticationToken; a method a path does not take, Chalice's 405 "
            "MethodNotAllowedError. The document is built from the service's own route "
            "table."),
    }


def _slug(path: str) -> str:
    cleaned = "".join(c if c.isalnum() else "_" for c in path).strip("_")
    return cleaned or "root"
