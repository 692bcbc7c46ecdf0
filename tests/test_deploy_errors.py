"""Mistakes a user will make, each caught with a message that names what to fix: by the real
deploy command before anything is deployed, or by the EFS hook against a deployed function."""
import io
import json
import zipfile

import pytest

from deploy.efs_hook import attach
from deploy.errors import DeployError
from deploy.policy import policy_document
from deploy.settings import load_stage
from tests.deploy_support.commands import run_deploy
from tests.deploy_support.local_aws import build_network, local_aws
from tests.deploy_support.project import copy_project, set_stage, user_values


@pytest.fixture(scope="module")
def aws():
    with local_aws() as server:
        yield server


@pytest.fixture(scope="module")
def network(aws):
    return build_network(aws)


@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path / "chest-xray")


def account(aws) -> tuple:
    return (sorted(f["FunctionName"] for f in aws.client("lambda").list_functions()["Functions"]),
            sorted(r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]),
            len(aws.client("apigateway").get_rest_apis()["items"]))


def refused(project, aws, *expected: str, region: str = "us-east-1") -> str:
    before = account(aws)
    done = run_deploy(project, aws, region=region)
    assert done.returncode == 2, done.stdout + done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr
    # refused before anything was deployed: no function, role or API was created
    assert account(aws) == before
    assert not (project / ".chalice" / "deployed").exists()
    return done.stderr


def test_the_committed_placeholders_are_refused_naming_each_key(project, aws):
    refused(project, aws, "stages.dev.subnet_ids", "stages.dev.security_group_ids",
            "stages.dev.efs_access_point_arn")


def test_subnets_without_security_groups_are_refused(project, aws, network):
    set_stage(project, "dev", **{**user_values(network), "security_group_ids": []})
    refused(project, aws, "stages.dev.security_group_ids", "always go together")


def test_a_mount_path_outside_mnt_is_refused(project, aws, network):
    set_stage(project, "dev", **user_values(network), environment_variables={
        "XRAY_EFS_ROOT": "/efs/xray", "XRAY_PACKAGES_PATH": "/efs/xray/packages",
        "XRAY_MODEL_PATH": "/efs/xray/models/current"})
    refused(project, aws, "environment_variables.XRAY_EFS_ROOT", "/mnt/")


def test_a_timeout_past_api_gateways_limit_is_refused(project, aws, network):
    set_stage(project, "dev", **user_values(network), lambda_timeout=60)
    refused(project, aws, "stages.dev.lambda_timeout", "29 s")


def test_a_subnet_that_does_not_exist_is_refused(project, aws, network):
    set_stage(project, "dev", **{**user_values(network),
                                 "subnet_ids": ["subnet-0123456789abcdef0"]})
    refused(project, aws, "stages.dev.subnet_ids", "subnet-0123456789abcdef0")


def test_an_access_point_in_another_vpc_is_refused(project, aws, network):
    elsewhere = build_network(aws, cidr="10.1.0.0/16", name="other")
    set_stage(project, "dev", **{**user_values(network),
                                 "efs_access_point_arn": elsewhere.access_point_arn})
    refused(project, aws, "stages.dev.efs_access_point_arn", elsewhere.vpc_id, network.vpc_id)


def test_an_access_point_in_another_region_is_refused(project, aws, network):
    west = build_network(aws, region="us-west-2", name="west")
    set_stage(project, "dev", **{**user_values(network),
                                 "efs_access_point_arn": west.access_point_arn})
    refused(project, aws, "stages.dev.efs_access_point_arn", "us-west-2", "us-east-1")


def test_mount_targets_closed_to_nfs_are_refused(project, aws):
    closed = build_network(aws, cidr="10.2.0.0/16", nfs_rule=False, name="closed")
    set_stage(project, "dev", **user_values(closed))
    refused(project, aws, "no NFS permission", "TCP 2049", closed.efs_sg, closed.lambda_sg)


# --- the hook against functions deployed some other way -----------------------------------

def tiny_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def app(event, context):\n    return {}\n")
    return buffer.getvalue()


def make_function(aws, name: str, settings, vpc: dict, mount_policy: bool) -> str:
    iam = aws.client("iam")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=(
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":'
        '{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}'))["Role"]["Arn"]
    document = policy_document(settings)
    if not mount_policy:
        document["Statement"] = [s for s in document["Statement"]
                                 if "elasticfilesystem" not in str(s["Action"])]
    iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(document))
    return aws.client("lambda").create_function(
        FunctionName=name, Runtime="python3.11", Role=role, Handler="app.app",
        Code={"ZipFile": tiny_zip()}, VpcConfig=vpc)["FunctionArn"]


def hook(aws, settings, function_arn: str) -> bool:
    return attach(aws.client("lambda"), aws.client("ec2"), aws.client("efs"), aws.client("iam"),
                  settings, function_arn)


@pytest.fixture
def settings(project, network):
    set_stage(project, "dev", **user_values(network))
    return load_stage(project, "dev")


def test_the_hook_refuses_a_function_outside_any_vpc(aws, settings):
    arn = make_function(aws, "no-vpc", settings, vpc={}, mount_policy=True)
    sent = len(aws.update_requests)
    with pytest.raises(DeployError, match="not in a VPC"):
        hook(aws, settings, arn)
    assert len(aws.update_requests) == sent


def test_the_hook_refuses_a_role_without_the_mount_permission(aws, settings, network):
    vpc = {"SubnetIds": network.subnet_ids, "SecurityGroupIds": [network.lambda_sg]}
    arn = make_function(aws, "no-mount", settings, vpc=vpc, mount_policy=False)
    with pytest.raises(DeployError, match="missing NFS permission.*ClientMount"):
        hook(aws, settings, arn)


def test_the_hook_attaches_once_and_then_sends_nothing(aws, settings, network):
    vpc = {"SubnetIds": network.subnet_ids, "SecurityGroupIds": [network.lambda_sg]}
    arn = make_function(aws, "twice", settings, vpc=vpc, mount_policy=True)
    assert hook(aws, settings, arn) is True
    sent = len(aws.update_requests)
    assert hook(aws, settings, arn) is False
    assert len(aws.update_requests) == sent
