"""POST /xray with reduced decoding: on only where the stage opts in (XRAY_REDUCED_DECODING)
and the model's manifest names a coarsest level; the answer keeps the file's own size and says
what was decoded, as the OpenAPI document describes; off, the answer is the exact one."""
import json

import pytest

from benchmarks.samples import rg1_j2k_lossless
from chalicelib.openapi.document import build
from chalicelib.settings import REDUCED_DECODING, Settings
from tests.support.contract import Contract
from tests.support.fixtures import DCM_J2K, FIXTURES, PNG_CARDIOMEGALY
from tests.support.model_store import copy_store, edit_manifest
from tests.support.serving import serving

DICOM = {"Content-Type": "application/dicom"}


@pytest.fixture(scope="module")
def stores(demo_store, tmp_path_factory):
    """(the demo store, a copy whose manifest accepts reduced decoding down to level 2)."""
    reduced = copy_store(demo_store, tmp_path_factory.mktemp("reduced"))
    edit_manifest(reduced, reduced_decoding={"coarsest_level": 2})
    return demo_store, reduced


def classify(store, body: bytes, headers=DICOM, **env: str):
    with serving(store, **env) as client:
        response = client.http.post("/xray", headers=headers, body=body)
        assert response.status_code == 200, response.body
        return json.loads(response.body)


def schema_errors(answer) -> list:
    import app
    contract = Contract(build(app.app.routes, Settings.from_env({}), "reduced-decoding"))
    return contract.schema_errors(answer, "components", "schemas", "Classification")


def test_given_the_stage_opted_in_and_the_manifest_allows_then_a_coarser_level_is_decoded(
        stores):
    _, reduced = stores
    answer = classify(reduced, rg1_j2k_lossless(FIXTURES), **{REDUCED_DECODING: "true"})
    image = answer["image"]
    assert (image["width"], image["height"]) == (1841, 1955)
    assert image["decoded"] == {"level": 2, "width": 461, "height": 489}
    assert image["intended_use"]["result"] == "passed"
    assert schema_errors(answer) == []


def test_given_the_stage_did_not_opt_in_then_the_answer_is_the_exact_one(stores):
    demo, reduced = stores
    body = DCM_J2K.read_bytes()
    exact = classify(demo, body)
    not_opted_in = classify(reduced, body)
    assert "decoded" not in not_opted_in["image"] and not_opted_in["image"] == exact["image"]
    assert not_opted_in["findings"] == exact["findings"]


def test_given_the_stage_opted_in_but_the_manifest_has_no_level_then_the_answer_is_exact(
        stores):
    demo, _ = stores
    body = DCM_J2K.read_bytes()
    answer = classify(demo, body, **{REDUCED_DECODING: "true"})
    assert "decoded" not in answer["image"]
    assert answer["findings"] == classify(demo, body)["findings"]


def test_given_reduced_decoding_then_a_png_is_decoded_whole(stores):
    _, reduced = stores
    answer = classify(reduced, PNG_CARDIOMEGALY.read_bytes(), {"Content-Type": "image/png"},
                      **{REDUCED_DECODING: "true"})
    assert "decoded" not in answer["image"] and answer["image"]["width"] == 512


def test_the_document_refuses_a_decoded_member_it_does_not_describe(stores):
    _, reduced = stores
    answer = classify(reduced, DCM_J2K.read_bytes(), **{REDUCED_DECODING: "true"})
    assert answer["image"]["decoded"]["level"] == 2
    answer["image"]["decoded"]["scale"] = 0.25
    assert any("scale" in error for error in schema_errors(answer))


def test_the_request_log_line_says_what_was_decoded(stores, capsys):
    _, reduced = stores
    capsys.readouterr()
    classify(reduced, DCM_J2K.read_bytes(), **{REDUCED_DECODING: "true"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()
             if line.startswith("{")]
    (request,) = [line for line in lines if line.get("event") == "request"]
    assert request["image"]["decoded"] == {"level": 2, "width": 461, "height": 489}
    assert request["image"]["width"] == 1841
