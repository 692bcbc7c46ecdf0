"""A job end to end on a moto server: created through the API, uploaded with a plain HTTP
multipart POST to the presigned URL, the S3 event moto emits read from the SQS queue the
worker's rule targets, and handled by the worker as job_worker makes it, with the demo model.
The result is compared with what POST /xray answers for the same bytes."""
import json

import numpy as np
import pytest

from chalicelib.errors import ModelUnavailable
from chalicelib.jobs import layout
from chalicelib.settings import JOB_MAX_BYTES, SES_SENDER, WEBHOOK_SECRET_NAME
from lambda_sim.context import LambdaContext
from tests.jobs.conftest import WORKER_TIMEOUT_S, findings, without_timings
from tests.support.dicom_factory import decompressed, make_dicom
from tests.support.fixtures import (
    DCM_J2K,
    DCM_MONO2,
    PNG_CARDIOMEGALY,
    PNG_NOFINDING,
    jpeg_of,
)
from tests.support.jobs import upload

JOB_LIMIT = 16 * 1024 * 1024
NOTIFY = {"email": "radiologist@example.org", "webhook": "https://hooks.example.org/xray"}


@pytest.fixture(scope="module")
def app_env():
    return {JOB_MAX_BYTES: str(JOB_LIMIT), SES_SENDER: "xray-jobs@example.org",
            WEBHOOK_SECRET_NAME: "xray-webhook-secret"}


def uploaded(jobs_app, body: bytes, content_type: str, notify=None, size=None):
    """A job whose file is in the bucket: (job_id, the one event its upload emitted)."""
    answer = jobs_app.job(content_type, len(body) if size is None else size, notify=notify)
    response = upload(answer["upload"], body)
    assert response.status_code == 204, response.text
    (event,) = jobs_app.stack.worker_events()
    return answer["job_id"], event


def record(jobs_app, job_id):
    return jobs_app.stack.store().read(job_id).job


def cases():
    png = PNG_CARDIOMEGALY.read_bytes()
    return {"png": (png, "image/png"), "jpeg": (jpeg_of(PNG_NOFINDING), "image/jpeg"),
            "dicom": (DCM_MONO2.read_bytes(), "application/dicom"),
            "sniffed": (png, "application/octet-stream")}


@pytest.mark.parametrize("case", list(cases()))
def test_given_an_upload_when_its_event_reaches_job_worker_then_succeeded_as_the_sync_route(
        jobs_app, case, capsys):
    body, content_type = cases()[case]
    job_id, event = uploaded(jobs_app, body, content_type)
    assert event["detail"]["object"]["key"] == layout.upload_key(job_id)
    assert jobs_app.status(job_id)[1]["status"] == "awaiting_upload"  # the upload alone
    capsys.readouterr()

    jobs_app.module.job_worker(event, LambdaContext(timeout_s=WORKER_TIMEOUT_S))

    status, job = jobs_app.status(job_id)
    assert status == 200 and job["status"] == "succeeded", job
    assert set(job) == {"job_id", "status", "created_at", "updated_at", "result"}
    sync_status, sync = jobs_app.classify(body, content_type)
    assert sync_status == 200
    assert findings(job["result"]) == findings(sync)
    assert without_timings(job["result"]) == without_timings(sync)
    assert jobs_app.stack.keys() == [layout.record_key(job_id)]  # upload and marker gone
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["event"], line["outcome"]) for line in lines if line.get("event") == "job"] \
        == [("job", "succeeded")]


@pytest.mark.parametrize("body, content_type", [
    (b"\x89PNG\r\n\x1a\n" + b"\0garbage" * 64, "image/png"),
    (DCM_MONO2.read_bytes()[:-5000], "application/dicom"),
    (PNG_CARDIOMEGALY.read_bytes(), "application/dicom"),
    (make_dicom(None), "application/dicom"),
], ids=["corrupt-png", "truncated-dicom", "png-declared-dicom", "dicom-without-pixels"])
def test_given_a_bad_file_when_handled_then_failed_with_the_sync_routes_code(
        jobs_app, body, content_type):
    job_id, event = uploaded(jobs_app, body, content_type)

    outcome = jobs_app.deliver(event)

    sync_status, sync = jobs_app.classify(body, content_type)
    assert 400 <= sync_status < 500
    status, job = jobs_app.status(job_id)
    assert (outcome, job["status"]) == ("failed", "failed")
    assert job["error"] == sync  # the same {"Code", "Message"} as POST /xray
    assert "result" not in job
    assert jobs_app.stack.keys() == [layout.record_key(job_id)]


def test_given_an_upload_of_another_size_than_declared_when_handled_then_failed(jobs_app):
    body = PNG_CARDIOMEGALY.read_bytes()
    # moto does not enforce the policy's content-length-range; S3 would refuse this upload
    job_id, event = uploaded(jobs_app, body, "image/png", size=len(body) + 1)

    assert jobs_app.deliver(event) == "failed"

    assert jobs_app.status(job_id)[1]["error"]["Code"] == "UploadSizeMismatch"


def test_given_a_job_with_notify_when_its_event_comes_twice_then_one_result_and_one_notice(
        jobs_app):
    body = PNG_CARDIOMEGALY.read_bytes()
    job_id, event = uploaded(jobs_app, body, "image/png", notify=NOTIFY)

    first = jobs_app.deliver(event)
    after_first = jobs_app.stack.s3.get_object(Bucket=jobs_app.stack.bucket,
                                               Key=layout.record_key(job_id))
    second = jobs_app.deliver(event)

    assert (first, second) == ("succeeded", "duplicate")
    after_second = jobs_app.stack.s3.get_object(Bucket=jobs_app.stack.bucket,
                                                Key=layout.record_key(job_id))
    assert after_second["ETag"] == after_first["ETag"]  # the record was not written again
    assert record(jobs_app, job_id).attempts == 1
    notices = jobs_app.stack.notifier_events()
    assert [n["detail"]["object"]["key"] for n in notices] == [layout.notice_key(job_id)]
    notice = json.loads(jobs_app.stack.store().get_bytes(layout.notice_key(job_id)))
    assert notice == {"job_id": job_id, "status": "succeeded",
                      "status_url": f"http://localhost/xray/jobs/{job_id}"}
    assert jobs_app.stack.worker_events() == []  # the worker's own writes trigger nothing


def test_given_a_dicom_over_the_sync_limit_when_sent_as_a_job_then_it_is_classified(jobs_app):
    body = decompressed(DCM_J2K)  # the shared RG1 chest, stored uncompressed
    assert 6 * 1024 * 1024 < len(body) < JOB_LIMIT
    sync_status, refused = jobs_app.classify(body, "application/dicom")
    assert (sync_status, refused["Code"]) == (413, "PayloadTooLarge")
    job_id, event = uploaded(jobs_app, body, "application/dicom")

    assert jobs_app.deliver(event) == "succeeded"

    result = jobs_app.status(job_id)[1]["result"]
    assert result["image"]["format"] == "dicom"
    assert (result["image"]["width"], result["image"]["height"]) == (1841, 1955)
    direct = jobs_app.module.get_service().classify(body, "application/dicom",
                                                    max_bytes=JOB_LIMIT).answer
    assert without_timings(result) == without_timings(direct)


def test_given_a_job_deleted_while_it_is_classified_then_the_result_is_dropped(jobs_app):
    body = PNG_CARDIOMEGALY.read_bytes()
    job_id, event = uploaded(jobs_app, body, "image/png", notify=NOTIFY)
    service = jobs_app.module.get_service()
    seen = []

    def classify_while_the_client_deletes(body, content_type, max_bytes, force=False):
        seen.append(jobs_app.status(job_id)[1]["status"])
        assert jobs_app.delete(job_id) == 204
        return service.classify(body, content_type, max_bytes=max_bytes)

    outcome = jobs_app.deliver(event, classify=classify_while_the_client_deletes)

    assert (seen, outcome) == (["running"], "deleted")
    assert jobs_app.status(job_id)[0] == 404
    assert jobs_app.stack.keys() == []  # no record, no result, no upload, no notice
    assert jobs_app.stack.notifier_events() == []


def test_given_no_model_when_claimed_then_released_and_the_retried_event_succeeds(jobs_app):
    job_id, event = uploaded(jobs_app, PNG_CARDIOMEGALY.read_bytes(), "image/png")

    def no_model():
        raise ModelUnavailable("The model store did not answer", retry_after_s=30)

    with pytest.raises(ModelUnavailable):  # the Lambda invocation fails: Lambda retries it
        jobs_app.deliver(event, ready=no_model)
    released = record(jobs_app, job_id)
    assert (released.status, released.claimed_at, released.attempts) == ("queued", None, 1)
    assert jobs_app.status(job_id)[1]["status"] == "queued"

    assert jobs_app.deliver(event) == "succeeded"  # Lambda's retry of the same event
    assert record(jobs_app, job_id).attempts == 2


def test_given_an_upload_without_a_job_when_its_event_comes_then_the_upload_is_deleted(
        jobs_app):
    key = layout.upload_key("B" * 32)
    jobs_app.stack.s3.put_object(Bucket=jobs_app.stack.bucket, Key=key, Body=b"bytes")
    (event,) = jobs_app.stack.worker_events()

    assert jobs_app.deliver(event) == "orphan"

    assert jobs_app.stack.keys() == []


def test_given_events_the_worker_does_not_own_then_ignored_and_nothing_changes(jobs_app):
    s3, bucket = jobs_app.stack.s3, jobs_app.stack.bucket
    s3.put_object(Bucket=bucket, Key="uploads/not-a-job-id/image", Body=b"x")
    s3.put_object(Bucket=bucket, Key="batch/", Body=b"")  # a console "folder"
    events = jobs_app.stack.worker_events()
    other = json.loads(json.dumps(events[0]))
    other["detail"]["bucket"]["name"] = "somebody-elses-bucket"
    scheduled = {**events[0], "source": "aws.events", "detail-type": "Scheduled Event"}

    outcomes = [jobs_app.deliver(e) for e in [*events, other, scheduled]]

    assert outcomes == ["ignored"] * 4
    assert jobs_app.stack.keys() == ["batch/", "uploads/not-a-job-id/image"]


def test_given_a_dicom_with_patient_fields_when_handled_then_none_is_logged_or_stored(
        jobs_app, capsys):
    marker = "PHIMARK"
    pixels = ((np.arange(256 * 256, dtype=np.uint16).reshape(256, 256) * 7) % 4096)
    body = make_dicom(pixels, bits_stored=12, PatientName=f"{marker}^Jane",
                      PatientID=f"{marker}0001", InstitutionName=f"{marker} Hospital",
                      StudyDescription=f"{marker} chest")
    job_id, event = uploaded(jobs_app, body, "application/dicom", notify=NOTIFY)
    capsys.readouterr()

    jobs_app.module.job_worker(event, LambdaContext(timeout_s=WORKER_TIMEOUT_S))

    out, err = capsys.readouterr()
    assert jobs_app.status(job_id)[1]["status"] == "succeeded"
    assert marker not in (out + err).upper()
    assert NOTIFY["email"] not in out and NOTIFY["webhook"] not in out
    for key in jobs_app.stack.keys():
        assert marker.encode() not in jobs_app.stack.store().get_bytes(key).upper(), key


def test_given_a_stage_that_keeps_no_dicom_headers_then_a_dicom_jobs_report_is_406(jobs_app):
    job_id, event = uploaded(jobs_app, DCM_MONO2.read_bytes(), "application/dicom")
    jobs_app.deliver(event)
    assert jobs_app.stack.store().read(job_id).job.header is None  # nothing of the patient
    for accept in ("application/dicom", "application/fhir+json"):
        response = jobs_app.client.http.get(f"/xray/jobs/{job_id}", headers={"Accept": accept})
        error = json.loads(response.body)
        assert (response.status_code, error["Code"]) == (406, "NotAcceptable")
        assert "XRAY_KEEP_DICOM_HEADERS=true" in error["Message"]
        assert "POST /xray" in error["Message"]
    assert jobs_app.status(job_id)[1]["status"] == "succeeded"  # the JSON is still there
