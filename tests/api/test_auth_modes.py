"""app.py under each XRAY_AUTH mode, each in a fresh interpreter (app.py picks its authorizers
when imported, once per process): which routes carry the authorizer and the API key
requirement, and that the real Lambda entry, app(event, context), answers proxy events that
API Gateway let through with its authorizer's context (Cognito claims, the IAM caller, the API
key id). API Gateway does the checking; `chalice local` enforces neither IAM nor Cognito, so no
test here relies on it for that."""
import json

import pytest

from chalicelib.settings import AUTH_CHOICES
from tests.support.fixtures import PNG_CARDIOMEGALY
from tests.support.serving import run_isolated

POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"
OPEN = {("/", "GET"), ("/openapi.json", "GET"), ("/xray", "OPTIONS"), ("/preview", "OPTIONS"),
        ("/health", "OPTIONS"), ("/model", "OPTIONS"), ("/xray/jobs", "OPTIONS"),
        ("/xray/jobs/{job_id}", "OPTIONS"), ("/studies", "OPTIONS"),
        ("/studies/{study}", "OPTIONS")}
PROTECTED = {("/xray", "POST"), ("/preview", "POST"), ("/health", "GET"), ("/model", "GET"),
             ("/xray/jobs", "POST"), ("/xray/jobs/{job_id}", "GET"),
             ("/xray/jobs/{job_id}", "DELETE"), ("/studies", "POST"), ("/studies/{study}", "POST")}

PROBE = r'''
import json, sys
from pathlib import Path
import app
from lambda_sim.context import LambdaContext
from lambda_sim.events import proxy_event

routes = {f"{path} {method}": [type(entry.authorizer).__name__ if entry.authorizer else None,
                               bool(entry.api_key_required)]
          for path, methods in app.app.routes.items() for method, entry in methods.items()}
mode = sys.argv[1]
headers, identity, authorizer = {}, {}, None
if "iam" in mode:  # what API Gateway passes on after checking a SigV4 signature
    headers.update({"Authorization": "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20260101/"
                    "eu-west-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, "
                    "Signature=0f0f", "X-Amz-Date": "20260101T000000Z",
                    "X-Amz-Security-Token": "IQoJexample"})
    identity.update({"caller": "AROAEXAMPLE:radiologist", "user": "AROAEXAMPLE:radiologist",
                     "accessKey": "ASIAEXAMPLE", "accountId": "123456789012",
                     "userArn": "arn:aws:sts::123456789012:assumed-role/reader/radiologist"})
if "cognito" in mode:  # the claims of an id token the user pool authorizer accepted
    headers["Authorization"] = "eyJraWQiOiJleGFtcGxlIn0.eyJzdWIiOiJleGFtcGxlIn0.c2ln"
    authorizer = {"claims": {"sub": "6a0b1c2d-0000-4000-8000-000000000000",
                             "cognito:username": "radiologist", "token_use": "id",
                             "email": "radiologist@example.org",
                             "iss": "https://cognito-idp.eu-west-1.amazonaws.com/"
                                    "eu-west-1_AbCdEf123"}}
if "api_key" in mode:
    headers["x-api-key"] = "k" * 40
    identity.update({"apiKey": "k" * 40, "apiKeyId": "abcd1234ef"})

answers = {}
for method, path, body, kind in (("GET", "/health", b"", ""), ("GET", "/model", b"", ""),
                                 ("POST", "/xray", Path(sys.argv[2]).read_bytes(), "image/png"),
                                 ("GET", "/", b"", "")):
    event = proxy_event(method, path, body, kind, headers=headers)
    event["requestContext"]["identity"].update(identity)
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
    response = app.app(event, LambdaContext())
    answers[f"{path} {method}"] = response["statusCode"]
print(json.dumps({"routes": routes, "answers": answers}))
'''


@pytest.fixture(scope="module")
def probed(demo_store):
    """mode -> what the fresh interpreter reported (one interpreter per mode)."""
    seen: dict = {}

    def probe_once(mode: str) -> dict:
        if mode not in seen:
            seen[mode] = probe(mode, demo_store)
        return seen[mode]
    return probe_once


def probe(mode: str, demo_store) -> dict:
    env = {"XRAY_AUTH": mode, "XRAY_EFS_ROOT": str(demo_store), "XRAY_PACKAGES_PATH": "",
           "XRAY_MODEL_PATH": ""}
    if "cognito" in mode:
        env["XRAY_COGNITO_USER_POOL_ARNS"] = POOL
    return json.loads(run_isolated(PROBE, mode, str(PNG_CARDIOMEGALY), **env).splitlines()[-1])


@pytest.mark.parametrize("mode", AUTH_CHOICES)
def test_given_a_mode_when_app_is_imported_then_every_route_but_the_page_and_preflight_is_guarded(
        mode, probed):
    routes = {tuple(key.split(" ")): value for key, value in probed(mode)[
        "routes"].items()}
    assert set(routes) == OPEN | PROTECTED
    kind = {"iam": "IAMAuthorizer", "cognito": "CognitoUserPoolAuthorizer"}
    expected = [next((kind[m] for m in kind if m in mode), None), "api_key" in mode]
    for route in PROTECTED:
        assert routes[route] == expected, (mode, route)
    for route in OPEN:
        assert routes[route] == [None, False], (mode, route)


@pytest.mark.parametrize("mode", AUTH_CHOICES)
def test_given_an_authorized_proxy_event_when_the_lambda_entry_runs_then_200(mode, probed):
    assert probed(mode)["answers"] == {"/health GET": 200, "/model GET": 200,
                                                  "/xray POST": 200, "/ GET": 200}
