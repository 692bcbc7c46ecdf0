"""Post-deploy hook: attaches the EFS access point to the functions Chalice just deployed that
mount it (deploy/settings.EFS_FUNCTIONS), at the same mount path: the API (api_handler) and the
job worker (job_worker), which mount read-only by their roles, and the loader (efs_loader), the
only writer. The notifier and the sweeper run outside the VPC and mount nothing.

Chalice has no EFS setting and never sends FileSystemConfigs, so a later `chalice deploy` leaves
an attachment alone; this hook makes one, waits for Lambda to apply it and reads it back.
Every function is checked before any is changed; running it again when the attachments are
already in place sends nothing.
"""
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import unquote

from botocore.exceptions import ClientError, WaiterError

from deploy.aws_checks import check_network
from deploy.chalice_files import function_arns
from deploy.errors import DeployError
from deploy.policy import CLIENT_MOUNT, CLIENT_WRITE, allows_get_object, allows_mount
from deploy.settings import UPLOAD_PREFIX, FunctionSettings, StageSettings

log = logging.getLogger("deploy")


@dataclass
class Target:
    function: FunctionSettings
    arn: str
    label: str = ""  # "efs_loader (chest-xray-dev-efs_loader)", once known


def deployed_functions(project_dir: Path, stage: str, settings: StageSettings) -> Dict[str, str]:
    """Each function's ARN (by Chalice resource name) from Chalice's deployed-resources record."""
    return function_arns(project_dir, stage, [function.name for function in settings.functions])


def attach_all(lambda_: Any, ec2: Any, efs: Any, iam: Any, settings: StageSettings,
               arns: Dict[str, str]) -> List[str]:
    """Attaches the access point to the functions in `arns` (Chalice name -> ARN) that mount
    EFS; returns the names an update was sent to. All are checked first, so a problem with one
    changes none."""
    targets = [Target(f, arns[f.name]) for f in settings.efs_functions if f.name in arns]
    pending = [t for t in targets if _check(lambda_, ec2, efs, iam, settings, t)]
    for target in pending:
        try:
            lambda_.update_function_configuration(FunctionName=target.arn,
                                                  FileSystemConfigs=settings.file_system_configs)
        except ClientError as error:
            raise DeployError(f"Lambda refused to attach {settings.access_point_arn} at "
                              f"{settings.mount_path} to {target.label}: "
                              f"{error.response['Error']['Message']}") from None
    for target in pending:  # Lambda applies the updates in parallel; wait for each
        wait_updated(lambda_, target.arn, target.label)
        verify(lambda_, target.arn, settings, target.label)
        log.info("%s: attached %s at %s", target.label, settings.access_point_arn,
                 settings.mount_path)
    return [t.function.name for t in pending]


def attach(lambda_: Any, ec2: Any, efs: Any, iam: Any, settings: StageSettings,
           function_arn: str, function: Optional[FunctionSettings] = None) -> bool:
    """Attaches the access point to one function (the API's settings unless given); returns
    whether an update was sent."""
    function = function or settings.api
    return bool(attach_all(lambda_, ec2, efs, iam, settings, {function.name: function_arn}))


def _check(lambda_: Any, ec2: Any, efs: Any, iam: Any, settings: StageSettings,
           target: Target) -> bool:
    """Checks a function can mount; returns whether it still needs the attachment."""
    wait_updated(lambda_, target.arn, target.function.name)  # Chalice's own update may run
    config = lambda_.get_function_configuration(FunctionName=target.arn)
    target.label = f"{target.function.name} ({config['FunctionName']})"
    vpc = config.get("VpcConfig") or {}
    if not vpc.get("SubnetIds"):
        raise DeployError(
            f"function {target.label} is not in a VPC, and Lambda mounts EFS only in one: set "
            "subnet_ids and security_group_ids for this stage in .chalice/config.json and deploy "
            "again")
    # The function's actual network, not just the config: it is what Lambda will mount from.
    check_network(ec2, efs, settings.stage, vpc["SubnetIds"], vpc["SecurityGroupIds"],
                  settings.access_point_id)
    # The function's own role (Chalice makes one per function when the policy is a file).
    _check_role(iam, config["Role"].rsplit("/", 1)[-1], settings, target)
    if config.get("FileSystemConfigs") == settings.file_system_configs:
        log.info("%s: EFS access point already attached at %s: nothing to change", target.label,
                 settings.mount_path)
        return False
    return True


def verify(lambda_: Any, function_arn: str, settings: StageSettings,
           label: str = "") -> Dict[str, Any]:
    config = lambda_.get_function_configuration(FunctionName=function_arn)
    label = label or config["FunctionName"]
    got = config.get("FileSystemConfigs")
    if got != settings.file_system_configs:
        raise DeployError(f"after the update, {label} reports FileSystemConfigs "
                          f"{got!r}, expected {settings.file_system_configs!r}")
    if config.get("LastUpdateStatus") not in (None, "Successful"):
        raise DeployError(f"the update of {label} ended {config['LastUpdateStatus']}: "
                          f"{config.get('LastUpdateStatusReason', 'no reason given')}")
    return config


def wait_updated(lambda_: Any, function_arn: str, label: str = "") -> None:
    try:
        lambda_.get_waiter("function_updated_v2").wait(
            FunctionName=function_arn, WaiterConfig={"Delay": 2, "MaxAttempts": 150})
    except WaiterError as error:  # its message carries Lambda's last status and reason
        raise DeployError(f"the function {label or function_arn} did not finish updating: "
                          f"{error}") from None


def _check_role(iam: Any, role_name: str, settings: StageSettings, target: Target) -> None:
    documents = []
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):  # IAM returns it URL-encoded when not parsed by boto3
            document = json.loads(unquote(document))
        documents.append(document)
    needed = [CLIENT_MOUNT] + ([CLIENT_WRITE] if target.function.writes_efs else [])
    missing = [a for a in needed
               if not any(allows_mount(d, settings.access_point_arn, a) for d in documents)]
    how = (f"Deploy with this command (it writes .chalice/{target.function.policy_file.name}) "
           "rather than plain `chalice deploy`.")
    if missing:
        raise DeployError(
            f"missing NFS permission: role {role_name} of {target.label} does not allow "
            f"{' and '.join(missing)} through {settings.access_point_arn}; Lambda would fail to "
            + ("mount." if CLIENT_MOUNT in missing else "write the installs.") + " " + how)
    if target.function.writes_efs:
        probe = settings.upload_objects_arn.replace("*", "runtime/probe.tar.gz")
        if not any(allows_get_object(d, probe) for d in documents):
            raise DeployError(
                f"missing S3 permission: role {role_name} of {target.label} does not allow "
                f"s3:GetObject on s3://{settings.upload_bucket}/{UPLOAD_PREFIX}*; the loader "
                f"could not read the uploads. {how}")
