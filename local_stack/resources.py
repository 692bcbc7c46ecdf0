"""What the stage's account must hold before a job can run, made in the local emulator: the
jobs bucket, the EventBridge rules that wake the functions, and what the notifier sends with.

The same shapes as on AWS, so the app cannot tell the difference: the bucket sends its events to
EventBridge (EventBridgeConfiguration), has SSE-S3 default encryption, a public access block,
and the CORS rule a browser's presigned POST needs, each as deploy/jobs_bucket.py defines it;
the rules use chalicelib.jobs.events' patterns, the ones the deployed rules use. Where AWS would
invoke the function, each rule targets an SQS queue instead, which the relay (relay.py) reads.
SES needs a verified sender before it sends (moto keeps the mail, it sends nothing), and
webhooks are signed with a Standard Webhooks secret read from an SSM SecureString parameter.
Lifecycle rules are left out: moto never applies them, and a local stack lives for minutes.
"""
import base64
import json
import secrets
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional

from chalicelib.jobs.events import notifier_pattern, worker_pattern
from chalicelib.settings import JOBS_BUCKET, SES_SENDER, WEBHOOK_SECRET_NAME
from deploy import jobs_bucket

WORKER, NOTIFIER, SWEEPER = "job_worker", "job_notifier", "job_sweeper"
# A .test domain (RFC 2606) can never be anyone's real address
DEFAULT_SENDER = "jobs@chest-xray.test"


@dataclass(frozen=True)
class Resources:
    bucket: str
    queues: Dict[str, str]     # function name -> the URL of the queue its rule fills
    ses_sender: str
    webhook_secret_name: str

    def env(self) -> Dict[str, str]:
        """The stage's job settings, as .chalice/config.json would set them on AWS."""
        return {JOBS_BUCKET: self.bucket, SES_SENDER: self.ses_sender,
                WEBHOOK_SECRET_NAME: self.webhook_secret_name}


def names(app_name: str, stage: str, environ: Dict[str, str]) -> Dict[str, str]:
    """The resources' names: the stage's own when its environment names them, else
    <app>-<stage>-jobs and so on."""
    return {"bucket": environ.get(JOBS_BUCKET) or f"{app_name}-{stage}-jobs",
            "sender": environ.get(SES_SENDER) or DEFAULT_SENDER,
            "secret": environ.get(WEBHOOK_SECRET_NAME) or f"/{app_name}/{stage}/webhook-secret",
            "prefix": f"{app_name}-{stage}"}


def provision(client: Any, app_name: str, stage: str, origins: Iterable[str],
              environ: Dict[str, str], visibility_s: Dict[str, int]) -> Resources:
    """Creates everything in the emulator. client(service) -> a boto3 client for it; origins:
    the browser origins that may POST uploads (the API's own and XRAY_CORS_ORIGINS);
    visibility_s: per function, how long a delivered event stays invisible (its timeout)."""
    named = names(app_name, stage, environ)
    bucket = named["bucket"]
    make_bucket(client("s3"), bucket, origins)
    sqs, events = client("sqs"), client("events")
    queues = {}
    for function, pattern in ((WORKER, worker_pattern(bucket)),
                              (NOTIFIER, notifier_pattern(bucket))):
        queues[function] = rule_to_queue(sqs, events, f"{named['prefix']}-{function}", pattern,
                                         visibility_s[function])
    client("ses").verify_email_identity(EmailAddress=named["sender"])
    put_webhook_secret(client("ssm"), named["secret"])
    return Resources(bucket=bucket, queues=queues, ses_sender=named["sender"],
                     webhook_secret_name=named["secret"])


def make_bucket(s3: Any, bucket: str, origins: Iterable[str]) -> None:
    """The deployed bucket's settings (deploy/jobs_bucket.py, their one home), lifecycle aside."""
    s3.create_bucket(Bucket=bucket)  # us-east-1: no LocationConstraint
    s3.put_public_access_block(Bucket=bucket,
                               PublicAccessBlockConfiguration=jobs_bucket.PUBLIC_ACCESS_BLOCK)
    s3.put_bucket_encryption(Bucket=bucket,
                             ServerSideEncryptionConfiguration=jobs_bucket.encryption())
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        jobs_bucket.cors_rule(sorted(set(origins)))]})
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})


def rule_to_queue(sqs: Any, events: Any, name: str, pattern: Dict[str, Any],
                  visibility_s: int) -> str:
    """An EventBridge rule with this pattern on the default bus, its target a new queue (what
    the function's trigger is on AWS). The queue's URL."""
    url = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility_s)})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    events.put_rule(Name=name, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(Rule=name, Targets=[{"Id": "relay", "Arn": arn}])
    return str(url)


def new_webhook_secret() -> str:
    """whsec_ + base64 of 32 random bytes: the Standard Webhooks secret format."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def put_webhook_secret(ssm: Any, name: str, value: Optional[str] = None) -> None:
    """A SecureString parameter, as the operator makes it on AWS (notify.create_command)."""
    ssm.put_parameter(Name=name, Type="SecureString", Value=value or new_webhook_secret())
