"""Given a job on a stage that keeps DICOM headers (XRAY_KEEP_DICOM_HEADERS), when it is read
with an Accept header, then its result is negotiated as POST /xray's answer is (JSON, DICOM SR,
FHIR), the same report on every read; the DICOM header elements a report copies are kept beside
the result, never shown in the JSON status; a job without a result answers only its JSON
status; and force travels with the job. (A stage that keeps none: tests/jobs/test_worker.py.)"""
import io
import json

import numpy as np
import pydicom
import pytest

from chalicelib.settings import KEEP_DICOM_HEADERS
from tests.support.dicom_factory import make_dicom
from tests.support.fixtures import DCM_MONO2, PNG_CARDIOMEGALY
from tests.support.jobs import upload

DICOM_SR, FHIR = "application/dicom", "application/fhir+json"


@pytest.fixture(scope="module")
def app_env():
    return {KEEP_DICOM_HEADERS: "true"}


def classified(jobs_app, body: bytes, content_type: str, **fields) -> str:
    """A job (with the request's extra `fields`) uploaded and handled by the worker: its id."""
    answer = jobs_app.job(content_type, len(body), **fields)
    assert upload(answer["upload"], body).status_code == 204
    (event,) = jobs_app.stack.worker_events()
    jobs_app.deliver(event)
    return answer["job_id"]


def test_given_a_dicom_job_then_the_record_keeps_its_study_elements_but_the_status_hides_them(
        jobs_app):
    source = pydicom.dcmread(DCM_MONO2)
    job_id = classified(jobs_app, DCM_MONO2.read_bytes(), "application/dicom")

    status, shown = jobs_app.status(job_id)
    assert status == 200 and shown["status"] == "succeeded"
    assert "header" not in shown and str(source.PatientID) not in json.dumps(shown)
    kept = jobs_app.stack.store().read(job_id).job.header
    assert pydicom.Dataset.from_json(kept).StudyInstanceUID == source.StudyInstanceUID


def test_given_a_png_job_then_no_header_is_kept(jobs_app):
    job_id = classified(jobs_app, PNG_CARDIOMEGALY.read_bytes(), "image/png")
    assert jobs_app.stack.store().read(job_id).job.header is None


def test_given_a_succeeded_dicom_job_then_its_sr_joins_the_study_and_is_the_same_on_every_read(
        jobs_app):
    source = pydicom.dcmread(DCM_MONO2)
    job_id = classified(jobs_app, DCM_MONO2.read_bytes(), "application/dicom")

    first, second = (jobs_app.report(job_id, DICOM_SR) for _ in range(2))
    assert first.status_code == 200 and first.headers["Content-Type"] == DICOM_SR
    sr = pydicom.dcmread(io.BytesIO(first.body))
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.PatientID == source.PatientID
    assert sr.SOPInstanceUID != source.SOPInstanceUID
    assert second.body == first.body  # the same instance, byte for byte


def test_given_a_succeeded_job_then_its_fhir_bundle_names_the_study(jobs_app):
    source = pydicom.dcmread(DCM_MONO2)
    job_id = classified(jobs_app, DCM_MONO2.read_bytes(), "application/dicom")
    response = jobs_app.report(job_id, FHIR)
    assert response.status_code == 200 and response.headers["Content-Type"] == FHIR
    bundle = json.loads(response.body)
    assert bundle["resourceType"] == "Bundle"
    assert source.StudyInstanceUID in json.dumps(bundle)
    assert json.loads(jobs_app.report(job_id, FHIR).body) == bundle
    # issued when the job finished, not when it was read
    assert bundle["timestamp"].startswith(jobs_app.status(job_id)[1]["updated_at"][:-1])


def test_given_a_job_without_a_result_then_a_report_is_406_naming_its_status(jobs_app):
    answer = jobs_app.job("image/png", 1000)
    response = jobs_app.report(answer["job_id"], DICOM_SR)
    error = json.loads(response.body)
    assert (response.status_code, error["Code"]) == (406, "NotAcceptable")
    assert "awaiting_upload" in error["Message"]
    response = jobs_app.report(answer["job_id"], "application/json, application/dicom;q=0.5")
    assert response.status_code == 200
    assert json.loads(response.body)["status"] == "awaiting_upload"


def ct_slice() -> bytes:
    pixels = (np.indices((256, 256)).sum(axis=0) % 256).astype(np.uint8)
    return make_dicom(pixels, Modality="CT")


def test_given_a_dicom_outside_the_intended_use_then_the_job_fails_unless_forced(jobs_app):
    body = ct_slice()
    refused = classified(jobs_app, body, "application/dicom")
    job = jobs_app.status(refused)[1]
    assert job["status"] == "failed" and job["error"]["Code"] == "NotAChestRadiograph"

    forced = classified(jobs_app, body, "application/dicom", force=True)
    job = jobs_app.status(forced)[1]
    assert job["status"] == "succeeded"
    assert job["result"]["image"]["intended_use"]["result"] == "forced"


@pytest.mark.parametrize("force", ["yes", 1, None])
def test_given_a_force_that_is_not_a_boolean_then_400(jobs_app, force):
    status, answer = jobs_app.create({"content_type": "application/dicom", "size": 10,
                                      "force": force})
    assert (status, answer["Code"]) == (400, "InvalidJobRequest") and "force" in answer["Message"]
