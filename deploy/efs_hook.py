"""Post-deploy hook: attaches the EFS access point to the function Chalice just deployed.

Chalice has no EFS setting and never sends FileSystemConfigs, so a later `chalice deploy` leaves
an attachment alone; this hook makes one, waits for Lambda to apply it and reads it back.
Running it again when the attachment is already in place sends nothing.
"""
import json
import logging
from pathlib import Path
from typing import Any, Dict
from urllib.parse import unquote

from botocore.exceptions import ClientError, WaiterError

from deploy.aws_checks import check_network
from deploy.errors import DeployError
from deploy.policy import allows_mount
from deploy.settings import StageSettings

log = logging.getLogger("deploy")

FUNCTION_RESOURCE = "api_handler"


def deployed_function(project_dir: Path, stage: str) -> str:
    """The API function's ARN from Chalice's deployed-resources record."""
    record = project_dir / ".chalice" / "deployed" / f"{stage}.json"
    try:
        resources = json.loads(record.read_text(encoding="utf-8"))["resources"]
    except FileNotFoundError:
        raise DeployError(f"{record} not found: stage {stage!r} has not been deployed by "
                          "Chalice from this folder") from None
    by_name = {r["name"]: r for r in resources}
    function = by_name.get(FUNCTION_RESOURCE)
    if function is None or function.get("resource_type") != "lambda_function":
        raise DeployError(f"{record} lists no lambda_function {FUNCTION_RESOURCE!r}")
    return function["lambda_arn"]


def attach(lambda_: Any, ec2: Any, efs: Any, iam: Any, settings: StageSettings,
           function_arn: str) -> bool:
    """Attaches the access point; returns whether an update was sent."""
    wait_updated(lambda_, function_arn)  # Chalice's own update may still be in progress
    config = lambda_.get_function_configuration(FunctionName=function_arn)
    vpc = config.get("VpcConfig") or {}
    if not vpc.get("SubnetIds"):
        raise DeployError(
            f"function {config['FunctionName']} is not in a VPC, and Lambda mounts EFS only "
            "in one: set subnet_ids and security_group_ids for this stage in .chalice/config.json "
            "and deploy again")
    # The function's actual network, not just the config: it is what Lambda will mount from.
    check_network(ec2, efs, settings.stage, vpc["SubnetIds"], vpc["SecurityGroupIds"],
                  settings.access_point_id)
    # The function's own role (Chalice makes one per function when the policy is a file).
    _check_role(iam, config["Role"].rsplit("/", 1)[-1], settings.access_point_arn)
    wanted = settings.file_system_configs
    if config.get("FileSystemConfigs") == wanted:
        log.info("EFS access point already attached at %s: nothing to change", settings.mount_path)
        return False
    try:
        lambda_.update_function_configuration(FunctionName=function_arn, FileSystemConfigs=wanted)
    except ClientError as error:
        raise DeployError(f"Lambda refused to attach {settings.access_point_arn} at "
                          f"{settings.mount_path}: {error.response['Error']['Message']}") from None
    wait_updated(lambda_, function_arn)
    verify(lambda_, function_arn, settings)
    log.info("attached %s at %s", settings.access_point_arn, settings.mount_path)
    return True


def verify(lambda_: Any, function_arn: str, settings: StageSettings) -> Dict[str, Any]:
    config = lambda_.get_function_configuration(FunctionName=function_arn)
    got = config.get("FileSystemConfigs")
    if got != settings.file_system_configs:
        raise DeployError(f"after the update, {config['FunctionName']} reports FileSystemConfigs "
                          f"{got!r}, expected {settings.file_system_configs!r}")
    if config.get("LastUpdateStatus") not in (None, "Successful"):
        raise DeployError(f"the function update ended {config['LastUpdateStatus']}: "
                          f"{config.get('LastUpdateStatusReason', 'no reason given')}")
    return config


def wait_updated(lambda_: Any, function_arn: str) -> None:
    try:
        lambda_.get_waiter("function_updated_v2").wait(
            FunctionName=function_arn, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
    except WaiterError as error:  # its message carries Lambda's last status and reason
        raise DeployError(f"the function {function_arn} did not finish updating: {error}") from None


def _check_role(iam: Any, role_name: str, access_point_arn: str) -> None:
    names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    for name in names:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):  # IAM returns it URL-encoded when not parsed by boto3
            document = json.loads(unquote(document))
        if allows_mount(document, access_point_arn):
            return
    raise DeployError(f"missing NFS permission: role {role_name} does not allow "
                      f"elasticfilesystem:ClientMount through {access_point_arn}; Lambda "
                      "would fail to mount. Deploy with this command (it writes "
                      ".chalice/policy-<stage>.json) rather than plain `chalice deploy`.")
