"""The upload page's jobs way end to end: Debian's chromium, headless, driven by Playwright,
against the local stack as the README starts it (scripts/serve: moto on loopback with the jobs
bucket and its CORS rule, the relay running app.py's job_worker, `chalice local`).

A DICOM over the synchronous limit (the shared RG1 chest stored uncompressed, about 7 MB) is
dropped on the page: it goes POST /xray/jobs, then straight to the bucket with the presigned POST
(upload progress to 100 %), then GET /xray/jobs/{job_id} until the job succeeds, and the page
shows the job's result as it shows POST /xray's, which is the same answer as POST /xray gives for
the same bytes on a stage whose synchronous limit takes them. Under XRAY_AUTH=api_key, so that
the key is seen on every call to the API and never on the upload to S3.
"""
import json
import urllib.request
from urllib.parse import urlsplit

import pytest

from chalicelib.settings import DEFAULT_MAX_UPLOAD_BYTES, LOCAL_EFS_ROOT
from tests.support.browser import open_page
from tests.support.fixtures import DCM_MONO2, dicom_over_the_sync_limit
from tests.support.serving import local_server, serving
from tests.web.test_page_browser import assert_page_shows

pytestmark = [pytest.mark.server, pytest.mark.browser]

API_KEY = "jobs-page-key-" + "Z9y8X7w6" * 3
JOB_LIMIT = 8_000_000  # above the DICOM, so that a file a little larger is refused
STATUS_LINES = {  # what the page says for each status it is told
    "awaiting_upload": "Uploaded: waiting for the service to take the file (job status: "
                       "awaiting upload)\u2026",
    "queued": "Queued: waiting for the model (job status: queued)\u2026",
    "running": "Classifying (job status: running)\u2026"}

RECORD = """() => {
    // what the progress bar and the status line show, each change in order
    window.seen = {progress: [], status: []};
    const bar = document.getElementById("upload-bar");
    const line = document.getElementById("status");
    new MutationObserver(() => window.seen.progress.push(
        [bar.value, document.getElementById("upload-percent").textContent]))
        .observe(bar, {attributes: true, attributeFilter: ["value"]});
    new MutationObserver(() => window.seen.status.push(line.textContent))
        .observe(line, {childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def big_dicom() -> bytes:
    body = dicom_over_the_sync_limit()
    assert DEFAULT_MAX_UPLOAD_BYTES < len(body) < JOB_LIMIT
    return body


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log_path = tmp_path_factory.mktemp("local-stack") / "serve.log"
    with local_server(log_path, XRAY_AUTH="api_key", XRAY_JOB_MAX_BYTES=str(JOB_LIMIT)) as (
            base, _):
        yield base


@pytest.fixture(scope="module")
def sync_answer(big_dicom):
    """POST /xray for the same bytes, in-process on the same model store (efs-local/, what
    scripts/serve serves) with a synchronous limit that takes them."""
    with serving(LOCAL_EFS_ROOT, XRAY_AUTH="none",
                 XRAY_MAX_UPLOAD_BYTES=str(2 * len(big_dicom))) as client:
        response = client.http.post("/xray", headers={"Content-Type": "application/dicom"},
                                    body=big_dicom)
    assert response.status_code == 200, response.body[:500]
    return json.loads(response.body)


@pytest.fixture
def page(browser, server):
    page = open_page(browser, server + "/")
    page.responses = []
    page.on("response", lambda response: page.responses.append(response))
    page.fill("#api-key", API_KEY)
    page.click("#key-use")
    # GET /model (with the key) fills in the labels: the page is ready
    page.wait_for_selector("#heatmap-label option[value='Cardiomegaly']", state="attached")
    yield page
    page.close()


def api_get(server: str, path: str):
    request = urllib.request.Request(f"{server}{path}", headers={"x-api-key": API_KEY})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read()), response.headers


def drop(page, name: str, body: bytes) -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": "", "buffer": body}])


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_a_dicom_over_the_sync_limit_is_uploaded_with_progress_and_shows_post_xrays_findings(
        page, server, big_dicom, sync_answer):
    page.evaluate(RECORD)
    drop(page, "chest.dcm", big_dicom)
    page.wait_for_selector("#preview-note", state="visible")
    assert page.inner_text("#preview-note") == (
        "No preview: the service previews files of up to 4.7 MB only. This one is classified "
        "once it is uploaded.")
    assert page.is_disabled("#want-heatmap") and page.is_visible("#heatmap-note")
    assert page.is_enabled("#classify")
    page.click("#classify")
    page.wait_for_selector("#results", state="visible", timeout=300_000)

    # the upload's progress, as the page showed it: never backwards, ending at 100 %
    seen = page.evaluate("window.seen")
    values = [value for value, _ in seen["progress"]]
    assert values and values == sorted(values) and values[-1] == 100
    assert all(text == f"{value} %" for value, text in seen["progress"])
    assert page.is_visible("#upload-progress") and page.inner_text("#upload-percent") == "100 %"
    assert page.eval_on_selector("#upload-bar", "bar => [bar.value, bar.max]") == [100, 100]

    # the calls: a job, the upload to the bucket, then the job's status until it was final
    calls = [r for r in page.requests if r.url.startswith("http") and r.method != "OPTIONS"]
    create, upload, *polls = [r for r in calls if r.method in ("POST", "GET")
                              and "/model" not in r.url and r.url != f"{server}/"]
    assert (create.method, create.url) == ("POST", f"{server}/xray/jobs")
    assert create.headers["content-type"] == "application/json"
    assert json.loads(create.post_data) == {"content_type": "application/dicom",
                                            "size": len(big_dicom)}
    job = create.response().json()
    assert upload.method == "POST" and upload.url == job["upload"]["url"]
    assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert polls and {r.url for r in polls} == {f"{server}/xray/jobs/{job['job_id']}"}
    assert all(r.method == "GET" for r in polls)
    # the key goes to the API on every call, never to S3
    assert all(r.headers.get("x-api-key") == API_KEY for r in [create, *polls])
    assert "x-api-key" not in upload.headers and "authorization" not in upload.headers
    assert not [r for r in calls if r.url.endswith(("/preview", "/xray"))]  # no 413 asked for

    # the policy named the upload's origin before the page knew it, and nothing was blocked
    with urllib.request.urlopen(f"{server}/", timeout=30) as response:
        policy = response.headers["Content-Security-Policy"]
    connect = policy.split("connect-src ", 1)[1].split(";", 1)[0].split()
    assert connect == ["'self'", origin_of(job["upload"]["url"])]
    assert page.console_errors == []

    # each status the page was told, it said, in order; then the end
    told = [r.json()["status"] for r in page.responses
            if r.request.method == "GET" and "/xray/jobs/" in r.url]
    assert told[-1] == "succeeded" and set(told[:-1]) <= set(STATUS_LINES)
    said = [line for line in seen["status"] if "job status" in line]
    assert [line for i, line in enumerate(said) if i == 0 or said[i - 1] != line] == [
        STATUS_LINES[s] for i, s in enumerate(told[:-1]) if i == 0 or told[i - 1] != s]
    assert page.inner_text("#status") == f"Done: {len(sync_answer['findings'])} findings."

    # the page shows the job's result as it shows a synchronous answer ...
    final, _ = api_get(server, f"/xray/jobs/{job['job_id']}")
    assert final["status"] == "succeeded"
    assert_page_shows(page, final["result"])
    assert json.loads(page.text_content("#raw")) == final["result"]
    # ... and that result is POST /xray's for the same bytes
    result = final["result"]
    assert [f["label"] for f in result["findings"]] == [f["label"] for f in
                                                        sync_answer["findings"]]
    for mine, theirs in zip(result["findings"], sync_answer["findings"]):
        assert mine == {**theirs, "probability": pytest.approx(theirs["probability"], abs=1e-6)}
    assert result["model"] == sync_answer["model"] and result["image"] == sync_answer["image"]
    assert result["positive"] == sync_answer["positive"]


def test_a_corrupt_file_over_the_sync_limit_fails_in_the_words_of_a_synchronous_error(
        page, server, big_dicom):
    # the DICOM cut short: readable as DICOM up to its pixels, which are missing
    drop(page, "cut.dcm", big_dicom[:5_000_000])
    page.wait_for_selector("#preview-note", state="visible")
    page.click("#classify")
    page.wait_for_selector("#error", state="visible", timeout=300_000)
    shown = page.inner_text("#error strong")
    create = next(r for r in page.requests if r.url == f"{server}/xray/jobs")
    job = create.response().json()
    final, _ = api_get(server, f"/xray/jobs/{job['job_id']}")
    assert final["status"] == "failed" and final["error"]["Code"] == "InvalidImage"
    assert page.text_content("#error") == f"{shown}Details: {final['error']['Message']}"
    assert not page.is_visible("#results")

    # the same code from the synchronous path (POST /preview, a small file cut short): the same
    # words
    drop(page, "small-cut.dcm", DCM_MONO2.read_bytes()[:100_000])
    page.wait_for_selector("#error", state="visible", timeout=60_000)
    assert page.inner_text("#error strong") == shown == (
        "The image could not be read: the file looks truncated or corrupt.")
    # chromium logs that refusal (POST /preview's 400) and nothing else: the job's failure was
    # an answer of 200, read by the page
    assert [r.url for r in page.requests if r.method == "POST" and r.url.startswith(server)][-1] \
        == f"{server}/preview"
    assert page.console_errors == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"]


def test_a_file_over_the_job_limit_is_refused_before_anything_is_sent(page, server):
    drop(page, "huge.dcm", b"\0" * 128 + b"DICM" + b"\0" * (9_000_000 - 132))
    page.wait_for_selector("#error", state="visible")
    text = page.inner_text("#error")
    assert "\u201chuge.dcm\u201d is too large: 9.0 MB, the limit is 8.0 MB." in text
    assert page.is_disabled("#classify")
    assert not [r for r in page.requests if r.method == "POST"]
