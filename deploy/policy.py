"""The functions' IAM policies, written to .chalice/ for Chalice to use, one per function (Chalice
then makes one role per function):

- policy-<stage>.json (api_handler): logs, the network interfaces a VPC function needs (Chalice's
  own VPC statement), a read-only mount of our access point, with "xray": true the two X-Ray
  writes active tracing needs, and the job objects its routes create, read and delete.
- policy-<stage>-loader.json (efs_loader): the same, plus ClientWrite through the same access
  point and s3:GetObject on the upload prefix of the upload bucket, and no job object. It can
  read only what vendor_efs.ship uploads, and write only through our access point.
- policy-<stage>-worker.json (job_worker): logs, VPC interfaces, the read-only mount, and the
  job objects it reads and writes.
- policy-<stage>-notifier.json, policy-<stage>-sweeper.json: outside the VPC (no network
  interfaces, no EFS); their job objects, and for the notifier ses:SendEmail from the stage's
  sender only (when one is set) and the webhook secret (when one is named).

Job objects are granted per key prefix of chalicelib/jobs/layout.py and per action, from
JOB_OBJECTS below, the one table of who touches what. Every jobs role also gets s3:ListBucket
on the jobs bucket, unconditioned: without it S3 answers a missing key with 403 instead of 404,
and the code tells "gone" (a deleted job, an upload not there yet) from "forbidden" by the 404;
an s3:prefix condition would not do, as a GetObject request carries no prefix. No function in
the VPC needs the internet: the API and the worker reach S3 through the gateway endpoint.

Generated rather than hand-edited so that the access point ARN and the buckets are written in
one place (config.json).
"""
import fnmatch
import json
from typing import Any, Dict, Iterable, List, Optional, Tuple

from chalicelib.jobs import layout
from deploy.settings import API, NOTIFIER, SWEEPER, WORKER, FunctionSettings, StageSettings

CLIENT_MOUNT, CLIENT_WRITE = "elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"
GET_OBJECT, PUT_OBJECT, DELETE_OBJECT = "s3:GetObject", "s3:PutObject", "s3:DeleteObject"
LIST_BUCKET = "s3:ListBucket"
SEND_EMAIL = "ses:SendEmail"
GET_SECRET = "secretsmanager:GetSecretValue"

# function -> S3 action -> the jobs bucket's key prefixes it may act on (HeadObject is
# s3:GetObject; CopyObject is s3:GetObject on the source and s3:PutObject on the target).
JOB_OBJECTS: Dict[str, Dict[str, Tuple[str, ...]]] = {
    # POST /xray/jobs writes the pending marker and the record, and presigns the upload (a
    # presigned POST acts with the signer's rights: s3:PutObject on uploads/); GET reads the
    # record; DELETE removes everything of the job (JobStore.delete).
    API: {GET_OBJECT: (layout.JOBS,),
          PUT_OBJECT: (layout.JOBS, layout.PENDING, layout.UPLOADS),
          DELETE_OBJECT: (layout.JOBS, layout.PENDING, layout.UPLOADS, layout.NOTICES,
                          layout.NOTIFIED)},
    # Claims and finishes jobs, reads the uploads and batch inputs, writes results, summaries
    # and notices, deletes processed uploads and inputs and a final job's pending marker.
    WORKER: {GET_OBJECT: (layout.JOBS, layout.UPLOADS, layout.BATCH, layout.RESULTS),
             PUT_OBJECT: (layout.JOBS, layout.NOTICES, layout.RESULTS),
             DELETE_OBJECT: (layout.PENDING, layout.UPLOADS, layout.BATCH)},
    # Reads the notice and the record (where the address and the URL are), claims each channel.
    NOTIFIER: {GET_OBJECT: (layout.NOTICES, layout.JOBS),
               PUT_OBJECT: (layout.NOTIFIED,)},
    # Lists pending/ (and batch/, results/), moves stale records, requeues uploads and batch
    # inputs by copying them onto themselves, writes the notice of a job it ends (abandoned or
    # expired) and deletes a final job's pending marker.
    SWEEPER: {GET_OBJECT: (layout.JOBS, layout.UPLOADS, layout.BATCH),
              PUT_OBJECT: (layout.JOBS, layout.UPLOADS, layout.BATCH, layout.NOTICES),
              DELETE_OBJECT: (layout.PENDING,)},
}


def policy_document(settings: StageSettings,
                    function: Optional[FunctionSettings] = None) -> Dict[str, Any]:
    """The API's policy, or the given function's."""
    function = function or settings.api
    region, account, partition = settings.region, settings.account, settings.partition
    statements: List[Dict[str, Any]] = [{
        "Sid": "Logs",
        "Effect": "Allow",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": f"arn:{partition}:logs:{region}:{account}:*",
    }]
    if function.in_vpc:
        # Lambda creates the function's network interfaces with the execution role;
        # these actions do not support resource-level permissions.
        statements.append({
            "Sid": "VpcNetworkInterfaces",
            "Effect": "Allow",
            "Action": ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                       "ec2:DetachNetworkInterface", "ec2:DeleteNetworkInterface"],
            "Resource": "*",
        })
    if function.tracing:  # "xray": true; Chalice adds this only to the policies it generates
        statements.append({"Sid": "XRayTracing", "Effect": "Allow",
                           "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                           "Resource": "*"})
    # The condition pins the mount to our access point, hence to its one file system (and to
    # the access point's root directory and POSIX user). Never ClientRootAccess.
    pinned = {"Resource": f"arn:{partition}:elasticfilesystem:{region}:{account}:file-system/*",
              "Condition": {"StringEquals": {
                  "elasticfilesystem:AccessPointArn": settings.access_point_arn}}}
    if function.writes_efs:
        statements += [
            {"Sid": "EfsReadWriteMountThroughAccessPoint", "Effect": "Allow",
             "Action": [CLIENT_MOUNT, CLIENT_WRITE], **pinned},
            {
                # Only the objects vendor_efs.ship uploads; no listing, no other bucket or prefix.
                "Sid": "ReadUploadedArchives",
                "Effect": "Allow",
                "Action": GET_OBJECT,
                "Resource": settings.upload_objects_arn,
            },
        ]
    elif function.mounts_efs:
        # ClientMount only: a read-only mount (no ClientWrite, no ClientRootAccess).
        statements.append({"Sid": "EfsReadOnlyMountThroughAccessPoint", "Effect": "Allow",
                           "Action": CLIENT_MOUNT, **pinned})
    statements += job_statements(settings, function)
    return {"Version": "2012-10-17", "Statement": statements}


def jobs_bucket_arn(settings: StageSettings) -> str:
    return f"arn:{settings.partition}:s3:::{settings.jobs_bucket}"


def webhook_secret_arn(settings: StageSettings) -> str:
    """The secret's ARN: as given, or for a name the ARN with Secrets Manager's random suffix
    (six characters after a hyphen) left open, as AWS advises for a policy naming a secret."""
    name = settings.jobs.webhook_secret_name
    if name.startswith("arn:"):
        return name
    return (f"arn:{settings.partition}:secretsmanager:{settings.region}:{settings.account}:"
            f"secret:{name}-??????")


SIDS = {GET_OBJECT: "ReadJobObjects", PUT_OBJECT: "WriteJobObjects",
        DELETE_OBJECT: "DeleteJobObjects"}


def job_statements(settings: StageSettings,
                   function: FunctionSettings) -> List[Dict[str, Any]]:
    """The function's rights on the jobs bucket (JOB_OBJECTS), and the notifier's SES and
    Secrets Manager rights; none for the loader."""
    grants = JOB_OBJECTS.get(function.name)
    if not grants:
        return []
    bucket = jobs_bucket_arn(settings)
    statements: List[Dict[str, Any]] = [
        {"Sid": SIDS[action], "Effect": "Allow", "Action": action,
         "Resource": [f"{bucket}/{prefix}*" for prefix in prefixes]}
        for action, prefixes in grants.items()]
    statements.append({"Sid": "ListJobsBucket", "Effect": "Allow", "Action": LIST_BUCKET,
                       "Resource": bucket})
    if function.name == NOTIFIER and settings.jobs.ses_sender:
        # SES authorizes against the identities of the sender (and, in the sandbox, of each
        # recipient): any identity of this account, but only ever from the stage's sender.
        statements.append({
            "Sid": "SendJobMail", "Effect": "Allow", "Action": SEND_EMAIL,
            "Resource": f"arn:{settings.partition}:ses:{settings.region}:{settings.account}:"
                        "identity/*",
            "Condition": {"StringEquals": {"ses:FromAddress": settings.jobs.ses_sender}}})
    if function.name == NOTIFIER and settings.jobs.webhook_secret_name:
        statements.append({"Sid": "ReadWebhookSecret", "Effect": "Allow",
                           "Action": GET_SECRET, "Resource": webhook_secret_arn(settings)})
    return statements


def write_policy(settings: StageSettings) -> List[str]:
    """Writes each function's policy file if its content differs; returns the names written."""
    written = []
    for function in settings.functions:
        text = json.dumps(policy_document(settings, function), indent=2) + "\n"
        path = function.policy_file
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.write_text(text, encoding="utf-8")
        written.append(path.name)
    return written


def _statements(document: Dict[str, Any]) -> Iterable[Dict[str, Any]]:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else statements


def _listed(value: Any) -> List[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _grants(statement: Dict[str, Any], action: str) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    service = action.split(":")[0]
    return any(a in (action, f"{service}:*", "*") for a in _listed(statement.get("Action")))


def allows_mount(document: Dict[str, Any], access_point_arn: str,
                 action: str = CLIENT_MOUNT) -> bool:
    """Whether a policy document (as IAM returns it) allows an EFS client action through the
    access point. Deliberately simple: it recognises what policy_document writes, or an
    unconditioned allow."""
    for statement in _statements(document):
        if not _grants(statement, action):
            continue
        condition = statement.get("Condition")
        if not condition:
            return True
        pinned = condition.get("StringEquals", {}).get("elasticfilesystem:AccessPointArn")
        if pinned == access_point_arn or (isinstance(pinned, list) and access_point_arn in pinned):
            return True
    return False


def allows_get_object(document: Dict[str, Any], object_arn: str) -> bool:
    """Whether an unconditioned Allow covers s3:GetObject on this object ARN."""
    for statement in _statements(document):
        if _grants(statement, GET_OBJECT) and not statement.get("Condition") and any(
                fnmatch.fnmatchcase(object_arn, pattern)
                for pattern in _listed(statement.get("Resource"))):
            return True
    return False
