"""The notifier (chalicelib/jobs/notify.py) against real parts: the jobs bucket, SES and Secrets
Manager on a moto server on loopback, and a webhook receiver (a local http.server) that checks
every delivery's signature with its own implementation of the Standard Webhooks recipe, written
here from the spec, not with notify.verify. A duplicated event sends one mail and one webhook;
a failure a retry can fix releases its claim and raises; a secret that cannot work is named in a
clear error before anything is claimed. Pauses between attempts are recorded, not slept."""
import base64
import contextlib
import hashlib
import hmac
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List

import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from chalicelib.errors import NotificationFailed, NotifierMisconfigured
from chalicelib.jobs import layout, notify
from chalicelib.jobs.records import FAILED, SUCCEEDED, Job, iso, new_job_id, now
from chalicelib.jobs.store import JobStore
from chalicelib.settings import JobSettings
from tests.support.local_aws import REGION
from tests.support.serving import free_port

pytestmark = pytest.mark.aws_emulator

BUCKET = "xray-jobs-notify-test"
SENDER = "noreply@xray.example.org"
SECRET_NAME = "/xray/test/webhook"
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
API = "https://api.example.org/v1"
# What the job's result holds and no notification may carry
FINDING, PROBABILITY, MODEL = "Effusion", "0.8731", "densenet121-res224-all"
RESULT = {"positive": [FINDING], "top": {"label": FINDING, "probability": float(PROBABILITY)},
          "model": {"name": MODEL, "version": "1"}}


@pytest.fixture(scope="module")
def aws(stack):
    """The module's moto server (tests/jobs/conftest.py: one per module, since each new server
    resets moto's in-process backends), with this module's own bucket, sender and secret."""
    aws = stack.aws
    aws.client("s3").create_bucket(Bucket=BUCKET)
    aws.client("ses").verify_email_identity(EmailAddress=SENDER)
    aws.client("ssm").put_parameter(Name=SECRET_NAME, Value=SECRET, Type="SecureString")
    return aws


@pytest.fixture
def store(aws) -> JobStore:
    return JobStore(aws.client("s3"), BUCKET)


def settings(**changes: Any) -> JobSettings:
    return JobSettings(**{"bucket": BUCKET, "ses_sender": SENDER,
                          "webhook_secret_name": SECRET_NAME, **changes})


def final_job(store: JobStore, notify_: Dict[str, str], status: str = SUCCEEDED) -> Job:
    """A job as the worker leaves it: final, with its notice written once."""
    job_id = new_job_id()
    started = now()
    job = Job(job_id=job_id, status=status, created_at=iso(started),
              updated_at=iso(started + timedelta(seconds=42)), content_type="application/dicom",
              size=7_200_056, upload_key=layout.upload_key(job_id),
              expires_at=iso(started + timedelta(minutes=10)),
              status_url=f"{API}/xray/jobs/{job_id}", notify=notify_,
              result=RESULT if status == SUCCEEDED else None,
              error=None if status == SUCCEEDED else {"Code": "InvalidImage",
                                                      "Message": "truncated"})
    store.create(job)
    notice = {"job_id": job_id, "status": status, "status_url": job.status_url}
    assert store.claim(layout.notice_key(job_id), json.dumps(notice).encode())
    return job


def created_event(store: JobStore, key: str, bucket: str = BUCKET) -> Dict[str, Any]:
    """What EventBridge delivers for S3's Object Created."""
    info = store.info(key)
    etag, size = (info.etag, info.size) if info else ("0" * 32, 0)
    return {"version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": "Object Created", "source": "aws.s3", "account": DEFAULT_ACCOUNT_ID,
            "region": REGION, "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"version": "0", "bucket": {"name": bucket},
                       "object": {"key": key, "size": size, "etag": etag},
                       "reason": "PutObject"}}


def notice_event(store: JobStore, job: Job) -> Dict[str, Any]:
    return created_event(store, layout.notice_key(job.job_id))


def mails_to(address: str) -> List[Any]:
    return [m for m in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
            if address in m.destinations.get("ToAddresses", [])]


def claimed(store: JobStore, job: Job, channel: str) -> bool:
    return store.info(layout.notified_key(job.job_id, channel)) is not None


class Pauses(list):
    """sleep() for the notifier: records each pause instead of sleeping it."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# The receiver's own check, from https://www.standardwebhooks.com (not notify.verify)
def spec_signature_ok(secret: str, headers: Any, body: bytes) -> bool:
    key = base64.b64decode(secret[len("whsec_"):])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{body.decode()}"
    expected = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest())
    return any(part.startswith("v1,") and hmac.compare_digest(part[3:].encode(), expected)
               for part in headers.get("webhook-signature", "").split(" "))


class Receiver:
    """A webhook endpoint on loopback. Answers 401 to a delivery whose signature fails, else the
    scripted statuses in turn, then 200; records every delivery."""

    def __init__(self, answers: List[int], secret: str = SECRET) -> None:
        self.answers = list(answers)
        self.secret = secret
        self.deliveries: List[Dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/xray?token=receiver-private"

    @contextlib.contextmanager
    def running(self) -> Iterator["Receiver"]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                verified = spec_signature_ok(receiver.secret, self.headers, body)
                status = (receiver.answers.pop(0) if receiver.answers else 200) if verified \
                    else 401
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.deliveries.append({"path": self.path, "headers": headers,
                                            "body": body, "verified": verified,
                                            "answered": status})
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/somewhere-else")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def log_lines(out: str) -> List[Dict[str, Any]]:
    return [line for line in (json.loads(text) for text in out.splitlines()
                              if text.startswith("{")) if line.get("event") == "notify"]


def test_a_duplicated_event_sends_one_mail_and_one_webhook_with_the_status_link_only(
        aws, store, monkeypatch, capsys):
    """The default clients (chalicelib.jobs.clients, pointed at moto by AWS_ENDPOINT_URL) and
    urllib: the receiver answers 500 first, so the webhook is delivered on the second try."""
    for name, value in aws.env().items():
        monkeypatch.setenv(name, value)
    address = "reader.one@hospital.example.org"
    pauses = Pauses()
    with Receiver([500]).running() as receiver:
        job = final_job(store, {"email": address, "webhook": receiver.url})
        event = notice_event(store, job)
        assert notify.handle(event, settings(), store, sleep=pauses) == notify.SENT
        assert notify.handle(event, settings(), store, sleep=pauses) == notify.DUPLICATE

    (mail,) = mails_to(address)
    assert mail.source == SENDER
    assert mail.subject == "Chest X-ray job succeeded"
    assert job.status_url in mail.body
    for withheld in (FINDING, PROBABILITY, MODEL, "7200056", "application/dicom"):
        assert withheld not in mail.body and withheld not in mail.subject

    assert [d["answered"] for d in receiver.deliveries] == [500, 200]
    assert all(d["verified"] for d in receiver.deliveries)
    assert pauses == [1]
    first, second = receiver.deliveries
    assert first["path"] == "/hooks/xray?token=receiver-private"
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] \
        == f"msg_{job.job_id}_succeeded"
    assert first["body"] == second["body"]
    assert json.loads(second["body"]) == {
        "type": "xray.job.succeeded", "timestamp": job.updated_at,
        "data": {"job_id": job.job_id, "status": SUCCEEDED, "status_url": job.status_url}}
    assert second["headers"]["content-type"] == "application/json"
    # what a receiver following the README runs agrees with the spec's recipe
    assert notify.verify(SECRET, second["headers"]["webhook-id"],
                         second["headers"]["webhook-timestamp"], second["body"],
                         second["headers"]["webhook-signature"])
    assert claimed(store, job, notify.EMAIL) and claimed(store, job, notify.WEBHOOK)

    lines = log_lines(capsys.readouterr().out)
    assert [(line["channel"], line["outcome"]) for line in lines] == [
        ("email", "sent"), ("webhook", "sent"), ("email", "duplicate"), ("webhook", "duplicate")]
    assert lines[1]["attempts"] == 2 and lines[1]["http_status"] == 200
    assert lines[1]["host"] == "127.0.0.1"
    text = json.dumps(lines)
    for withheld in (address, "hospital.example.org", "/hooks/xray", "receiver-private",
                     FINDING, PROBABILITY, job.job_id, SECRET):
        assert withheld not in text


def test_a_failed_job_is_notified_with_its_status_and_no_error_text(aws, store):
    address = "reader.failed@hospital.example.org"
    job = final_job(store, {"email": address}, status=FAILED)
    assert notify.handle(notice_event(store, job), settings(), store,
                         ses=aws.client("ses")) == notify.SENT
    (mail,) = mails_to(address)
    assert mail.subject == "Chest X-ray job failed"
    assert job.status_url in mail.body
    assert "InvalidImage" not in mail.body and "truncated" not in mail.body


def secrets_client(aws) -> Any:
    return aws.client("ssm")


def test_a_webhook_that_keeps_failing_raises_and_its_retry_delivers(aws, store, capsys):
    """Five attempts with 1, 2, 4, 8 s between them; then the claim is released and the error
    raised, so Lambda's retry of the event sends it, once."""
    pauses = Pauses()
    with Receiver([503] * notify.ATTEMPTS).running() as receiver:
        job = final_job(store, {"webhook": receiver.url})
        event = notice_event(store, job)
        with pytest.raises(NotificationFailed, match="webhook"):
            notify.handle(event, settings(), store, secrets=secrets_client(aws), sleep=pauses)
        assert [d["answered"] for d in receiver.deliveries] == [503] * 5
        assert pauses == [1, 2, 4, 8]
        assert not claimed(store, job, notify.WEBHOOK)
        (failed,) = log_lines(capsys.readouterr().out)
        assert (failed["outcome"], failed["attempts"], failed["http_status"]) == (
            "failed", 5, 503)
        assert failed["level"] == "WARNING"

        assert notify.handle(event, settings(), store, secrets=secrets_client(aws),
                             sleep=pauses) == notify.SENT
        assert notify.handle(event, settings(), store, secrets=secrets_client(aws),
                             sleep=pauses) == notify.DUPLICATE
    assert [d["answered"] for d in receiver.deliveries] == [503] * 5 + [200]
    assert all(d["verified"] for d in receiver.deliveries)


def test_a_receiver_that_cannot_be_reached_is_retried_then_raises(aws, store, capsys):
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    job = final_job(store, {"webhook": closed})
    pauses = Pauses()
    with pytest.raises(NotificationFailed):
        notify.handle(notice_event(store, job), settings(), store, secrets=secrets_client(aws),
                      sleep=pauses)
    assert pauses == [1, 2, 4, 8]
    assert not claimed(store, job, notify.WEBHOOK)
    (failed,) = log_lines(capsys.readouterr().out)
    assert failed["attempts"] == 5 and failed["error_type"] == "ConnectionRefusedError"
    assert "http_status" not in failed


@pytest.mark.parametrize("answer", [410, 302])
def test_a_receiver_refusal_or_redirect_is_not_retried_nor_followed(aws, store, answer):
    pauses = Pauses()
    with Receiver([answer]).running() as receiver:
        job = final_job(store, {"webhook": receiver.url})
        event = notice_event(store, job)
        outcome = notify.handle(event, settings(), store, secrets=secrets_client(aws),
                                sleep=pauses)
        again = notify.handle(event, settings(), store, secrets=secrets_client(aws),
                              sleep=pauses)
    assert (outcome, again) == (notify.REJECTED, notify.DUPLICATE)
    assert [(d["path"], d["answered"]) for d in receiver.deliveries] == [
        ("/hooks/xray?token=receiver-private", answer)]
    assert pauses == []
    assert claimed(store, job, notify.WEBHOOK)


def test_a_retry_after_429_succeeds(aws, store):
    pauses = Pauses()
    with Receiver([429, 502]).running() as receiver:
        job = final_job(store, {"webhook": receiver.url})
        assert notify.handle(notice_event(store, job), settings(), store,
                             secrets=secrets_client(aws), sleep=pauses) == notify.SENT
    assert [d["answered"] for d in receiver.deliveries] == [429, 502, 200]
    assert pauses == [1, 2]


@pytest.mark.parametrize("name, value, says", [
    ("/xray/test/absent", None, r"cannot be read \(ParameterNotFound\)"),
    ("/xray/test/plain", "hunter2-not-a-webhook-secret", "starts with whsec_"),
    ("/xray/test/not-base64", "whsec_***not base64***", "must be base64"),
    ("/xray/test/short", "whsec_" + base64.b64encode(b"12345678").decode(),
     "at least 24 random bytes, it holds 8"),
])
def test_a_secret_that_cannot_sign_is_a_clear_error_and_claims_nothing(aws, store, name, value,
                                                                      says):
    if value is not None:
        aws.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString")
    with Receiver([]).running() as receiver:
        job = final_job(store, {"webhook": receiver.url})
        with pytest.raises(NotifierMisconfigured, match=says) as raised:
            notify.handle(notice_event(store, job), settings(webhook_secret_name=name), store,
                          secrets=secrets_client(aws), sleep=Pauses())
    message = str(raised.value)
    assert name in message and "XRAY_WEBHOOK_SECRET_NAME" in message
    assert "aws ssm put-parameter" in message and "SecureString" in message
    assert "openssl rand -base64 32" in message
    if value is not None:
        assert value not in message
    assert receiver.deliveries == []
    assert not claimed(store, job, notify.WEBHOOK)


def test_an_unverified_sender_fails_releases_the_claim_and_the_retry_sends(aws, store):
    sender = "unverified@xray-other.example.net"
    address = "reader.retry@hospital.example.org"
    job = final_job(store, {"email": address})
    event = notice_event(store, job)
    ses = aws.client("ses")
    with pytest.raises(NotificationFailed, match="email"):
        notify.handle(event, settings(ses_sender=sender), store, ses=ses)
    assert mails_to(address) == []
    assert not claimed(store, job, notify.EMAIL)

    ses.verify_email_identity(EmailAddress=sender)
    assert notify.handle(event, settings(ses_sender=sender), store, ses=ses) == notify.SENT
    assert notify.handle(event, settings(ses_sender=sender), store, ses=ses) == \
        notify.DUPLICATE
    (mail,) = mails_to(address)
    assert mail.source == sender


def test_a_stage_without_a_sender_or_secret_skips_that_channel(aws, store):
    address = "reader.skip@hospital.example.org"
    job = final_job(store, {"email": address, "webhook": "https://hooks.example.org/x"})

    def no_call(*args: Any) -> int:
        raise AssertionError("nothing may be posted")

    outcome = notify.handle(notice_event(store, job),
                            settings(ses_sender="", webhook_secret_name=""), store,
                            ses=aws.client("ses"), post=no_call)
    assert outcome == notify.SKIPPED
    assert mails_to(address) == []
    assert not claimed(store, job, notify.EMAIL) and not claimed(store, job, notify.WEBHOOK)


def test_a_url_the_api_would_refuse_is_never_called(aws, store):
    calls: List[str] = []

    def post(url: str, *args: Any) -> int:
        calls.append(url)
        return 200

    job = final_job(store, {"webhook": "http://10.0.0.7/internal"})
    assert notify.handle(notice_event(store, job), settings(), store,
                         secrets=secrets_client(aws), post=post) == notify.REFUSED
    assert calls == []
    assert not claimed(store, job, notify.WEBHOOK)


@pytest.mark.parametrize("url, allowed", [
    ("https://hooks.example.org/xray?x=1", True),
    ("https://hooks.example.org:8443/", True),
    ("http://localhost:8080/hook", True),
    ("http://127.0.0.1/hook", True),
    ("http://hooks.example.org/hook", False),
    ("http://169.254.169.254/latest/meta-data", False),
    ("https://user:pass@hooks.example.org/", False),
    ("http://localhost@evil.example.org/", False),
    ("ftp://hooks.example.org/", False),
    ("https://hooks.example.org:99999/", False),
    ("https:///no-host", False),
    ("https://hooks.example.org/a b", False),
    ("https://hooks.example.org/\r\nX-Injected: 1", False),
    ("https://hooks.example.org/" + "a" * 2048, False),
])
def test_only_https_or_loopback_http_is_called(url, allowed):
    assert notify.allowed_url(url) is allowed


def test_a_deleted_job_or_another_event_sends_nothing(aws, store):
    address = "reader.gone@hospital.example.org"
    ses = aws.client("ses")
    deleted = final_job(store, {"email": address})
    event = notice_event(store, deleted)
    assert store.delete(deleted.job_id)
    assert notify.handle(event, settings(), store, ses=ses) == notify.GONE

    record_gone = final_job(store, {"email": address})
    store.delete_object(layout.record_key(record_gone.job_id))
    assert notify.handle(notice_event(store, record_gone), settings(), store, ses=ses) == \
        notify.GONE

    other = final_job(store, {"email": address})
    assert notify.handle(created_event(store, layout.record_key(other.job_id)), settings(),
                         store, ses=ses) == notify.IGNORED
    assert notify.handle(created_event(store, layout.notice_key(other.job_id), "other-bucket"),
                         settings(), store, ses=ses) == notify.IGNORED
    assert notify.handle({"source": "aws.events", "detail-type": "Scheduled Event"},
                         settings(), store, ses=ses) == notify.IGNORED
    assert mails_to(address) == []


def test_the_signature_matches_the_specs_published_example():
    """The example of the Standard Webhooks reference libraries' tests."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, timestamp, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    signature = notify.sign(secret, msg_id, timestamp, body)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert spec_signature_ok(secret, {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                                      "webhook-signature": signature}, body)
    at = timestamp + 60
    assert notify.verify(secret, msg_id, str(timestamp), body, signature, at=at)
    assert notify.verify(secret, msg_id, str(timestamp), body,
                         f"v1,bm90IGl0 v2,{signature[3:]} {signature}", at=at)
    assert not notify.verify(secret, msg_id, str(timestamp), body + b" ", signature, at=at)
    assert not notify.verify(secret, "msg_other", str(timestamp), body, signature, at=at)
    assert not notify.verify(SECRET, msg_id, str(timestamp), body, signature, at=at)
    assert not notify.verify(secret, msg_id, str(timestamp), body, signature,
                             at=timestamp + notify.TOLERANCE_S + 1)  # a replay
    assert not notify.verify(secret, msg_id, "soon", body, signature, at=at)
