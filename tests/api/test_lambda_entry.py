"""The real Lambda entry point, app(event, context), with API Gateway REST proxy events whose
binary body is base64-encoded, as API Gateway sends it for the app's binary_types."""
import json

import pytest

from lambda_sim.context import LambdaContext
from lambda_sim.events import proxy_event
from tests.support.fixtures import ALL_FIXTURES, CONTENT_TYPE, PNG_CARDIOMEGALY, fixture_id
from tests.support.serving import run_isolated, serving


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


HEATMAP_IN_A_FRESH_PROCESS = """
import json, os, sys
os.environ["XRAY_EFS_ROOT"] = sys.argv[1]
os.environ.pop("XRAY_BACKEND", None)
import app
from lambda_sim.context import LambdaContext
from lambda_sim.events import proxy_event
body = open(sys.argv[2], "rb").read()
answers = []
for query in ({}, {"heatmap": "top"}, {"heatmap": "Effusion"}):
    response = app.app(proxy_event("POST", "/xray", body, "image/png", query=query),
                       LambdaContext())
    answers.append([response["statusCode"], json.loads(response["body"]),
                    sorted(m for m in sys.modules if m.split(".")[0] == "torch")])
print(json.dumps({"answers": answers, "backend": app.get_model().status()["backend"]}))
"""


def test_given_a_fresh_container_when_heatmaps_are_asked_then_no_torch_is_imported(demo_store):
    """A heatmap on the default backend (onnxruntime) is the graph's feature map and numpy:
    in a fresh interpreter, through the Lambda entry point, torch never enters sys.modules."""
    out = run_isolated(HEATMAP_IN_A_FRESH_PROCESS, str(demo_store), str(PNG_CARDIOMEGALY))
    result = json.loads(out.strip().splitlines()[-1])
    assert result["backend"] == "onnxruntime"
    (plain_status, plain, plain_torch), *heatmaps = result["answers"]
    assert plain_status == 200 and "heatmap" not in plain and plain_torch == []
    for (status, answer, torch_modules), label in zip(heatmaps, (plain["findings"][0]["label"],
                                                                 "Effusion")):
        assert status == 200 and torch_modules == [], torch_modules[:5]
        heatmap = answer["heatmap"]
        assert list(heatmap) == ["method", "target_layer", "label", "probability", "threshold",
                                 "size", "cam", "peak", "png"]
        assert (heatmap["method"], heatmap["target_layer"], heatmap["label"]) == (
            "Grad-CAM", "features.norm5", label)
        assert answer["findings"] == plain["findings"]
        assert heatmap["png"].startswith("data:image/png;base64,")
