"""Mistakes a user will make, each caught with a message that names what to fix: by the real
deploy command before anything is deployed, or by the EFS hook against a deployed function."""
import io
import json
import zipfile

import pytest

from deploy.efs_hook import attach, attach_all, deployed_functions
from deploy.errors import DeployError
from deploy.policy import policy_document
from deploy.settings import load_stage
from tests.support.deploy_command import run_deploy
from tests.support.local_aws import build_network, local_aws
from tests.support.project import copy_project, set_stage, user_values

pytestmark = pytest.mark.aws_emulator


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
            len(aws.client("apigateway").get_rest_apis()["items"]),
            sorted(b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]),
            len(aws.client("events").list_rules()["Rules"]))


def refused(project, aws, *expected: str, region: str = "us-east-1") -> str:
    before = account(aws)
    done = run_deploy(project, aws, region=region)
    assert done.returncode == 2, done.stdout + done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr
    # refused before anything was deployed: no function, role, API or bucket was created
    assert account(aws) == before
    assert not (project / ".chalice" / "deployed").exists()
    return done.stderr


def test_the_committed_placeholders_are_refused_naming_each_key(project, aws):
    refused(project, aws, "stages.dev.subnet_ids", "stages.dev.security_group_ids",
            "stages.dev.efs_access_point_arn", "stages.dev.efs_upload_bucket")


def test_subnets_without_security_groups_are_refused(project, aws, network):
    set_stage(project, "dev", **{**user_values(network), "security_group_ids": []})
    refused(project, aws, "stages.dev.security_group_ids", "always go together")


def test_a_mount_path_outside_mnt_is_refused(project, aws, network):
    set_stage(project, "dev", **user_values(network))
    set_stage(project, "dev", environment_variables={
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


def test_an_upload_bucket_that_does_not_exist_is_refused(project, aws, network):
    set_stage(project, "dev", **{**user_values(network),
                                 "efs_upload_bucket": "no-such-upload-bucket"})
    refused(project, aws, "stages.dev.efs_upload_bucket", "no-such-upload-bucket",
            "does not exist", "us-east-1")


def test_an_upload_bucket_in_another_region_is_refused(project, aws, network):
    west = build_network(aws, region="us-west-2", name="westbucket")
    set_stage(project, "dev", **{**user_values(network),
                                 "efs_upload_bucket": west.upload_bucket})
    refused(project, aws, "stages.dev.efs_upload_bucket", "us-west-2", "gateway endpoint")


def test_subnets_without_a_route_to_s3_are_refused(project, aws):
    closed = build_network(aws, cidr="10.3.0.0/16", name="nos3", s3_endpoint=False)
    set_stage(project, "dev", **user_values(closed))
    refused(project, aws, "stages.dev.subnet_ids", "no route to S3",
            "com.amazonaws.us-east-1.s3", closed.vpc_id)


def test_a_jobs_bucket_in_another_region_is_refused(project, aws, network):
    aws.client("s3", "us-west-2").create_bucket(
        Bucket="jobs-in-oregon", CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    set_stage(project, "dev", **user_values(network))
    set_stage(project, "dev", environment_variables={"XRAY_JOBS_BUCKET": "jobs-in-oregon"})
    refused(project, aws, "stages.dev.environment_variables.XRAY_JOBS_BUCKET",
            "jobs-in-oregon is in us-west-2", "EventBridge only in us-west-2")


def test_an_unverified_ses_sender_is_refused_with_the_commands_that_verify_it(project, aws,
                                                                              network):
    set_stage(project, "dev", **user_values(network))
    set_stage(project, "dev", environment_variables={"XRAY_SES_SENDER": "xray@example.org"})
    stderr = refused(project, aws, "stages.dev.environment_variables.XRAY_SES_SENDER",
                     "not a verified SES identity in us-east-1",
                     "aws ses verify-email-identity --region us-east-1",
                     "aws ses verify-domain-identity --region us-east-1 --domain example.org")
    assert "xray@example.org" not in stderr  # an address is never printed in full


def test_a_webhook_secret_that_does_not_exist_is_refused_with_the_command_to_create_it(
        project, aws, network):
    set_stage(project, "dev", **user_values(network))
    set_stage(project, "dev", environment_variables={
        "XRAY_WEBHOOK_SECRET_NAME": "chest-xray/dev/webhook"})
    refused(project, aws, "stages.dev.environment_variables.XRAY_WEBHOOK_SECRET_NAME",
            "no secret chest-xray/dev/webhook in us-east-1",
            "aws secretsmanager create-secret --region us-east-1 --name "
            "chest-xray/dev/webhook --secret-string \"whsec_$(openssl rand -base64 32)\"")


# --- the hook against functions deployed some other way -----------------------------------

def tiny_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "def app(event, context):\n    return {}\n")
    return buffer.getvalue()


def make_function(aws, name: str, settings, vpc: dict, mount_policy: bool = True,
                  function=None, drop: tuple = ()) -> str:
    """A function with the role our policy file gives `function` (the API's by default), less
    the statements granting any action in `drop` (all EFS ones without mount_policy)."""
    iam = aws.client("iam")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=(
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":'
        '{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}'))["Role"]["Arn"]
    document = policy_document(settings, function or settings.api)
    drop = drop + (() if mount_policy else ("elasticfilesystem",))
    document["Statement"] = [s for s in document["Statement"]
                             if not any(d in str(s["Action"]) for d in drop)]
    iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(document))
    return aws.client("lambda").create_function(
        FunctionName=name, Runtime="python3.13", Role=role, Handler="app.app",
        Code={"ZipFile": tiny_zip()}, VpcConfig=vpc)["FunctionArn"]


def hook(aws, settings, function_arn: str) -> bool:
    return attach(aws.client("lambda"), aws.client("ec2"), aws.client("efs"), aws.client("iam"),
                  settings, function_arn)


def hook_both(aws, settings, api_arn: str, loader_arn: str) -> list:
    return attach_all(aws.client("lambda"), aws.client("ec2"), aws.client("efs"),
                      aws.client("iam"), settings,
                      {"api_handler": api_arn, "efs_loader": loader_arn})


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


def in_vpc(network) -> dict:
    return {"SubnetIds": network.subnet_ids, "SecurityGroupIds": [network.lambda_sg]}


def test_the_hook_refuses_a_loader_role_that_may_not_write_naming_the_loader(aws, settings,
                                                                           network):
    api = make_function(aws, "ok-api", settings, vpc=in_vpc(network))
    # the API's read-only policy given to the loader: what plain chalice deploy would do
    loader = make_function(aws, "read-only-loader", settings, vpc=in_vpc(network),
                           function=settings.api)
    sent = len(aws.update_requests)
    with pytest.raises(DeployError) as caught:
        hook_both(aws, settings, api, loader)
    message = str(caught.value)
    assert "efs_loader (read-only-loader)" in message and "ClientWrite" in message
    assert "ClientMount and" not in message  # it may mount, only not write
    assert "policy-dev-loader.json" in message
    assert len(aws.update_requests) == sent  # the API was checked fine, but nothing was sent


def test_the_hook_refuses_a_loader_role_that_may_not_read_the_uploads(aws, settings, network):
    api = make_function(aws, "ok-api-2", settings, vpc=in_vpc(network))
    loader = make_function(aws, "no-s3-loader", settings, vpc=in_vpc(network),
                           function=settings.loader, drop=("s3:",))
    with pytest.raises(DeployError, match=r"missing S3 permission: role no-s3-loader of "
                       r"efs_loader \(no-s3-loader\).*s3:GetObject on s3://xray-efs-upload-"):
        hook_both(aws, settings, api, loader)


def test_the_hook_attaches_both_once_and_then_sends_nothing(aws, settings, network):
    api = make_function(aws, "both-api", settings, vpc=in_vpc(network))
    loader = make_function(aws, "both-loader", settings, vpc=in_vpc(network),
                           function=settings.loader)
    sent = len(aws.update_requests)
    assert hook_both(aws, settings, api, loader) == ["api_handler", "efs_loader"]
    assert [r["function"] for r in aws.update_requests[sent:]] == [api, loader]
    assert hook_both(aws, settings, api, loader) == []
    assert len(aws.update_requests) == sent + 2


def test_a_deployed_record_without_the_loader_is_refused_naming_it(project, settings):
    record = project / ".chalice" / "deployed" / "dev.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"resources": [
        {"name": "api_handler", "resource_type": "lambda_function",
         "lambda_arn": "arn:aws:lambda:us-east-1:123456789012:function:chest-xray-dev"}]}))
    with pytest.raises(DeployError, match="lists no lambda_function 'efs_loader'"):
        deployed_functions(project, "dev", settings)
