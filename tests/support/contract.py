"""The app's answers held against its OpenAPI document (GET /openapi.json): an Exchange is one
real request and answer, made through Chalice's test client or the Lambda entry (for binary
answers and preflights, which the test client cannot make), recorded with its route's path
template; check() says what in it the document does not allow."""
import base64
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from lambda_sim.context import LambdaContext
from lambda_sim.events import proxy_event

DOCUMENT_URI = "urn:chest-xray:openapi"


def _content_schema(validator: Any, content_schema: Any, instance: Any, schema: Dict[str, Any]):
    """contentSchema, an annotation in 2020-12, applied: a string whose contentMediaType is
    JSON (the findings a STOW-RS answer carries in a private element) must be JSON valid
    against it."""
    if schema.get("contentMediaType") != "application/json" or not isinstance(instance, str):
        return
    try:
        value = json.loads(instance)
    except ValueError:
        yield ValidationError(f"{instance[:80]!r} is not the JSON its contentMediaType says")
        return
    yield from validator.descend(value, content_schema)


# Draft 2020-12 with contentSchema checked
Validator = validators.extend(Draft202012Validator, {"contentSchema": _content_schema})


@dataclass
class Exchange:
    case: str
    method: str
    template: str        # the route's path, as app.routes names it
    status: int
    content_type: str    # as answered, parameters included ("" when none)
    body: bytes
    headers: Dict[str, str] = field(default_factory=dict)

    @property
    def media(self) -> str:
        return self.content_type.split(";", 1)[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)

    def __str__(self) -> str:
        return f"{self.case}: {self.method} {self.template} -> {self.status} {self.media}"


def through_client(client: Any, case: str, method: str, template: str, path: str,
                   body: bytes = b"", headers: Optional[Dict[str, str]] = None) -> Exchange:
    """path: the request's path with its parameters filled in and its query string."""
    response = client.http.request(method, path, headers=dict(headers or {}), body=body)
    answered = {name.title(): value for name, value in response.headers.items()}
    return Exchange(case, method, template, response.status_code,
                    answered.get("Content-Type", ""), response.body or b"", answered)


def through_lambda(app: Any, case: str, method: str, template: str, path: str,
                   body: bytes = b"", headers: Optional[Dict[str, str]] = None,
                   query: Optional[Dict[str, str]] = None,
                   path_parameters: Optional[Dict[str, str]] = None,
                   context: Optional[LambdaContext] = None) -> Exchange:
    """The Lambda entry, app(event, context), with API Gateway's proxy event for this request
    (its binary body base64-encoded, as API Gateway sends the app's binary types)."""
    headers = dict(headers or {})
    content_type = headers.pop("Content-Type", "")
    event = proxy_event(method, path, body, content_type, query=query, headers=headers)
    event["resource"] = event["requestContext"]["resourcePath"] = template
    event["pathParameters"] = path_parameters
    response = app(event, context or LambdaContext())
    raw = response.get("body") or ""
    payload = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
    answered = {name.title(): value for name, value in (response.get("headers") or {}).items()}
    return Exchange(case, method, template, response["statusCode"],
                    answered.get("Content-Type", ""), payload, answered)


def media_parameters(content_type: str) -> Tuple[str, Dict[str, str]]:
    """'multipart/related; type="application/dicom"; boundary=x' -> (media, parameters)."""
    media, *rest = [part.strip() for part in content_type.split(";")]
    parameters = {}
    for part in rest:
        name, _, value = part.partition("=")
        parameters[name.strip().lower()] = value.strip().strip('"')
    return media.lower(), parameters


def documented_media(content: Dict[str, Any], content_type: str) -> Optional[str]:
    """The key of `content` (a response's media types) that an answer's Content-Type is:
    the same media type, with every parameter the key names (a boundary is the answer's own)."""
    media, parameters = media_parameters(content_type)
    for key in content:
        key_media, key_parameters = media_parameters(key)
        if key_media == media and all(parameters.get(name) == value
                                      for name, value in key_parameters.items()):
            return key
    return None


def pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


class Contract:
    """The document, and the schema validators of its answers."""

    def __init__(self, document: Dict[str, Any]) -> None:
        self.document = document
        resource = Resource.from_contents(document, default_specification=DRAFT202012)
        self.registry: Registry = Registry().with_resource(DOCUMENT_URI, resource)

    def validator(self, *parts: str) -> Any:
        """A validator for the schema at the JSON pointer made of parts (resolving its $refs
        within the document)."""
        return Validator({"$ref": f"{DOCUMENT_URI}#/{pointer(*parts)}"}, registry=self.registry,
                         format_checker=Draft202012Validator.FORMAT_CHECKER)

    def schema_errors(self, value: Any, *parts: str) -> List[str]:
        return [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
                for error in self.validator(*parts).iter_errors(value)]

    def check(self, exchange: Exchange) -> List[str]:
        """What in this exchange the document does not allow ([] when all of it is allowed)."""
        operation = self.document["paths"].get(exchange.template, {}).get(
            exchange.method.lower())
        if operation is None:
            return [f"{exchange}: the document has no {exchange.method} {exchange.template}"]
        response = operation["responses"].get(str(exchange.status))
        if response is None:
            return [f"{exchange}: status {exchange.status} is not documented (documented: "
                    f"{', '.join(operation['responses'])})"]
        problems = self._header_problems(exchange, response)
        content = response.get("content")
        if not content:
            if exchange.body:
                problems.append(f"{exchange}: the document says no body, got "
                                f"{len(exchange.body)} bytes")
            return problems
        key = documented_media(content, exchange.content_type)
        if key is None:
            return problems + [f"{exchange}: Content-Type {exchange.content_type!r} is not "
                               f"documented for {exchange.status} (documented: "
                               f"{', '.join(content)})"]
        where = ("paths", exchange.template, exchange.method.lower(), "responses",
                 str(exchange.status), "content", key, "schema")
        schema = self.resolved(content[key]["schema"])
        if key == "application/json" or key.endswith("+json"):
            try:
                value = exchange.json()
            except ValueError as error:
                return problems + [f"{exchange}: not JSON ({error})"]
            problems += [f"{exchange}: {problem}" for problem in self.schema_errors(value, *where)]
        elif schema.get("format") == "binary" or "contentMediaType" in schema:
            if not exchange.body:
                problems.append(f"{exchange}: an empty body where bytes are documented")
        elif schema.get("type") == "string":
            problems += [f"{exchange}: {problem}"
                         for problem in self.schema_errors(exchange.body.decode(), *where)]
        else:
            problems.append(f"{exchange}: {key} has a schema this check cannot apply")
        return problems

    def _header_problems(self, exchange: Exchange, response: Dict[str, Any]) -> List[str]:
        problems = []
        for name, header in response.get("headers", {}).items():
            value = exchange.headers.get(name.title())
            if value is None:
                continue
            schema = self.resolved(header["schema"])
            typed: Any = int(value) if schema.get("type") == "integer" and value.isdigit() \
                else value
            errors = list(Draft202012Validator(schema).iter_errors(typed))
            problems += [f"{exchange}: header {name}: {error.message}" for error in errors]
        return problems

    def resolved(self, schema: Dict[str, Any]) -> Dict[str, Any]:
        """A schema with its top-level $ref followed (within the document)."""
        while "$ref" in schema and schema["$ref"].startswith("#/"):
            target: Any = self.document
            for part in schema["$ref"][2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            schema = target
        return schema
