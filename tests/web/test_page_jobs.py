"""The upload page on a stage with upload jobs, in-process: the limits and the retention it states,
and a Content-Security-Policy whose connect-src names the jobs bucket's upload origin (the page
learns the upload URL only from POST /xray/jobs, after the policy is set), which must be the
origin of the URL that route really answers (test_page_jobs_browser.py: the page in chromium
against the local stack)."""
import json
import os
import re
from datetime import datetime, timezone
from urllib.parse import urlsplit

import pytest

from chalicelib.jobs import clients, layout
from chalicelib.jobs.presign import presigned_upload
from chalicelib.settings import DEFAULT_MAX_UPLOAD_BYTES, AuthSettings, JobSettings
from chalicelib.web import page as page_module
from tests.support.local_aws import CREDENTIALS, local_aws
from tests.support.serving import serving
from tests.web.test_page_auth import (
    DOMAIN,
    assert_policy_allows_exactly_the_inline_code,
    directives,
    stage_env,
)

LIMIT = DEFAULT_MAX_UPLOAD_BYTES
JOBS = JobSettings(bucket="xray-jobs-dev")  # the defaults: 200 MiB, 7 days, uploads deleted
ORIGIN = "https://xray-jobs-dev.s3.eu-west-1.amazonaws.com"
NONE = AuthSettings(mode="none")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def data_attributes(html: str) -> dict:
    (body,) = re.findall(r"<body ([^>]*)>", html)
    return dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body))


def file_help(html: str) -> str:
    (text,) = re.findall(r'<p id="file-help" class="muted">(.*?)</p>', html, flags=re.S)
    return " ".join(text.split())


def test_without_a_jobs_bucket_the_page_keeps_the_synchronous_limit_and_policy():
    html = page_module.render(LIMIT, NONE, JobSettings())
    assert data_attributes(html) == {"max-bytes": str(LIMIT), "job-max-bytes": "0"}
    assert file_help(html) == ("PNG, JPEG or DICOM, at most 4.7 MB. The image is sent to this "
                               "service only to be classified; it is not stored.")
    policy = directives(page_module.headers(LIMIT, NONE, JobSettings())["Content-Security-Policy"])
    assert policy["connect-src"] == ["'self'"]
    assert_policy_allows_exactly_the_inline_code(html, policy)


def test_with_a_jobs_bucket_larger_files_are_announced_with_what_is_kept():
    html = page_module.render(LIMIT, NONE, JOBS)
    assert data_attributes(html) == {"max-bytes": str(LIMIT), "job-max-bytes": "209715200"}
    assert "{{" not in html
    assert file_help(html) == (
        "PNG, JPEG or DICOM, at most 209.7 MB. An image of up to 4.7 MB is sent to this service "
        "only to be classified; it is not stored. A larger one is uploaded to this service's "
        "private storage first (its progress is shown), classified there and deleted once "
        "classified; its findings are kept for 7 days.")
    keeping = JobSettings(bucket="b", keep_uploads_days=3, result_days=1)
    assert file_help(page_module.render(LIMIT, NONE, keeping)).endswith(
        "classified there and kept for 3 days; its findings are kept for 1 day.")
    # the progress bar is labelled, and a DICOM too large to preview has a place to say so
    assert '<label for="upload-bar">' in html and '<progress id="upload-bar"' in html
    assert 'id="preview-note"' in html and 'id="heatmap-note"' in html


@pytest.mark.parametrize("mode", ["none", "api_key", "cognito", "cognito+api_key"])
def test_with_a_jobs_bucket_connect_src_adds_the_upload_origin_and_only_it(mode):
    auth = AuthSettings.from_env(stage_env(mode))
    html = page_module.render(LIMIT, auth, JOBS)
    policy = directives(page_module.headers(LIMIT, auth, JOBS, ORIGIN)["Content-Security-Policy"])
    sign_in = [DOMAIN] if "cognito" in mode else []
    assert policy["connect-src"] == ["'self'", *sign_in, ORIGIN]
    assert_policy_allows_exactly_the_inline_code(html, policy)
    assert policy["form-action"] == ["'none'"]  # the upload is a script's request, not a form


def test_a_page_that_sends_jobs_cannot_be_served_without_the_upload_origin():
    with pytest.raises(ValueError, match="upload origin"):
        page_module.headers(LIMIT, NONE, JOBS, None)


def test_a_job_limit_not_above_the_synchronous_one_sends_nothing_the_jobs_way():
    small = JobSettings(bucket="b", max_bytes=LIMIT)
    assert data_attributes(page_module.render(LIMIT, NONE, small))["job-max-bytes"] == "0"
    policy = directives(page_module.headers(LIMIT, NONE, small, ORIGIN)
                        ["Content-Security-Policy"])
    assert policy["connect-src"] == ["'self'"]


@pytest.fixture
def aws_region(monkeypatch):
    """Dummy credentials (presigning signs locally, nothing is sent), no local endpoint."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    return lambda region: monkeypatch.setenv("AWS_REGION", region)


@pytest.mark.parametrize("region, bucket, expected", [
    ("eu-west-1", "xray-jobs-dev", "https://xray-jobs-dev.s3.eu-west-1.amazonaws.com"),
    ("us-east-1", "xray-jobs-prod", "https://xray-jobs-prod.s3.us-east-1.amazonaws.com"),
    ("cn-north-1", "xray-jobs", "https://xray-jobs.s3.cn-north-1.amazonaws.com.cn"),
    # a dotted name over https: botocore signs path-style on the regional endpoint
    ("eu-west-1", "jobs.xray.example", "https://s3.eu-west-1.amazonaws.com"),
])
def test_the_upload_origin_is_the_origin_of_the_presigned_upload(aws_region, region, bucket,
                                                                 expected):
    aws_region(region)
    upload = presigned_upload(clients.client("s3"), bucket, layout.upload_key("A" * 32),
                              "application/dicom", 7_000_000, 600, datetime.now(timezone.utc))
    assert origin_of(upload["url"]) == expected
    assert clients.upload_origin(bucket) == expected


def test_the_upload_origin_needs_no_credentials(monkeypatch):
    """The page is served by any function of the stage, signed in to AWS or not yet."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert clients.upload_origin("xray-jobs") == "https://xray-jobs.s3.eu-central-1.amazonaws.com"


@pytest.fixture
def jobs_stage(demo_store):
    """The app in-process on a stage whose jobs bucket lives in a moto server on loopback."""
    import app as app_module
    bucket = "xray-jobs-page"
    with local_aws() as aws:
        aws.client("s3").create_bucket(Bucket=bucket)
        with serving(demo_store, XRAY_AUTH="none", XRAY_JOBS_BUCKET=bucket, **aws.env()) as client:
            for getter in (app_module.get_job_store, app_module.get_job_service):
                getter.cache_clear()  # their S3 client would point at an earlier endpoint
            yield client, aws
            for getter in (app_module.get_job_store, app_module.get_job_service):
                getter.cache_clear()


def test_the_served_policy_names_the_origin_of_the_url_post_xray_jobs_answers(jobs_stage):
    client, aws = jobs_stage
    page = client.http.get("/")
    assert page.status_code == 200
    html = page.body.decode() if isinstance(page.body, bytes) else page.body
    assert data_attributes(html)["job-max-bytes"] == "209715200"
    policy = directives(page.headers["Content-Security-Policy"])
    assert_policy_allows_exactly_the_inline_code(html, policy)

    answer = client.http.post("/xray/jobs", headers={"Content-Type": "application/json"},
                              body=json.dumps({"content_type": "application/dicom",
                                               "size": 7_000_000}).encode())
    assert answer.status_code == 202
    url = json.loads(answer.body)["upload"]["url"]
    assert origin_of(url) == aws.endpoint  # the local endpoint, path-style
    assert policy["connect-src"] == ["'self'", origin_of(url)]
