"""POST /xray's answer beyond the findings: the model's intended use checked against a DICOM's
header (422 unless ?force=true, which the answer then says), and the result format negotiated
by Accept before any work is done."""
import json

import numpy as np
import pytest

from tests.support.dicom_factory import make_dicom
from tests.support.fixtures import DCM_MONO2, PNG_CARDIOMEGALY
from tests.support.model_store import copy_store, current_dir, edit_manifest
from tests.support.serving import serving


def post(client, body, content_type="application/dicom", query="", **headers):
    response = client.http.post(f"/xray{query}", headers={"Content-Type": content_type,
                                                          **headers}, body=body)
    return response.status_code, json.loads(response.body), response.headers


def radiograph(**attributes) -> bytes:
    """A small chest-sized DICOM whose header says what `attributes` say."""
    pixels = (np.indices((256, 256)).sum(axis=0) % 256).astype(np.uint8)
    return make_dicom(pixels, **{"Modality": "DX", "BodyPartExamined": "CHEST",
                                 "ViewPosition": "PA", **attributes})


def test_given_a_frontal_chest_dicom_then_the_image_member_reports_the_check(client):
    status, answer, _ = post(client, DCM_MONO2.read_bytes())
    assert status == 200
    image = answer["image"]
    assert (image["modality"], image["body_part"], image["view"]) == ("DX", "CHEST", "PA")
    assert image["intended_use"] == {"result": "passed"}


def test_given_a_png_then_the_image_member_says_not_checked(client):
    status, answer, _ = post(client, PNG_CARDIOMEGALY.read_bytes(), "image/png")
    assert status == 200 and answer["image"]["intended_use"]["result"] == "not checked"
    assert "modality" not in answer["image"]


@pytest.mark.parametrize("attributes, code, words", [
    ({"Modality": "CT"}, "NotAChestRadiograph", "Modality (0008,0060) is CT"),
    ({"BodyPartExamined": "KNEE"}, "NotAChestRadiograph", "BodyPartExamined (0018,0015) is KNEE"),
    ({"ViewPosition": "LL"}, "UnsupportedView", "ViewPosition (0018,5101) is LL"),
], ids=["ct", "knee", "lateral"])
def test_given_a_dicom_the_model_was_not_made_for_then_422_and_force_classifies_it(
        client, attributes, code, words):
    body = radiograph(**attributes)
    status, refused, _ = post(client, body)
    assert (status, refused["Code"]) == (422, code) and words in refused["Message"]

    status, forced, _ = post(client, body, query="?force=true")
    assert status == 200 and len(forced["findings"]) == 18
    assert forced["image"]["intended_use"]["result"] == "forced"
    assert forced["image"]["intended_use"]["refusal"] == refused


def test_given_a_malformed_force_then_400_saying_which_values_work(client):
    status, answer, _ = post(client, radiograph(), query="?force=maybe")
    assert (status, answer["Code"]) == (400, "InvalidParameter")
    assert "force=true" in answer["Message"]


def test_given_a_model_whose_manifest_accepts_laterals_then_a_lateral_is_classified(
        demo_store, tmp_path):
    store = copy_store(demo_store, tmp_path)
    edit_manifest(store, accepts={"views": ["PA", "AP", "LL"]})
    assert current_dir(store).exists()
    with serving(store) as lateral_client:
        status, answer, _ = post(lateral_client, radiograph(ViewPosition="LL"))
    assert status == 200 and answer["image"]["intended_use"] == {"result": "passed"}


def test_given_an_accept_nothing_is_offered_in_then_406_before_reading_the_body(client):
    status, answer, _ = post(client, b"", "image/png", Accept="text/html")
    assert (status, answer["Code"]) == (406, "NotAcceptable")
    assert "application/dicom" in answer["Message"] and "application/fhir+json" in answer["Message"]


@pytest.mark.parametrize("accept", ["application/dicom", "application/fhir+json"])
def test_given_a_heatmap_with_a_report_format_then_400_saying_heatmaps_are_json_only(
        client, accept):
    status, answer, _ = post(client, PNG_CARDIOMEGALY.read_bytes(), "image/png",
                             query="?heatmap=top", Accept=accept)
    assert (status, answer["Code"]) == (400, "InvalidParameter")
    assert "JSON answer only" in answer["Message"]


def test_given_accept_json_then_the_json_answer_varies_by_accept(client):
    status, answer, headers = post(client, PNG_CARDIOMEGALY.read_bytes(), "image/png",
                                   Accept="application/json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert "Accept" in headers["Vary"] and len(answer["findings"]) == 18
