"""API Gateway's own error answers (Gateway Responses), with CORS headers and our error shape.

When API Gateway refuses a request itself (no or a bad signature or token, a missing API key,
a body over 10 MB, a throttle, a function that timed out or failed) the function never runs,
so the app's CORS middleware adds nothing, and a browser reports a CORS failure instead of the
real error. Chalice has no setting for these (its issues 787, 1290), so both deploy paths add
them from this one table: `python -m deploy` puts them on the REST API after `chalice deploy`
(then redeploys the stage, as API Gateway requires), and `python -m deploy.package` merges them
into the template's Swagger (x-amazon-apigateway-gateway-responses).

The body is shaped like the app's errors, {"Code": ..., "Message": ...}: a named Code for the
types a client meets most, and for every other 4xx/5xx API Gateway's own type name.

Which origin a gateway response names: API Gateway fills these headers from static values (or
echoes a request header unchecked), so it cannot match the Origin against an allowlist as
chalicelib/web/cors.py does.
- no origins (same-origin only, the default): no CORS header; a same-origin page needs none.
- one origin: exactly that origin, the same answer the app gives.
- several origins, or "*": `*`. Echoing the request's Origin would grant every origin too,
  while looking like a match. `*` is honest about what is granted, and what it grants is
  small: these bodies hold only the error's type and API Gateway's message, never data, and
  `*` never lets a browser send credentials. Everything the function answers still follows the
  allowlist.
"""
import logging
from typing import Any, Dict, List, Sequence

from botocore.exceptions import ClientError

log = logging.getLogger("deploy")

SWAGGER_KEY = "x-amazon-apigateway-gateway-responses"
# responseType -> the Code our body names; None = API Gateway's own type name.
CODES: Dict[str, Any] = {
    "DEFAULT_4XX": None,
    "DEFAULT_5XX": None,
    "UNAUTHORIZED": "Unauthorized",                       # 401: no or an invalid Cognito token
    "ACCESS_DENIED": "AccessDenied",                      # 403: IAM policy or authorizer says no
    "MISSING_AUTHENTICATION_TOKEN": "MissingAuthenticationToken",  # 403: unsigned, or no route
    "INVALID_SIGNATURE": "InvalidSignature",              # 403: a bad SigV4 signature
    "EXPIRED_TOKEN": "ExpiredToken",                      # 403: expired AWS credentials
    "INVALID_API_KEY": "InvalidApiKey",                   # 403: no or an unknown x-api-key
    "REQUEST_TOO_LARGE": "RequestTooLarge",               # 413: over API Gateway's 10 MB
    "THROTTLED": "Throttled",                             # 429: the usage plan's or stage's rate
    "QUOTA_EXCEEDED": "QuotaExceeded",                    # 429: the usage plan's quota
    "INTEGRATION_TIMEOUT": "IntegrationTimeout",          # 504: the function ran past 29 s
}
JSON = "application/json"


def allow_origin(origins: Sequence[str]) -> str:
    """The Access-Control-Allow-Origin value (see the module docstring), or "" for none."""
    if not origins:
        return ""
    return origins[0] if len(origins) == 1 and origins[0] != "*" else "*"


def gateway_responses(origins: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """responseType -> {"responseParameters", "responseTemplates"}: the shape of both the
    Swagger extension and PutGatewayResponse."""
    origin = allow_origin(origins)
    parameters = {"gatewayresponse.header.Access-Control-Allow-Origin": f"'{origin}'"} \
        if origin else {}
    responses = {}
    for response_type, code in CODES.items():
        # $context.error.messageString is already a quoted JSON string
        body = ('{"Code": "%s", "Message": $context.error.messageString}'
                % (code or "$context.error.responseType"))
        responses[response_type] = {"responseParameters": dict(parameters),
                                    "responseTemplates": {JSON: body}}
    return responses


def apply(apigw: Any, rest_api_id: str, stage: str, origins: Sequence[str]) -> List[str]:
    """Puts each response the REST API does not already hold as wanted, then redeploys the
    stage once if anything changed (gateway responses apply only from a deployment). Returns
    the types that were put; none when all are in place."""
    changed = []
    for response_type, wanted in gateway_responses(origins).items():
        try:
            current = apigw.get_gateway_response(restApiId=rest_api_id,
                                                 responseType=response_type)
        except ClientError as error:
            if error.response["Error"]["Code"] != "NotFoundException":
                raise
            current = {}
        if all((current.get(key) or {}) == value for key, value in wanted.items()):
            continue
        apigw.put_gateway_response(restApiId=rest_api_id, responseType=response_type,
                                   **wanted)
        changed.append(response_type)
    if changed:
        apigw.create_deployment(restApiId=rest_api_id, stageName=stage,
                                description="Gateway Responses with CORS headers")
        log.info("gateway responses: put %s and redeployed stage %s", ", ".join(changed), stage)
    else:
        log.info("gateway responses: all %d already in place: nothing to change", len(CODES))
    return changed
