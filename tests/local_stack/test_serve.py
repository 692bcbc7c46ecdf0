"""scripts/serve as the README runs it: the jobs flow on loopback with no AWS account. A job is
asked for, uploaded with a plain multipart POST to the loopback URL it names, and read until it
is final; its result is the synchronous route's for the same bytes. Stopping scripts/serve
stops everything it started."""
import http.server
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import boto3
import pytest
import requests

from benchmarks.local_server import descendants
from chalicelib.jobs.notify import verify
from tests.support.fixtures import PNG_CARDIOMEGALY, REPO, dicom_over_the_sync_limit
from tests.support.serving import local_server, serving

pytestmark = pytest.mark.server

FINAL = ("succeeded", "failed", "expired")
WAIT_S = 300  # a bound so that a broken stack fails the test instead of hanging it


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with local_server(log, PYTHONUNBUFFERED="1") as (base, pid):
        yield base, log


def run_job(base: str, body: bytes, content_type: str) -> tuple:
    """(the job's answer to POST /xray/jobs, its final status)."""
    created = requests.post(f"{base}/xray/jobs", json={"content_type": content_type,
                                                       "size": len(body)}, timeout=30)
    assert created.status_code == 202, created.text
    job = created.json()
    upload = job["upload"]
    assert upload["url"].startswith("http://127.0.0.1:") and upload["method"] == "POST"
    sent = requests.post(upload["url"], data=upload["fields"],
                         files={"file": ("image", body, content_type)}, timeout=60)
    assert sent.status_code == 204, sent.text
    deadline = time.monotonic() + WAIT_S
    while True:
        status = requests.get(job["status_url"], timeout=30).json()
        if status["status"] in FINAL or time.monotonic() > deadline:
            return job, status
        time.sleep(0.1)


def findings(answer: dict) -> dict:
    return {f["label"]: f["probability"] for f in answer["findings"]}


def assert_same_classification(job_result: dict, sync: dict) -> None:
    # another process: thread counts may differ, and with them the last bits of a sum
    assert job_result["model"] == sync["model"] and job_result["image"] == sync["image"]
    assert [f["label"] for f in job_result["findings"]] == [f["label"] for f in sync["findings"]]
    assert job_result["positive"] == sync["positive"]
    got, expected = findings(job_result), findings(sync)
    assert max(abs(got[k] - expected[k]) for k in got) <= 1e-5


def relay_lines(log: Path) -> list:
    return [line for line in log.read_text().splitlines()
            if line.startswith("local-stack: job_")]


def test_a_png_job_succeeds_with_the_findings_post_xray_answers(served):
    base, log = served
    body = PNG_CARDIOMEGALY.read_bytes()
    job, status = run_job(base, body, "image/png")
    sync = requests.post(f"{base}/xray", data=body, headers={"Content-Type": "image/png"},
                         timeout=120)
    assert sync.status_code == 200
    assert status["status"] == "succeeded", status
    assert set(status) == {"job_id", "status", "created_at", "updated_at", "result"}
    assert_same_classification(status["result"], sync.json())
    # the relay said what happened, and nothing of the job but its outcome
    lines = relay_lines(log)
    assert any(line.startswith("local-stack: job_worker upload -> succeeded in ")
               for line in lines)
    assert not any(job["job_id"] in line or "uploads/" in line for line in lines)


def test_a_7mb_dicom_is_413_on_post_xray_and_classified_through_a_job(served, demo_store):
    base, _ = served
    body = dicom_over_the_sync_limit()
    assert 6_000_000 < len(body) < 8_000_000
    refused = requests.post(f"{base}/xray", data=body,
                            headers={"Content-Type": "application/dicom"}, timeout=120)
    assert refused.status_code == 413 and refused.json()["Code"] == "PayloadTooLarge"
    _, status = run_job(base, body, "application/dicom")
    assert status["status"] == "succeeded", status
    assert status["result"]["image"]["width"] == 1841
    # what the synchronous route answers for these bytes where its limit allows them
    with serving(demo_store, XRAY_MAX_UPLOAD_BYTES=str(10 * 1024 * 1024)) as client:
        direct = client.http.post("/xray", headers={"Content-Type": "application/dicom"},
                                  body=body)
    assert direct.status_code == 200
    assert_same_classification(status["result"], json.loads(direct.body))


def test_a_job_that_asks_to_be_notified_gets_one_mail_and_one_signed_webhook(served):
    base, log = served
    received = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        body = PNG_CARDIOMEGALY.read_bytes()
        notify = {"email": "someone@example.org",
                  "webhook": f"http://127.0.0.1:{hook.server_address[1]}/hook"}
        created = requests.post(f"{base}/xray/jobs", json={
            "content_type": "image/png", "size": len(body), "notify": notify}, timeout=30)
        assert created.status_code == 202, created.text
        job = created.json()
        requests.post(job["upload"]["url"], data=job["upload"]["fields"],
                      files={"file": ("image", body, "image/png")}, timeout=60)
        deadline = time.monotonic() + WAIT_S
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        hook.shutdown()
    # the webhook: signed with the secret the stack put in moto's SSM, naming the job only
    ((headers, sent),) = received
    moto = job["upload"]["url"].rsplit("/", 1)[0]
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    (name,) = [line.split("signed with the secret ")[1].split(";")[0]
               for line in log.read_text().splitlines() if "signed with the secret" in line]
    secret = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    assert verify(secret, headers["webhook-id"], headers["webhook-timestamp"], sent,
                  headers["webhook-signature"])
    assert json.loads(sent)["data"] == {"job_id": job["job_id"], "status": "succeeded",
                                        "status_url": job["status_url"]}
    # the mail: moto's SES took one (it sends nothing)
    ses = boto3.client("ses", region_name="us-east-1", endpoint_url=moto,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    points = ses.get_send_statistics()["SendDataPoints"]
    assert sum(p["DeliveryAttempts"] for p in points) == 1
    assert any(line.startswith("local-stack: job_notifier notice -> sent in ")
               for line in relay_lines(log))


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_stopping_scripts_serve_leaves_no_process_and_no_listening_port(tmp_path):
    log = tmp_path / "serve.log"
    with local_server(log, PYTHONUNBUFFERED="1") as (base, chalice_pid):
        supervisor = int(Path(f"/proc/{chalice_pid}/stat").read_text().rsplit(")", 1)[1]
                         .split()[1])
        started = descendants(supervisor)
        job, status = run_job(base, PNG_CARDIOMEGALY.read_bytes(), "image/png")
        assert status["status"] == "succeeded"
        ports = {"chalice local": int(base.rsplit(":", 1)[1]),
                 "moto": int(job["upload"]["url"].split(":")[2].split("/")[0])}
        assert not any(refuses(port) for port in ports.values())
    assert chalice_pid in started
    # every process it started is gone (reaped, not a zombie), and both ports refuse
    assert [pid for pid in [supervisor, *started] if os.path.exists(f"/proc/{pid}")] == []
    assert {name: refuses(port) for name, port in ports.items()} == {
        "chalice local": True, "moto": True}
    said = log.read_text()
    assert "local-stack: SIGTERM: stopping chalice local, the relay and moto" in said
    assert said.rstrip().endswith("local-stack: stopped")


def test_when_chalice_local_exits_the_rest_stops_and_scripts_serve_exits_with_its_code(tmp_path):
    # given a port that chalice local cannot bind: somebody already listens there
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("XRAY_")}
        result = subprocess.run([str(REPO / "scripts" / "serve"), "--port", str(port),
                                 "--no-autoreload"], cwd=REPO, env=clean, capture_output=True,
                                text=True, timeout=WAIT_S)
    said = result.stdout + result.stderr
    # then scripts/serve ends by itself, with chalice local's code, having stopped the rest
    assert result.returncode != 0, said[-3000:]
    assert f"local-stack: chalice local exited with {result.returncode}: stopping the rest" \
        in said
    assert result.stdout.rstrip().endswith("local-stack: stopped")
    assert "local-stack: ready" not in result.stdout
