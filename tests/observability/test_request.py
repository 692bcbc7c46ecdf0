"""The request line, the audit line and the EMF metrics of each route, through the real Lambda
entry point app(event, LambdaContext()) with API Gateway proxy events as an authorizer leaves
them (identity.userArn for IAM, authorizer.claims.sub for Cognito)."""
import json

import pytest

from lambda_sim.context import LambdaContext
from lambda_sim.events import proxy_event
from tests.support.emf import check_emf, metrics_of, split_lines
from tests.support.fixtures import DCM_MONO2, PNG_CARDIOMEGALY
from tests.support.serving import serving

IAM_ARN = "arn:aws:iam::123456789012:user/radiologist"
COGNITO_SUB = "6f1c1d2e-8a3b-4c5d-9e0f-123456789abc"
REQUEST_FIELDS = {"level", "location", "message", "timestamp", "service", "event", "request_id",
                  "lambda_request_id", "cold_start", "stage", "method", "route", "status",
                  "total_ms", "request_bytes", "response_bytes"}


@pytest.fixture(scope="module")
def lambda_app(demo_store):
    import app as app_module
    with serving(demo_store, XRAY_STAGE="test"):
        yield app_module.app


def iam(event: dict) -> dict:
    event["requestContext"]["identity"].update(userArn=IAM_ARN, caller="AIDAEXAMPLE",
                                               apiKeyId="k1a2b3")
    return event


def cognito(event: dict) -> dict:
    event["requestContext"]["authorizer"] = {"claims": {"sub": COGNITO_SUB,
                                                        "email": "someone@example.org"}}
    return event


def invoke(app, capsys, event) -> tuple:
    """(status, answer, EMF documents, log lines) of one invocation."""
    capsys.readouterr()
    response = app(event, LambdaContext(request_id="lambda-req-1"))
    out = capsys.readouterr()
    emf, logs = split_lines(out.out)
    for document in emf:
        check_emf(document)
    body = response["body"]
    json_answer = response["headers"].get("Content-Type") == "application/json" and body
    return response["statusCode"], json.loads(body) if json_answer else body, emf, logs


def only(lines: list, event: str) -> dict:
    found = [line for line in lines if line.get("event") == event]
    assert len(found) == 1, lines
    return found[0]


def test_given_an_iam_caller_when_a_png_is_classified_then_one_request_line_and_one_audit_line(
        lambda_app, capsys):
    # given an upload signed by an IAM user
    body = PNG_CARDIOMEGALY.read_bytes()
    # when it is classified
    status, answer, emf, logs = invoke(lambda_app, capsys,
                                       iam(proxy_event("POST", "/xray", body, "image/png")))
    # then the request line says how it went and how long each step took, nothing more
    assert status == 200
    line = only(logs, "request")
    assert REQUEST_FIELDS | {"timings_ms", "image"} == set(line)
    assert (line["stage"], line["method"], line["route"], line["status"]) == (
        "test", "POST", "/xray", 200)
    assert line["request_id"] == "0f6a2e5c-0000-4000-8000-000000000000"
    assert line["lambda_request_id"] == "lambda-req-1"
    assert line["request_bytes"] == len(body)
    assert line["response_bytes"] == len(json.dumps(answer, separators=(",", ":")))
    assert set(line["timings_ms"]) == set(answer["timings_ms"])
    assert line["image"] == answer["image"] and line["image"]["format"] == "png"
    assert isinstance(line["cold_start"], bool)
    # and the audit line names the caller, the address and the model, and the outcome
    audit = only(logs, "audit")
    assert audit["principal"] == {"kind": "iam", "id": IAM_ARN, "api_key_id": "k1a2b3"}
    assert audit["source_ip"] == "203.0.113.7" and audit["action"] == "classify"
    assert audit["model"] == {key: answer["model"][key] for key in ("name", "version", "sha256")}
    assert (audit["outcome"], audit["status"], audit["heatmap"]) == ("classified", 200, False)
    assert audit["request_id"] == line["request_id"]
    # and no line carries a finding
    text = json.dumps(logs) + json.dumps(emf)
    assert "Cardiomegaly" not in text and "probability" not in text


def test_given_a_cognito_user_when_a_heatmap_is_asked_then_the_audit_names_the_sub(
        lambda_app, capsys):
    event = cognito(proxy_event("POST", "/xray", DCM_MONO2.read_bytes(), "application/dicom",
                                query={"heatmap": "top"}))
    status, answer, emf, logs = invoke(lambda_app, capsys, event)
    assert status == 200
    audit = only(logs, "audit")
    assert audit["principal"] == {"kind": "cognito", "id": COGNITO_SUB, "api_key_id": None}
    assert audit["heatmap"] is True and "someone@example.org" not in json.dumps(logs)
    line = only(logs, "request")
    assert "heatmap" in line["timings_ms"] and line["image"]["format"] == "dicom"
    names = {name for name, _, _ in metrics_of(emf)}
    assert {"HeatmapLatency", "DecodeLatency", "InferenceLatency", "DecodedImages"} <= names


def test_given_a_refused_upload_when_invoked_then_the_lines_carry_the_code_not_the_message(
        lambda_app, capsys):
    # given a PNG declared as JPEG: our message quotes the Content-Type the client sent
    event = iam(proxy_event("POST", "/xray", PNG_CARDIOMEGALY.read_bytes(),
                            "image/jpeg"))
    status, answer, emf, logs = invoke(lambda_app, capsys, event)
    assert status == 415 and "image/jpeg" in answer["Message"]
    line = only(logs, "request")
    assert line["error_code"] == "UnsupportedImageType" and "timings_ms" not in line
    audit = only(logs, "audit")
    assert (audit["outcome"], audit["error_code"]) == ("refused", "UnsupportedImageType")
    assert answer["Message"] not in json.dumps(logs)
    errors = [(dims, value) for name, dims, value in metrics_of(emf) if name == "Errors"]
    assert errors == [({"stage": "test", "route": "/xray", "error_code": "UnsupportedImageType",
                        "service": "chest-xray"}, [1.0])]
    statuses = [dims["status_class"] for name, dims, _ in metrics_of(emf) if name == "Requests"]
    assert statuses == ["4xx"]


def test_given_chalices_own_415_when_invoked_then_it_is_observed_too(lambda_app, capsys):
    status, answer, emf, logs = invoke(lambda_app, capsys, iam(proxy_event(
        "POST", "/xray", PNG_CARDIOMEGALY.read_bytes(), "image/*")))
    assert status == 415
    assert only(logs, "request")["error_code"] == "UnsupportedMediaType"
    assert only(logs, "audit")["outcome"] == "refused"


@pytest.mark.parametrize("method, path, headers, status", [
    ("GET", "/health", {}, 200),
    ("GET", "/model", {}, 200),
    ("GET", "/", {}, 200),
    ("OPTIONS", "/xray", {}, 204),
    ("OPTIONS", "/xray", {"Origin": "https://not-allowed.example"}, 403),
], ids=["health", "model", "page", "options", "options-refused"])
def test_given_a_route_without_classification_when_invoked_then_a_request_line_and_no_audit(
        lambda_app, capsys, method, path, headers, status):
    got, _, emf, logs = invoke(lambda_app, capsys,
                               iam(proxy_event(method, path, headers=headers)))
    assert got == status
    line = only(logs, "request")
    assert (line["method"], line["route"], line["status"]) == (method, path, status)
    assert line["request_bytes"] == 0 and line["response_bytes"] >= 0
    assert not [entry for entry in logs if entry.get("event") == "audit"]
    requests = [dims for name, dims, _ in metrics_of(emf) if name == "Requests"]
    assert requests == [{"stage": "test", "route": path, "status_class": f"{status // 100}xx",
                         "service": "chest-xray"}]
    latency = [dims for name, dims, _ in metrics_of(emf) if name == "Latency"]
    assert latency == [{"stage": "test", "route": path, "service": "chest-xray"}]


def test_given_a_preview_when_invoked_then_its_line_says_what_was_decoded(lambda_app, capsys):
    status, answer, emf, logs = invoke(lambda_app, capsys, proxy_event(
        "POST", "/preview", DCM_MONO2.read_bytes(), "application/dicom"))
    assert status == 200
    line = only(logs, "request")
    assert line["image"] == answer["image"] and "timings_ms" not in line
    assert not [entry for entry in logs if entry.get("event") == "audit"]
    decoded = [dims for name, dims, _ in metrics_of(emf) if name == "DecodedImages"]
    assert decoded == [{"stage": "test", "format": "dicom", "service": "chest-xray"}]


def test_given_a_fresh_process_when_the_first_request_loads_the_model_then_cold_start_and_load_time(
        demo_store):
    """A fresh interpreter: the first request of a process is its cold start, the next is not,
    and the request that loaded the model reports the ModelLoadTime metric."""
    from tests.support.serving import run_isolated
    out = run_isolated(
        "import json, sys\n"
        "import app\n"
        "from lambda_sim.context import LambdaContext\n"
        "from lambda_sim.events import proxy_event\n"
        "body = open(sys.argv[1], 'rb').read()\n"
        "for _ in range(2):\n"
        "    app.app(proxy_event('POST', '/xray', body, 'image/png'), LambdaContext())\n",
        str(PNG_CARDIOMEGALY), XRAY_EFS_ROOT=str(demo_store), XRAY_STAGE="test")
    emf, logs = split_lines(out)
    for document in emf:
        check_emf(document)
    lines = [line for line in logs if line.get("event") == "request"]
    assert [line["cold_start"] for line in lines] == [True, False]
    found = metrics_of(emf)
    assert [name for name, _, _ in found].count("ColdStart") == 1
    loads = [value for name, _, value in found if name == "ModelLoadTime"]
    assert len(loads) == 1 and loads[0][0] > 0


def test_given_a_stow_request_then_one_request_line_and_one_audit_line_with_counts_not_uids(
        lambda_app, capsys):
    from tests.support.stow import CONTENT_TYPE, body_of, uids_of
    instances = [DCM_MONO2.read_bytes(), PNG_CARDIOMEGALY.read_bytes(), DCM_MONO2.read_bytes()]
    event = iam(proxy_event("POST", "/studies", body_of(instances), CONTENT_TYPE))
    status, answer, emf, logs = invoke(lambda_app, capsys, event)
    assert status == 202
    line = only(logs, "request")
    assert REQUEST_FIELDS | {"timings_ms", "stow"} == set(line)
    assert line["stow"] == {"instances": 3, "classified": 2, "failure_reasons": {"0xC000": 1}}
    assert line["request_bytes"] == len(body_of(instances)) and line["route"] == "/studies"
    audit = only(logs, "audit")
    assert (audit["action"], audit["via"], audit["outcome"], audit["status"]) == (
        "classify", "stow", "classified", 202)
    assert audit["instances"] == line["stow"]
    assert audit["principal"] == {"kind": "iam", "id": IAM_ARN, "api_key_id": "k1a2b3"}
    text = json.dumps(logs) + json.dumps(emf)
    assert all(uid not in text for uid in uids_of(DCM_MONO2.read_bytes()))
    assert "Cardiomegaly" not in text and "probability" not in text
