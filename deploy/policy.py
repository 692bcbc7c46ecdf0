"""The functions' IAM policies, written to .chalice/ for Chalice to use, one per function (Chalice
then makes one role per function):

- policy-<stage>.json (api_handler): logs, the network interfaces a VPC function needs (Chalice's
  own VPC statement), a read-only mount of our access point, and with "xray": true the two
  X-Ray writes active tracing needs.
- policy-<stage>-loader.json (efs_loader): the same, plus ClientWrite through the same access
  point and s3:GetObject on the upload prefix of the upload bucket. Nothing else: it can read
  only what vendor_efs.ship uploads, and write only through our access point.

Generated rather than hand-edited so that the access point ARN and the bucket are written in
one place (config.json).
"""
import fnmatch
import json
from typing import Any, Dict, Iterable, List, Optional

from deploy.settings import FunctionSettings, StageSettings

CLIENT_MOUNT, CLIENT_WRITE = "elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"
GET_OBJECT = "s3:GetObject"


def policy_document(settings: StageSettings,
                    function: Optional[FunctionSettings] = None) -> Dict[str, Any]:
    """The API's policy, or the given function's."""
    function = function or settings.api
    region, account, partition = settings.region, settings.account, settings.partition
    statements: List[Dict[str, Any]] = [
        {
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"arn:{partition}:logs:{region}:{account}:*",
        },
        {
            # Lambda creates the function's network interfaces with the execution role;
            # these actions do not support resource-level permissions.
            "Sid": "VpcNetworkInterfaces",
            "Effect": "Allow",
            "Action": ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                       "ec2:DetachNetworkInterface", "ec2:DeleteNetworkInterface"],
            "Resource": "*",
        },
    ]
    if function.tracing:  # "xray": true; Chalice adds this only to the policies it generates
        statements.append({"Sid": "XRayTracing", "Effect": "Allow",
                           "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                           "Resource": "*"})
    # The condition pins the mount to our access point, hence to its one file system (and to
    # the access point's root directory and POSIX user). Never ClientRootAccess.
    pinned = {"Resource": f"arn:{partition}:elasticfilesystem:{region}:{account}:file-system/*",
              "Condition": {"StringEquals": {
                  "elasticfilesystem:AccessPointArn": settings.access_point_arn}}}
    if not function.writes_efs:
        # ClientMount only: a read-only mount (no ClientWrite, no ClientRootAccess).
        statements.append({"Sid": "EfsReadOnlyMountThroughAccessPoint", "Effect": "Allow",
                           "Action": CLIENT_MOUNT, **pinned})
        return {"Version": "2012-10-17", "Statement": statements}
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
    return {"Version": "2012-10-17", "Statement": statements}


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
