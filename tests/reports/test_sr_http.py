"""POST /xray with Accept: application/dicom answers the SR, through chalice.test.Client and
through the real Lambda entry point (app(event, context) with an API Gateway proxy event, which
base64-encodes a binary answer); a heatmap is JSON only (400) and an unknown Accept gets 406."""
import base64
import json

import pytest

from lambda_sim.context import LambdaContext
from lambda_sim.events import proxy_event
from tests.support.fixtures import CONTENT_TYPE, DCM_JPEG_MONO1, PNG_CARDIOMEGALY, fixture_id
from tests.support.sr_checks import (
    assert_says_what_the_answer_says,
    dciodvfy,
    findings_of,
    read_sr,
    unexpected,
)

DICOM = {"Accept": "application/dicom"}


def post(client, path, headers=None, query=""):
    return client.http.post(f"/xray{query}", body=path.read_bytes(),
                            headers={"Content-Type": CONTENT_TYPE[path.suffix], **(headers or {})})


@pytest.mark.parametrize("path", [DCM_JPEG_MONO1, PNG_CARDIOMEGALY], ids=fixture_id)
def test_given_accept_dicom_when_posting_then_the_answer_is_the_sr_of_the_json_answer(
        client, path, tmp_path):
    response = post(client, path, DICOM)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/dicom"
    assert "Accept" in response.headers["Vary"]
    assert isinstance(response.body, bytes) and response.body[128:132] == b"DICM"
    (tmp_path / "sr.dcm").write_bytes(response.body)
    errors, warned = dciodvfy(tmp_path / "sr.dcm")
    assert errors == [] and unexpected(warned) == []
    answer = json.loads(post(client, path).body)  # the same bytes as JSON: the same findings
    assert_says_what_the_answer_says(read_sr(response.body), answer)


def test_given_accept_dicom_through_the_lambda_entry_then_base64_bytes_of_the_same_sr(client):
    import app as app_module
    event = proxy_event("POST", "/xray", DCM_JPEG_MONO1.read_bytes(), "application/dicom",
                        headers=DICOM)
    response = app_module.app(event, LambdaContext())
    assert response["statusCode"] == 200 and response["isBase64Encoded"] is True
    assert response["headers"]["Content-Type"] == "application/dicom"
    through_lambda = read_sr(base64.b64decode(response["body"]))
    through_client = read_sr(post(client, DCM_JPEG_MONO1, DICOM).body)
    assert findings_of(through_lambda) == findings_of(through_client)
    for keyword in ("StudyInstanceUID", "PatientName", "PatientID", "SOPClassUID"):
        assert through_lambda[keyword].value == through_client[keyword].value
    # a request's own new series and instance
    assert through_lambda.SOPInstanceUID != through_client.SOPInstanceUID


def test_given_a_heatmap_with_accept_dicom_then_400_invalid_parameter(client):
    response = post(client, PNG_CARDIOMEGALY, DICOM, query="?heatmap=top")
    assert response.status_code == 400
    error = json.loads(response.body)
    assert error["Code"] == "InvalidParameter" and "Accept: application/json" in error["Message"]


def test_given_accept_html_then_406_listing_the_formats(client):
    response = post(client, PNG_CARDIOMEGALY, {"Accept": "text/html"})
    assert response.status_code == 406
    error = json.loads(response.body)
    assert error["Code"] == "NotAcceptable" and "application/dicom" in error["Message"]
