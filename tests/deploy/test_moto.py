"""The one deploy command, run for real (`python -m deploy --stage dev`: chalice deploy + the EFS
hook) against a local moto server holding the VPC, EFS, upload bucket and S3 gateway endpoint a
user creates first. Two functions: the API and the EFS loader, each with its own size and role,
both mounting the access point. Deployed twice: the second run must keep VPC and EFS attached
and change nothing else. moto's gaps are bridged by tests/support/moto_shim.py, which
also records the exact requests the hook sends."""
import json

import pytest

from tests.support.deploy_command import run_deploy
from tests.support.local_aws import build_network, local_aws
from tests.support.project import copy_project, set_stage, user_values

pytestmark = pytest.mark.aws_emulator

FUNCTION = "chest-xray-dev"
LOADER = "chest-xray-dev-efs_loader"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:"


def function_state(aws, name: str) -> dict:
    lambda_, iam = aws.client("lambda"), aws.client("iam")
    config = lambda_.get_function_configuration(FunctionName=name)
    role = config["Role"].split("/")[-1]
    return {
        "config": config,
        "concurrency": lambda_.get_function_concurrency(
            FunctionName=name).get("ReservedConcurrentExecutions"),
        "role": role,
        "policies": [iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
                     for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]],
    }


def snapshot(aws) -> dict:
    lambda_, apigw = aws.client("lambda"), aws.client("apigateway")
    apis = apigw.get_rest_apis()["items"]
    api = apis[0] if apis else {}
    api_function = function_state(aws, FUNCTION)
    return {
        "functions": sorted(f["FunctionName"] for f in lambda_.list_functions()["Functions"]),
        "api": api_function,
        "config": api_function["config"],
        "loader": function_state(aws, LOADER),
        "apis": apis,
        "stages": apigw.get_stages(restApiId=api["id"])["item"] if api else [],
        "resources": apigw.get_resources(restApiId=api["id"], embed=["methods"])["items"]
        if api else [],
        "updates": [dict(u) for u in aws.update_requests],
    }


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """Deploys twice; yields the network and what the account held after each run."""
    with local_aws() as aws:
        network = build_network(aws)
        project = copy_project(tmp_path_factory.mktemp("user") / "chest-xray")
        set_stage(project, "dev", **user_values(network))
        runs = []
        for _ in range(2):
            done = run_deploy(project, aws)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
            runs.append({"output": done.stdout + done.stderr, "state": snapshot(aws)})
        yield network, runs[0], runs[1]


def hook_requests(state: dict) -> list:
    return [u for u in state["updates"] if "FileSystemConfigs" in u["body"]]


def test_both_functions_run_in_the_users_vpc_each_with_its_own_size(deployed):
    network, first, _ = deployed
    assert first["state"]["functions"] == [FUNCTION, LOADER]
    api, loader = first["state"]["api"], first["state"]["loader"]
    for function in (api, loader):
        config = function["config"]
        assert sorted(config["VpcConfig"]["SubnetIds"]) == sorted(network.subnet_ids)
        assert config["VpcConfig"]["SecurityGroupIds"] == [network.lambda_sg]
        assert config["Runtime"] == "python3.13"
        assert config["Environment"]["Variables"] == {
            "XRAY_EFS_ROOT": "/mnt/xray", "XRAY_PACKAGES_PATH": "/mnt/xray/packages",
            "XRAY_MODEL_PATH": "/mnt/xray/models/current",
            "XRAY_CORS_ORIGINS": "http://localhost:3000,http://127.0.0.1:3000"}
    # the API keeps the stage's values; the loader gets its override and only it
    assert (api["config"]["MemorySize"], api["config"]["Timeout"]) == (3008, 28)
    assert api["concurrency"] == 2
    assert api["config"]["Handler"] == "app.app"
    assert (loader["config"]["MemorySize"], loader["config"]["Timeout"]) == (2048, 900)
    assert loader["concurrency"] == 1
    assert loader["config"]["Handler"] == "app.efs_loader"


def test_the_hook_sent_exactly_the_access_point_at_mnt_to_both_and_nothing_else(deployed):
    network, first, _ = deployed
    wanted = [{"Arn": network.access_point_arn, "LocalMountPath": "/mnt/xray"}]
    requests = hook_requests(first["state"])
    assert sorted(requests, key=lambda r: r["function"]) == [
        {"function": ARN + FUNCTION, "body": {"FileSystemConfigs": wanted}},
        {"function": ARN + LOADER, "body": {"FileSystemConfigs": wanted}}]
    for function in ("api", "loader"):  # read back (shim-stored)
        assert first["state"][function]["config"]["FileSystemConfigs"] == wanted
    assert first["output"].count("attached " + network.access_point_arn) == 2


def efs_statements(function: dict) -> list:
    statements = [s for doc in function["policies"] for s in doc["Statement"]]
    return [s for s in statements if "elasticfilesystem" in json.dumps(s["Action"])]


def test_the_api_role_may_only_mount_read_only_through_the_access_point(deployed):
    network, first, _ = deployed
    api = first["state"]["api"]
    assert efs_statements(api) == [{
        "Sid": "EfsReadOnlyMountThroughAccessPoint", "Effect": "Allow",
        "Action": "elasticfilesystem:ClientMount",
        "Resource": "arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/*",
        "Condition": {"StringEquals": {
            "elasticfilesystem:AccessPointArn": network.access_point_arn}}}]
    assert "s3:" not in json.dumps(api["policies"])


def test_the_loader_has_its_own_role_writing_through_the_access_point_reading_uploads(deployed):
    network, first, _ = deployed
    api, loader = first["state"]["api"], first["state"]["loader"]
    assert loader["role"] == "chest-xray-dev-efs_loader" != api["role"]
    assert efs_statements(loader) == [{
        "Sid": "EfsReadWriteMountThroughAccessPoint", "Effect": "Allow",
        "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
        "Resource": "arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/*",
        "Condition": {"StringEquals": {
            "elasticfilesystem:AccessPointArn": network.access_point_arn}}}]
    s3 = [s for doc in loader["policies"] for s in doc["Statement"] if "s3:" in str(s["Action"])]
    assert s3 == [{"Sid": "ReadUploadedArchives", "Effect": "Allow", "Action": "s3:GetObject",
                   "Resource": f"arn:aws:s3:::{network.upload_bucket}/efs-upload/*"}]
    assert f"the loader reaches s3://{network.upload_bucket} through the S3 gateway endpoint" \
        in first["output"]


def test_the_rest_api_is_regional_with_binary_types_and_the_api_stage(deployed):
    _, first, _ = deployed
    (api,) = first["state"]["apis"]
    assert api["endpointConfiguration"]["types"] == ["REGIONAL"]
    assert {"application/dicom", "image/png", "image/jpeg",
            "application/octet-stream"} <= set(api["binaryMediaTypes"])
    assert "*/*" not in api["binaryMediaTypes"]  # would base64 every JSON answer
    assert [s["stageName"] for s in first["state"]["stages"]] == ["api"]
    xray = next(r for r in first["state"]["resources"] if r["path"] == "/xray")
    integration = xray["resourceMethods"]["POST"]["methodIntegration"]
    assert integration["type"].upper() == "AWS_PROXY"  # moto keeps Swagger's "aws_proxy"
    assert f"function:{FUNCTION}/invocations" in integration["uri"]


def test_a_second_deploy_keeps_vpc_and_efs_and_changes_nothing_else(deployed):
    _, first, second = deployed
    before, after = first["state"], second["state"]
    for function in ("api", "loader"):
        was, now = before[function], after[function]
        assert now["config"]["FileSystemConfigs"] == was["config"]["FileSystemConfigs"]
        assert now["config"]["VpcConfig"] == was["config"]["VpcConfig"]
        for key in ("MemorySize", "Timeout", "Environment", "Role", "Handler", "Runtime"):
            assert now["config"][key] == was["config"][key], (function, key)
        assert now["concurrency"] == was["concurrency"] and now["policies"] == was["policies"]
    assert hook_requests(after) == hook_requests(before)  # the hook sent nothing new
    assert second["output"].count("already attached") == 2
    # Chalice's own update resent the VPC and never touched FileSystemConfigs (FIELD_NOTES)
    chalice_updates = after["updates"][len(before["updates"]):]
    assert {u["function"] for u in chalice_updates} == {FUNCTION, LOADER}  # by name
    assert all("FileSystemConfigs" not in u["body"] for u in chalice_updates)
    assert all(u["body"].get("VpcConfig", {}).get("SubnetIds") for u in chalice_updates)
    assert after["functions"] == before["functions"] == [FUNCTION, LOADER]
    assert len(after["apis"]) == 1
    assert after["apis"][0]["id"] == before["apis"][0]["id"]
