"""The jobs path's stack for tests, on a local moto server (tests/support/local_aws.py): the
stage's jobs bucket with S3 -> EventBridge on, rules with the worker's and the notifier's own
patterns (chalicelib/jobs/events.py) delivering the events moto emits to SQS queues the test
reads, and the client's side of an upload: the presigned POST, sent with plain HTTP.

moto emits an event while it serves the S3 request that caused it, so a queue holds the event
as soon as that request has returned: a test drains a queue, it never waits on one."""
import contextlib
import json
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List

import requests

from chalicelib.jobs.events import notifier_pattern, worker_pattern
from chalicelib.jobs.store import JobStore
from chalicelib.settings import JOBS_BUCKET
from local_stack.resources import rule_to_queue
from tests.support.local_aws import LocalAws, local_aws

BUCKET = "xray-jobs-test"
SQS_VISIBILITY_S = 30  # SQS's default: a test drains its queues, it never redelivers


@dataclass
class JobsStack:
    aws: LocalAws
    bucket: str
    worker_queue: str    # queue URLs
    notifier_queue: str

    def env(self, **extra: str) -> Dict[str, str]:
        """What the app (or a subprocess) needs to use this stack as its stage's jobs bucket."""
        return {**self.aws.env(), JOBS_BUCKET: self.bucket, **extra}

    @property
    def s3(self) -> Any:
        return self.aws.client("s3")

    def store(self) -> JobStore:
        return JobStore(self.s3, self.bucket)

    def worker_events(self) -> List[Dict[str, Any]]:
        """The events the worker's rule delivered since the last call, in order."""
        return drain(self.aws.client("sqs"), self.worker_queue)

    def notifier_events(self) -> List[Dict[str, Any]]:
        return drain(self.aws.client("sqs"), self.notifier_queue)

    def keys(self, prefix: str = "") -> List[str]:
        return sorted(self.store().keys(prefix))


def make_jobs_bucket(s3: Any, bucket: str = BUCKET) -> None:
    """The bucket as both deploy paths leave it for the triggers: EventBridge notifications on."""
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})


def jobs_stack(aws: LocalAws, bucket: str = BUCKET) -> JobsStack:
    """Rules with the deployed patterns, each targeting a new SQS queue, as the local stack
    makes them (local_stack/resources.rule_to_queue)."""
    make_jobs_bucket(aws.client("s3"), bucket)
    sqs, events = aws.client("sqs"), aws.client("events")
    return JobsStack(aws=aws, bucket=bucket,
                     worker_queue=rule_to_queue(sqs, events, "job-worker",
                                                worker_pattern(bucket), SQS_VISIBILITY_S),
                     notifier_queue=rule_to_queue(sqs, events, "job-notifier",
                                                  notifier_pattern(bucket), SQS_VISIBILITY_S))


@contextlib.contextmanager
def local_jobs(bucket: str = BUCKET) -> Iterator[JobsStack]:
    """A fresh moto server holding a jobs stack."""
    with local_aws() as aws:
        yield jobs_stack(aws, bucket)


def drain(sqs: Any, queue_url: str) -> List[Dict[str, Any]]:
    """Every message the queue holds now (deleted as read), as the events they carry."""
    found: List[Dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            return found
        for message in messages:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def upload(presigned: Dict[str, Any], body: bytes, filename: str = "image") -> requests.Response:
    """The client's upload: a multipart/form-data POST of the presigned fields and the file to
    the presigned URL (the `upload` object POST /xray/jobs answers), as a browser form sends it."""
    content_type = presigned["fields"].get("Content-Type", "application/octet-stream")
    return requests.post(presigned["url"], data=presigned["fields"],
                         files={"file": (filename, body, content_type)}, timeout=60)
