"""Every route and error path through chalice.test.Client, with the shared radiographs."""
import json

import pytest

from chalicelib.settings import DEFAULT_MAX_UPLOAD_BYTES
from tests.support.fixtures import (
    ALL_FIXTURES,
    CONTENT_TYPE,
    DCM_JPEG_MONO1,
    DCM_MONO2,
    PNG_CARDIOMEGALY,
    fixture_id,
    jpeg_of,
)

TIMINGS = {"decode", "preprocess", "inference", "model_load"}


def post(client, body: bytes, content_type: str):
    response = client.http.post("/xray", headers={"Content-Type": content_type}, body=body)
    return response.status_code, json.loads(response.body)


def assert_well_formed(result: dict) -> None:
    assert set(result) == {"model", "findings", "positive", "image", "timings_ms"}
    model = result["model"]
    assert model["name"] == "densenet121-xrv-untrained-demo" and model["trained"] is False
    assert len(model["sha256"]) == 64 and "not a diagnosis" in model["warning"]
    findings = result["findings"]
    assert len(findings) == 18
    assert {f["label"] for f in findings} >= {"Cardiomegaly", "Effusion", "Pneumothorax"}
    probabilities = [f["probability"] for f in findings]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert result["positive"] == [f["label"] for f in findings
                                  if f["probability"] >= f["threshold"]]
    assert set(result["timings_ms"]) == TIMINGS
    assert all(value >= 0 for value in result["timings_ms"].values())


def probabilities(result: dict) -> dict:
    return {f["label"]: f["probability"] for f in result["findings"]}


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_every_fixture_is_classified_under_its_type_and_as_octet_stream(client, path):
    status, typed = post(client, path.read_bytes(), CONTENT_TYPE[path.suffix])
    assert status == 200, typed
    assert_well_formed(typed)
    status, sniffed = post(client, path.read_bytes(), "application/octet-stream")
    assert status == 200 and probabilities(sniffed) == probabilities(typed)


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/jpg"])
def test_jpeg_including_the_unregistered_image_jpg(client, content_type):
    status, result = post(client, jpeg_of(PNG_CARDIOMEGALY), content_type)
    assert status == 200 and result["image"]["format"] == "jpeg"


def test_content_type_parameters_are_ignored(client):
    status, _ = post(client, PNG_CARDIOMEGALY.read_bytes(), "image/png; charset=binary")
    assert status == 200


@pytest.mark.parametrize("twin", [DCM_MONO2, DCM_JPEG_MONO1], ids=fixture_id)
def test_the_dicom_twins_give_the_pngs_findings(client, twin):
    _, png = post(client, PNG_CARDIOMEGALY.read_bytes(), "image/png")
    _, dcm = post(client, twin.read_bytes(), "application/dicom")
    p, d = probabilities(png), probabilities(dcm)
    assert max(abs(p[label] - d[label]) for label in p) < 0.01


@pytest.mark.parametrize("content_type, body, status, code, words", [
    ("text/plain", b"hello", 415, "UnsupportedMediaType", "text/plain"),
    ("image/gif", b"GIF89a....", 415, "UnsupportedMediaType", "image/gif"),
    ("image/png", b"", 400, "InvalidImage", "empty"),
    ("application/x-www-form-urlencoded", b"\x89PNG...", 415, "UnsupportedImageType",
     "-H 'Content-Type: image/png'"),
    ("multipart/form-data; boundary=x", b"--x\r\n", 415, "UnsupportedImageType", "raw bytes"),
    ("image/png", b"not an image at all", 415, "UnsupportedImageType", "not a PNG, JPEG or DICOM"),
    ("image/jpeg", PNG_CARDIOMEGALY.read_bytes(), 415, "UnsupportedImageType", "image/png"),
    ("image/png", PNG_CARDIOMEGALY.read_bytes()[:50_000], 400, "InvalidImage", "truncated"),
    ("application/dicom", DCM_MONO2.read_bytes()[:100_000], 400, "InvalidImage", "truncated"),
    ("application/octet-stream", b"\0" * (DEFAULT_MAX_UPLOAD_BYTES + 1), 413, "PayloadTooLarge",
     "limit"),
], ids=["text", "gif", "empty", "curl-default", "multipart", "garbage", "mislabelled",
        "truncated-png", "truncated-dicom", "too-large"])
def test_bad_input_gets_a_clear_json_4xx(client, content_type, body, status, code, words):
    got_status, result = post(client, body, content_type)
    assert (got_status, result["Code"]) == (status, code)
    assert words in result["Message"] and "Traceback" not in result["Message"]


def test_the_upload_limit_fits_a_lambda_payload_after_base64():
    encoded = (DEFAULT_MAX_UPLOAD_BYTES + 2) // 3 * 4
    assert 4_000_000 < DEFAULT_MAX_UPLOAD_BYTES and encoded < 6 * 1024 * 1024 - 32 * 1024


def test_other_methods_and_paths_are_json_errors(client):
    assert client.http.get("/xray").status_code == 405
    assert client.http.get("/nowhere").status_code in (403, 404)


def test_health_reports_readiness_and_the_model(client):
    post(client, PNG_CARDIOMEGALY.read_bytes(), "image/png")
    health = json.loads(client.http.get("/health").body)
    assert health["live"] is True and health["ready"] is True
    assert health["model"]["state"] == "ready"
    assert health["model"]["model"]["name"] == "densenet121-xrv-untrained-demo"


def test_model_route_serves_the_manifest(client):
    manifest = json.loads(client.http.get("/model").body)
    assert len(manifest["labels"]) == 18 and manifest["labels"][10] == "Cardiomegaly"
    assert set(manifest["thresholds"]) == set(manifest["labels"])
    assert manifest["input"] == {"channels": 1, "size": 224}
    assert manifest["preprocessing"]["recipe"] == "xrv"
    assert manifest["architecture"]["name"] == "densenet121"
    assert manifest["weights"]["format"] == "safetensors"
    assert "never trained" in manifest["provenance"]["source"]
    assert manifest["trained"] is False


def test_each_request_leaves_one_log_line_without_pixels_or_findings(client, capsys):
    # given a classification and a refused upload
    capsys.readouterr()
    post(client, PNG_CARDIOMEGALY.read_bytes(), "image/png")
    post(client, b"not an image", "image/png")
    # then each left exactly one request line (JSON on stdout, beside its EMF metrics); the
    # classification's says what was decoded and how long each stage took, and nothing of the
    # pixels or the findings
    text = capsys.readouterr().out
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    requests = [line for line in lines if line.get("event") == "request"]
    assert [(line["route"], line["status"]) for line in requests] == [("/xray", 200),
                                                                       ("/xray", 415)]
    classified, refused = requests
    assert classified["image"]["format"] == "png" and set(classified["timings_ms"]) == TIMINGS
    assert isinstance(classified["cold_start"], bool) and "timings_ms" not in refused
    assert refused["error_code"] == "UnsupportedImageType"
    assert "Cardiomegaly" not in text and "probability" not in text
