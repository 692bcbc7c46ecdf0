"""What API Gateway answers by itself, before the function runs: a missing or wrong credential,
a body over its 10 MB, a throttle or quota, a function past 29 s. Both deploy paths shape these
answers like the app's errors, {"Code", "Message"}, with the Codes of deploy/gateway_responses.py
(its CODES); deploy/ is not in the Lambda package, so the Codes are named here, and
tests/openapi/ checks them against that table.

Which apply to a route follows from the route itself: its authorizer and API key requirement,
and whether it takes a body. None can be produced locally: `chalice local` and Chalice's test
client enforce no authorizer, size limit or timeout."""
from dataclasses import dataclass
from typing import List

from chalice.app import CognitoUserPoolAuthorizer, IAMAuthorizer, RouteEntry


@dataclass(frozen=True)
class GatewayError:
    code: str
    status: int
    description: str


UNAUTHORIZED = GatewayError("Unauthorized", 401,
                            "no Cognito ID token, or one the user pool did not issue or that "
                            "has expired")
MISSING_AUTHENTICATION_TOKEN = GatewayError("MissingAuthenticationToken", 403,
                                            "the request is not signed (SigV4)")
INVALID_SIGNATURE = GatewayError("InvalidSignature", 403, "a SigV4 signature that does not "
                                                          "match the request")
EXPIRED_TOKEN = GatewayError("ExpiredToken", 403, "the signing credentials have expired")
ACCESS_DENIED = GatewayError("AccessDenied", 403, "the signer's IAM policy does not allow "
                                                  "execute-api:Invoke on this route")
INVALID_API_KEY = GatewayError("InvalidApiKey", 403, "no x-api-key header, or a key no usage "
                                                     "plan of the stage holds")
QUOTA_EXCEEDED = GatewayError("QuotaExceeded", 429, "the API key's usage plan quota is used up")
THROTTLED = GatewayError("Throttled", 429, "over the stage's (or the API key's usage plan's) "
                                           "request rate: retry later")
REQUEST_TOO_LARGE = GatewayError("RequestTooLarge", 413, "a body over API Gateway's 10 MB")
INTEGRATION_TIMEOUT = GatewayError("IntegrationTimeout", 504, "the function did not answer "
                                                              "within API Gateway's 29 s")

IAM = (MISSING_AUTHENTICATION_TOKEN, INVALID_SIGNATURE, EXPIRED_TOKEN, ACCESS_DENIED)
COGNITO = (UNAUTHORIZED,)
API_KEY = (INVALID_API_KEY, QUOTA_EXCEEDED)
EVERY_ROUTE = (THROTTLED, INTEGRATION_TIMEOUT)
WITH_BODY = (REQUEST_TOO_LARGE,)
ALL = IAM + COGNITO + API_KEY + EVERY_ROUTE + WITH_BODY


def refusals(entry: RouteEntry, has_body: bool) -> List[GatewayError]:
    """What API Gateway may answer for this route instead of the function."""
    found: List[GatewayError] = []
    if isinstance(entry.authorizer, IAMAuthorizer):
        found += IAM
    elif isinstance(entry.authorizer, CognitoUserPoolAuthorizer):
        found += COGNITO
    if entry.api_key_required:
        found += API_KEY
    found += EVERY_ROUTE
    if has_body:
        found += WITH_BODY
    return found
