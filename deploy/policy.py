"""The function's IAM policy, written to .chalice/policy-<stage>.json for Chalice to use.

Generated rather than hand-edited so that the access point ARN is written in one place
(config.json). It holds what the function needs and nothing more: logs, the network interfaces
a VPC function needs (Chalice's own VPC statement), and a read-only mount of our access point.
"""
import json
from typing import Any, Dict

from deploy.settings import StageSettings


def policy_document(settings: StageSettings) -> Dict[str, Any]:
    region, account, partition = settings.region, settings.account, settings.partition
    return {
        "Version": "2012-10-17",
        "Statement": [
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
            {
                # ClientMount only: a read-only mount (no ClientWrite, no ClientRootAccess).
                # The condition pins it to our access point, hence to its one file system.
                "Sid": "EfsReadOnlyMountThroughAccessPoint",
                "Effect": "Allow",
                "Action": "elasticfilesystem:ClientMount",
                "Resource": f"arn:{partition}:elasticfilesystem:{region}:{account}:file-system/*",
                "Condition": {"StringEquals": {
                    "elasticfilesystem:AccessPointArn": settings.access_point_arn}},
            },
        ],
    }


def write_policy(settings: StageSettings) -> bool:
    """Writes the policy file if its content differs; returns whether it changed."""
    text = json.dumps(policy_document(settings), indent=2) + "\n"
    path = settings.policy_file
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def allows_mount(document: Dict[str, Any], access_point_arn: str) -> bool:
    """Whether a policy document (as IAM returns it) allows ClientMount through the access point.
    Deliberately simple: it recognises what policy_document writes, or an unconditioned allow."""
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    for statement in statements:
        actions = statement.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if statement.get("Effect") != "Allow" or not any(
                a in ("elasticfilesystem:ClientMount", "elasticfilesystem:*", "*")
                for a in actions):
            continue
        condition = statement.get("Condition")
        if not condition:
            return True
        pinned = condition.get("StringEquals", {}).get("elasticfilesystem:AccessPointArn")
        if pinned == access_point_arn or (isinstance(pinned, list) and access_point_arn in pinned):
            return True
    return False
