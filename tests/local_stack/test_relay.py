"""The local stack's AWS side in a real moto server on loopback: the resources scripts/serve
makes (the rules use the deployed patterns, so only the right objects wake each function), and
the relay delivering their events to handlers as Lambda does (delete after return, three
attempts, the schedule). The handlers here record or fail on purpose; app.py's own handlers
run through the relay in test_serve.py."""
import base64
import json
import threading

import pytest

from chalicelib.jobs.notify import webhook_secret
from chalicelib.settings import JOBS_BUCKET, SES_SENDER, WEBHOOK_SECRET_NAME
from local_stack.relay import MAX_ATTEMPTS, Relay, functions
from local_stack.resources import NOTIFIER, SWEEPER, WORKER, provision
from tests.support.local_aws import local_aws

pytestmark = pytest.mark.aws_emulator

JOB_ID = "A" * 32
ORIGIN = "http://127.0.0.1:8123"


@pytest.fixture
def stack():
    with local_aws() as aws:
        made = functions("chest-xray", "local")
        resources = provision(aws.client, "chest-xray", "local", [ORIGIN], {},
                              {name: 90 for name in made})
        yield aws, resources, made


def receive(sqs, url, wait_s=2):
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s,
                              MessageSystemAttributeNames=["ApproximateReceiveCount"])
    return got.get("Messages", [])


def test_the_bucket_is_private_encrypted_open_to_the_api_origin_and_names_what_the_app_reads(
        stack):
    aws, resources, _ = stack
    s3 = aws.client("s3")
    assert resources.bucket == "chest-xray-local-jobs"
    assert resources.env() == {JOBS_BUCKET: "chest-xray-local-jobs",
                               SES_SENDER: "jobs@chest-xray.test",
                               WEBHOOK_SECRET_NAME: "/chest-xray/local/webhook-secret"}
    block = s3.get_public_access_block(Bucket=resources.bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    (rule,) = s3.get_bucket_encryption(Bucket=resources.bucket)[
        "ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (cors,) = s3.get_bucket_cors(Bucket=resources.bucket)["CORSRules"]
    assert cors["AllowedOrigins"] == [ORIGIN] and cors["AllowedMethods"] == ["POST"]
    # the notifier can send: a verified sender, a Standard Webhooks secret it accepts
    assert resources.ses_sender in aws.client("ses").list_identities()["Identities"]
    ssm = aws.client("ssm")
    parameter = ssm.get_parameter(Name=resources.webhook_secret_name,
                                  WithDecryption=True)["Parameter"]
    assert parameter["Type"] == "SecureString"
    assert webhook_secret(ssm, resources.webhook_secret_name) == parameter["Value"]
    assert len(base64.b64decode(parameter["Value"][len("whsec_"):])) == 32


def test_only_uploads_and_batch_inputs_reach_the_worker_and_only_notices_the_notifier(stack):
    aws, resources, _ = stack
    s3, sqs = aws.client("s3"), aws.client("sqs")
    for key in (f"jobs/{JOB_ID}.json", f"pending/{JOB_ID}", f"uploads/{JOB_ID}/image",
                "batch/ward-3/chest.dcm", f"notices/{JOB_ID}.json", "results/ward-3/x.json"):
        s3.put_object(Bucket=resources.bucket, Key=key, Body=b"{}")
    worker = [json.loads(m["Body"]) for m in receive(sqs, resources.queues[WORKER])]
    notifier = [json.loads(m["Body"]) for m in receive(sqs, resources.queues[NOTIFIER])]
    assert sorted(e["detail"]["object"]["key"] for e in worker) == [
        "batch/ward-3/chest.dcm", f"uploads/{JOB_ID}/image"]
    assert [e["detail"]["object"]["key"] for e in notifier] == [f"notices/{JOB_ID}.json"]
    # as EventBridge delivers it to a Lambda target: what Chalice's CloudWatchEvent reads
    for event in worker + notifier:
        assert event["source"] == "aws.s3" and event["detail-type"] == "Object Created"
        assert {"version", "id", "account", "region", "time", "resources"} <= set(event)
        assert event["detail"]["bucket"]["name"] == resources.bucket


def test_the_relay_calls_the_handler_as_lambda_does_and_deletes_the_event_after(stack):
    aws, resources, made = stack
    sqs = aws.client("sqs")
    called = threading.Event()
    calls, lines = [], []

    def handler(event, context):
        calls.append((event, context.function_name, context.get_remaining_time_in_millis()))
        called.set()
        return {"outcome": "succeeded"}

    relay = Relay(sqs, {WORKER: handler}, made, {WORKER: resources.queues[WORKER]}, 10,
                  lines.append)
    relay.start()
    try:
        aws.client("s3").put_object(Bucket=resources.bucket, Key=f"uploads/{JOB_ID}/image",
                                    Body=b"x")
        assert called.wait(30)
    finally:
        relay.stop()
    ((event, name, remaining),) = calls
    assert event["detail"]["object"]["key"] == f"uploads/{JOB_ID}/image"
    assert name == "chest-xray-local-job_worker" and 0 < remaining <= made[WORKER].timeout_s * 1000
    # one line, the outcome only: never the key
    assert len(lines) == 1 and lines[0].startswith("job_worker upload -> succeeded in ")
    assert JOB_ID not in lines[0]
    assert receive(sqs, resources.queues[WORKER], wait_s=0) == []  # deleted, not in flight


def test_a_failing_handler_gets_the_event_again_then_it_is_dropped_after_three_attempts(stack):
    aws, resources, made = stack
    sqs, url = aws.client("sqs"), resources.queues[WORKER]
    attempts, lines = [], []

    def handler(event, context):
        attempts.append(event["detail"]["object"]["key"])
        raise RuntimeError("the model store is down")

    relay = Relay(sqs, {WORKER: handler}, made, {WORKER: url}, 10, lines.append,
                  retry_delays_s=(0, 0))
    aws.client("s3").put_object(Bucket=resources.bucket, Key=f"uploads/{JOB_ID}/image", Body=b"x")
    for _ in range(MAX_ATTEMPTS):
        (message,) = receive(sqs, url)
        relay.deliver(WORKER, url, message)
    assert len(attempts) == MAX_ATTEMPTS
    assert [line.split(" (")[1] for line in lines] == [
        "attempt 1 of 3: again in 0 s)", "attempt 2 of 3: again in 0 s)",
        "attempt 3 of 3: dropped; the sweeper recovers it)"]
    assert all("error RuntimeError" in line and "store" not in line for line in lines)
    assert receive(sqs, url, wait_s=1) == []


def test_a_jobs_module_not_merged_yet_is_said_once_and_its_events_are_dropped(stack):
    aws, resources, made = stack
    sqs, url = aws.client("sqs"), resources.queues[NOTIFIER]
    lines = []

    def handler(event, context):
        raise ModuleNotFoundError("No module named 'chalicelib.jobs.notify'",
                                  name="chalicelib.jobs.notify")

    relay = Relay(sqs, {NOTIFIER: handler}, made, {NOTIFIER: url}, 10, lines.append)
    s3 = aws.client("s3")
    for job in ("B" * 32, "C" * 32):
        s3.put_object(Bucket=resources.bucket, Key=f"notices/{job}.json", Body=b"{}")
    for message in receive(sqs, url):
        relay.deliver(NOTIFIER, url, message)
    assert lines.count("job_notifier: chalicelib.jobs.notify is not in this tree yet; its "
                       "events are dropped") == 1
    assert len(lines) == 3 and receive(sqs, url, wait_s=1) == []


def test_the_sweeper_runs_on_its_schedule_with_a_scheduled_event(stack):
    aws, resources, made = stack
    swept = threading.Event()
    events, lines = [], []

    def handler(event, context):
        events.append(event)
        swept.set()

    relay = Relay(aws.client("sqs"), {SWEEPER: handler}, made, {}, 0.01, lines.append)
    relay.start()
    try:
        assert swept.wait(30)
    finally:
        relay.stop()
    assert events[0]["detail-type"] == "Scheduled Event" and events[0]["source"] == "aws.events"
    assert events[0]["resources"][0].endswith(":rule/chest-xray-local-job_sweeper")
    assert lines[0].startswith("job_sweeper schedule -> done in ")
