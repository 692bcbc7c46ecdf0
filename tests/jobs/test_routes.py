"""POST, GET and DELETE /xray/jobs through chalice.test.Client, with a moto server as the jobs
bucket: the answers' shapes, every refusal, and the presigned POST's policy (moto does not
enforce it, so its conditions are read back from what the code signed)."""
import json
from datetime import timedelta

import pytest

from chalicelib.jobs import layout
from chalicelib.jobs.presign import policy_conditions
from chalicelib.jobs.records import parse_iso
from chalicelib.settings import JOB_MAX_BYTES, UPLOAD_EXPIRES_S
from tests.support.fixtures import PNG_CARDIOMEGALY
from tests.support.jobs import upload

MAX_BYTES = 8 * 1024 * 1024
EXPIRES_S = 300


@pytest.fixture(scope="module")
def app_env():
    # no XRAY_SES_SENDER, no XRAY_WEBHOOK_SECRET_NAME: this stage sends no notifications
    return {JOB_MAX_BYTES: str(MAX_BYTES), UPLOAD_EXPIRES_S: str(EXPIRES_S)}


def test_given_a_valid_request_when_posted_then_202_with_the_upload_and_the_status_url(jobs_app):
    status, answer = jobs_app.create({"content_type": "application/dicom", "size": 7200342})

    assert status == 202
    assert set(answer) == {"job_id", "status", "upload", "status_url"}
    assert answer["status"] == "awaiting_upload"
    assert layout.valid_job_id(answer["job_id"])
    assert answer["status_url"].endswith(f"/xray/jobs/{answer['job_id']}")
    presigned = answer["upload"]
    assert set(presigned) == {"method", "url", "fields", "max_bytes", "expires_at"}
    assert presigned["method"] == "POST" and presigned["max_bytes"] == 7200342
    assert presigned["url"] == f"{jobs_app.stack.aws.endpoint}/{jobs_app.stack.bucket}"
    assert presigned["fields"]["key"] == f"uploads/{answer['job_id']}/image"
    assert presigned["fields"]["Content-Type"] == "application/dicom"


def test_given_a_new_job_when_read_then_awaiting_upload_with_only_its_public_fields(jobs_app):
    answer = jobs_app.job("image/png", 1000, notify=None)

    status, job = jobs_app.status(answer["job_id"])

    assert status == 200
    assert set(job) == {"job_id", "status", "created_at", "updated_at"}
    assert job["job_id"] == answer["job_id"] and job["status"] == "awaiting_upload"
    assert job["created_at"].endswith("Z") and job["created_at"] == job["updated_at"]


def test_given_the_status_url_when_its_path_is_read_then_it_is_the_job(jobs_app):
    answer = jobs_app.job("image/png", 1000)
    path = answer["status_url"].split("://", 1)[1].split("/", 1)[1]

    status, job = jobs_app.status(path.rsplit("/", 1)[1])

    assert "/" + path == f"/xray/jobs/{answer['job_id']}"
    assert status == 200 and job["job_id"] == answer["job_id"]


def test_given_a_job_when_its_policy_is_decoded_then_it_pins_key_type_size_and_expiry(jobs_app):
    answer = jobs_app.job("application/dicom", 7200342)
    _, job = jobs_app.status(answer["job_id"])

    policy = policy_conditions(answer["upload"]["fields"])

    conditions = policy["conditions"]
    assert {"key": f"uploads/{answer['job_id']}/image"} in conditions
    assert {"bucket": jobs_app.stack.bucket} in conditions
    assert {"Content-Type": "application/dicom"} in conditions
    assert ["content-length-range", 7200342, 7200342] in conditions
    assert {"x-amz-server-side-encryption": "AES256"} in conditions
    # every field the client sends is covered by a condition (S3 refuses the POST otherwise)
    named = {name.lower() for c in conditions if isinstance(c, dict) for name in c}
    signed = {"policy", "x-amz-signature", "x-amz-algorithm", "x-amz-credential", "x-amz-date",
              "x-amz-security-token", "key"}
    assert {f.lower() for f in answer["upload"]["fields"]} - signed <= named
    expiration = parse_iso(policy["expiration"])
    created = parse_iso(job["created_at"])
    assert created < expiration <= created + timedelta(minutes=10)
    assert abs(expiration - parse_iso(answer["upload"]["expires_at"])) <= timedelta(seconds=60)


def test_given_many_jobs_when_created_then_each_id_is_32_url_safe_characters_and_unique(
        jobs_app):
    ids = [jobs_app.job("image/png", 10)["job_id"] for _ in range(20)]

    assert all(layout.JOB_ID.fullmatch(job_id) for job_id in ids)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("content_type", ["image/png", "image/jpeg", "application/dicom",
                                          "application/octet-stream", "image/png; charset=x"])
def test_given_a_type_the_sync_route_takes_when_posted_then_202(jobs_app, content_type):
    status, answer = jobs_app.create({"content_type": content_type, "size": 10})

    assert status == 202, answer
    assert answer["upload"]["fields"]["Content-Type"] == content_type.split(";")[0]


@pytest.mark.parametrize("body, status, code, words", [
    ({"content_type": "text/plain", "size": 10}, 415, "UnsupportedImageType", "text/plain"),
    ({"content_type": "image/gif", "size": 10}, 415, "UnsupportedImageType", "image/gif"),
    ({"content_type": "application/dicom", "size": MAX_BYTES + 1}, 413, "PayloadTooLarge",
     f"{MAX_BYTES:,}"),
    (b"{not json", 400, "InvalidJobRequest", "must be JSON"),
    (b"", 400, "InvalidJobRequest", "must be JSON"),
    (b"[1, 2]", 400, "InvalidJobRequest", "JSON object"),
    ({"content_type": "image/png"}, 400, "InvalidJobRequest", '"size" is required'),
    ({"content_type": "image/png", "size": "10"}, 400, "InvalidJobRequest", '"size"'),
    ({"content_type": "image/png", "size": 0}, 400, "InvalidJobRequest", '"size"'),
    ({"content_type": "image/png", "size": True}, 400, "InvalidJobRequest", '"size"'),
    ({"size": 10}, 400, "InvalidJobRequest", '"content_type" is required'),
    ({"content_type": "image/png", "size": 10, "name": "x.png"}, 400, "InvalidJobRequest",
     "Unknown field(s) name"),
    ({"content_type": "image/png", "size": 10, "notify": {"email": "a@example.org"}}, 400,
     "InvalidJobRequest", "XRAY_SES_SENDER is not set"),
    ({"content_type": "image/png", "size": 10, "notify": {"webhook": "https://h.example/x"}},
     400, "InvalidJobRequest", "XRAY_WEBHOOK_SECRET_NAME is not set"),
    ({"content_type": "image/png", "size": 10, "notify": {"sms": "+15550100"}}, 400,
     "InvalidJobRequest", '"notify" must be an object'),
    ({"content_type": "image/png", "size": 10, "notify": "a@example.org"}, 400,
     "InvalidJobRequest", '"notify" must be an object'),
], ids=lambda value: value if isinstance(value, str) else None)
def test_given_a_bad_request_when_posted_then_the_documented_error(jobs_app, body, status,
                                                                   code, words):
    got, answer = jobs_app.create(body)

    assert (got, answer["Code"]) == (status, code), answer
    assert words in answer["Message"]
    assert jobs_app.stack.keys() == []  # nothing was written for a refused job


def test_given_a_body_that_is_not_json_when_posted_then_chalice_refuses_its_type(jobs_app):
    response = jobs_app.client.http.post("/xray/jobs", headers={"Content-Type": "text/plain"},
                                         body=b'{"content_type": "image/png", "size": 10}')

    assert response.status_code == 415
    assert json.loads(response.body)["Code"] == "UnsupportedMediaType"


@pytest.mark.parametrize("job_id", ["A" * 32, "short", "A" * 33, "A" * 31 + "."])
def test_given_an_unknown_or_malformed_id_when_read_or_deleted_then_404(jobs_app, job_id):
    status, answer = jobs_app.status(job_id)

    assert (status, answer["Code"]) == (404, "JobNotFound")
    assert jobs_app.delete(job_id) == 404


def test_given_an_uploaded_job_when_deleted_then_204_and_everything_of_it_is_gone(jobs_app):
    body = PNG_CARDIOMEGALY.read_bytes()
    answer = jobs_app.job("image/png", len(body))
    assert upload(answer["upload"], body).status_code == 204
    job_id = answer["job_id"]
    assert layout.upload_key(job_id) in jobs_app.stack.keys()

    assert jobs_app.delete(job_id) == 204

    assert jobs_app.status(job_id)[0] == 404
    assert jobs_app.stack.keys() == []  # record, marker and upload
    assert jobs_app.delete(job_id) == 404
