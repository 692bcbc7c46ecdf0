"""CORS: an allowlist of origins (XRAY_CORS_ORIGINS), preflight answered by the function itself.
In-process and through the Lambda entry point here; under `chalice local` and in a real browser
in test_page_browser.py."""
import json

import pytest

from chalicelib.settings import Settings, parse_origins
from chalicelib.web import cors
from lambda_sim.context import LambdaContext
from lambda_sim.events import proxy_event
from tests.support.fixtures import PNG_CARDIOMEGALY
from tests.support.serving import serving

ALLOWED = "https://viewer.example.org"
ALSO_ALLOWED = "http://localhost:3000"
OTHER = "https://evil.example.com"


def test_origins_are_parsed_and_checked():
    assert parse_origins("") == ()
    assert parse_origins(f" {ALLOWED} , HTTP://LocalHost:3000,,{ALLOWED}") == (
        ALLOWED, ALSO_ALLOWED)
    assert parse_origins("http://[::1]:8000") == ("http://[::1]:8000",)
    for wrong in ("viewer.example.org", "https://viewer.example.org/", "https://a.example/app",
                  "ftp://a.example", "https://a.example:port"):
        with pytest.raises(ValueError, match="XRAY_CORS_ORIGINS"):
            parse_origins(wrong)


def test_the_default_allows_no_other_origin():
    settings = Settings.from_env({})
    assert settings.cors_origins == ()
    assert cors.response_headers(OTHER, settings.cors_origins) == {}
    assert cors.preflight_headers(OTHER, settings.cors_origins) is None


def test_a_wildcard_is_an_explicit_opt_in():
    assert cors.response_headers(OTHER, ("*",)) == {"Access-Control-Allow-Origin": "*"}


def headers_of(response) -> dict:
    return {name.lower(): value for name, value in response.headers.items()}


@pytest.fixture(scope="module")
def client(demo_store):
    with serving(demo_store, XRAY_CORS_ORIGINS=f"{ALLOWED},{ALSO_ALLOWED}") as c:
        yield c


@pytest.mark.parametrize("origin", [ALLOWED, ALSO_ALLOWED])
def test_an_allowed_origin_is_echoed_on_answers_and_errors(client, origin):
    ok = client.http.post("/xray", headers={"Content-Type": "image/png", "Origin": origin},
                          body=PNG_CARDIOMEGALY.read_bytes())
    refused = client.http.post("/xray", headers={"Content-Type": "text/plain", "Origin": origin},
                               body=b"hello")
    health = client.http.get("/health", headers={"Origin": origin})
    for response, status in ((ok, 200), (refused, 415), (health, 200)):
        headers = headers_of(response)
        assert response.status_code == status
        assert headers["access-control-allow-origin"] == origin
        assert "Origin" in headers["vary"]


def test_a_disallowed_origin_gets_no_allow_origin_header(client):
    response = client.http.post("/xray", headers={"Content-Type": "image/png", "Origin": OTHER},
                                body=PNG_CARDIOMEGALY.read_bytes())
    headers = headers_of(response)
    assert response.status_code == 200  # the server answers; the browser withholds it
    assert "access-control-allow-origin" not in headers and "Origin" in headers["vary"]


def test_same_origin_requests_get_no_cors_headers(client):
    headers = headers_of(client.http.get("/health"))
    assert "access-control-allow-origin" not in headers


def preflight(app, path: str, origin=None) -> tuple:
    """An OPTIONS proxy event as API Gateway sends a browser's preflight to the function."""
    extra = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type"}
    if origin:
        extra["Origin"] = origin
    event = proxy_event("OPTIONS", path, headers=extra)
    response = app(event, LambdaContext())
    return response["statusCode"], {k.lower(): v for k, v in response["headers"].items()}, \
        response["body"]


@pytest.fixture(scope="module")
def lambda_app(demo_store):
    import app as app_module
    with serving(demo_store, XRAY_CORS_ORIGINS=ALLOWED):
        yield app_module.app


@pytest.mark.parametrize("path", ["/xray", "/preview", "/health", "/model"])
def test_preflight_from_an_allowed_origin(lambda_app, path):
    status, headers, body = preflight(lambda_app, path, ALLOWED)
    assert status == 204 and not body
    assert headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in headers["access-control-allow-methods"]
    assert "content-type" in headers["access-control-allow-headers"].lower()
    assert int(headers["access-control-max-age"]) > 0 and "Origin" in headers["vary"]


def test_preflight_allows_the_credentials_each_auth_mode_sends(lambda_app):
    # a Cognito token, an API key, and a SigV4-signing SDK's headers
    _, headers, _ = preflight(lambda_app, "/xray", ALLOWED)
    allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "x-api-key", "x-amz-date", "x-amz-security-token",
            "x-amz-content-sha256"} <= allowed


def test_preflight_from_another_origin_is_refused(lambda_app):
    status, headers, body = preflight(lambda_app, "/xray", OTHER)
    assert status == 403 and "access-control-allow-origin" not in headers
    assert "XRAY_CORS_ORIGINS" in json.loads(body)["Message"]


def test_options_without_an_origin_says_what_is_allowed(lambda_app):
    status, headers, _ = preflight(lambda_app, "/xray")
    assert status == 204 and "POST" in headers["allow"]


def test_on_aws_every_preflight_reaches_the_function_not_a_mock():
    """Chalice turns `cors=` routes into a MOCK OPTIONS integration that can name only one
    origin. None is used: the generated API sends OPTIONS to the Lambda like any method."""
    from chalice.deploy.swagger import CFNSwaggerGenerator

    import app as app_module
    api = CFNSwaggerGenerator().generate_swagger(app_module.app)
    for path in ("/xray", "/preview", "/health", "/model"):
        integration = api["paths"][path]["options"]["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy", path
    assert all(route.cors is None for methods in app_module.app.routes.values()
               for route in methods.values())
