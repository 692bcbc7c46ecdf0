"""The real Lambda entry point, app(event, context), with API Gateway REST proxy events whose
binary body is base64-encoded, as API Gateway sends it for the app's binary_types."""
import json

import pytest

from lambda_sim.context import LambdaContext
from lambda_sim.events import proxy_event
from tests.support.fixtures import ALL_FIXTURES, CONTENT_TYPE, PNG_CARDIOMEGALY, fixture_id
from tests.support.serving import serving


@pytest.fixture(scope="module")
def lambda_app(demo_store):
    import app as app_module
    with serving(demo_store) as client:
        yield app_module.app, client


def invoke(app, event) -> tuple:
    response = app(event, LambdaContext())
    assert not response.get("isBase64Encoded")  # JSON answers stay text for API Gateway
    return response["statusCode"], json.loads(response["body"]), response["headers"]


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_given_a_base64_upload_when_invoked_then_it_answers_like_the_client(lambda_app, path):
    app, client = lambda_app
    status, result, headers = invoke(app, proxy_event("POST", "/xray", path.read_bytes(),
                                                      CONTENT_TYPE[path.suffix]))
    assert status == 200 and headers["Content-Type"] == "application/json"
    direct = json.loads(client.http.post("/xray", headers={"Content-Type": CONTENT_TYPE[
        path.suffix]}, body=path.read_bytes()).body)
    assert result["findings"] == direct["findings"] and result["model"] == direct["model"]


def test_given_garbage_when_invoked_then_415_json(lambda_app):
    app, _ = lambda_app
    status, result, _ = invoke(app, proxy_event("POST", "/xray", b"%PDF-1.7 ...", "image/png"))
    assert status == 415 and result["Code"] == "UnsupportedImageType"


def test_given_an_unlisted_type_when_invoked_then_415_before_the_view(lambda_app):
    app, _ = lambda_app
    status, result, _ = invoke(app, proxy_event("POST", "/xray", PNG_CARDIOMEGALY.read_bytes(),
                                                "image/*"))
    assert status == 415 and result["Code"] == "UnsupportedMediaType"


def test_given_a_health_check_when_invoked_then_live(lambda_app):
    app, _ = lambda_app
    status, result, _ = invoke(app, proxy_event("GET", "/health"))
    assert status == 200 and result["live"] is True


def test_the_binary_types_cover_every_accepted_type_and_never_everything():
    import app as app_module
    from chalicelib.imaging.formats import CONTENT_TYPES
    assert set(CONTENT_TYPES) <= set(app_module.app.api.binary_types)
    assert "*/*" not in app_module.app.api.binary_types
