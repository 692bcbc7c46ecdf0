"""The one deploy command, run for real (`python -m deploy --stage dev`: chalice deploy + the EFS
hook) against a local moto server holding the VPC and EFS a user creates first. Deployed twice:
the second run must keep VPC and EFS attached and change nothing else. moto's gaps are bridged
by tests/deploy_support/moto_shim.py, which also records the exact requests the hook sends."""
import json

import pytest

from tests.deploy_support.commands import run_deploy
from tests.deploy_support.local_aws import build_network, local_aws
from tests.deploy_support.project import copy_project, set_stage, user_values

FUNCTION = "chest-xray-dev"


def snapshot(aws) -> dict:
    lambda_, apigw, iam = aws.client("lambda"), aws.client("apigateway"), aws.client("iam")
    apis = apigw.get_rest_apis()["items"]
    api = apis[0] if apis else {}
    role = lambda_.get_function_configuration(FunctionName=FUNCTION)["Role"].split("/")[-1]
    return {
        "functions": [f["FunctionName"] for f in lambda_.list_functions()["Functions"]],
        "config": lambda_.get_function_configuration(FunctionName=FUNCTION),
        "concurrency": lambda_.get_function_concurrency(FunctionName=FUNCTION),
        "apis": apis,
        "stages": apigw.get_stages(restApiId=api["id"])["item"] if api else [],
        "resources": apigw.get_resources(restApiId=api["id"], embed=["methods"])["items"]
        if api else [],
        "policies": [iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                     for name in iam.list_role_policies(RoleName=role)["PolicyNames"]],
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


def test_the_function_runs_in_the_users_vpc_with_the_stages_size_and_environment(deployed):
    network, first, _ = deployed
    config = first["state"]["config"]
    assert sorted(config["VpcConfig"]["SubnetIds"]) == sorted(network.subnet_ids)
    assert config["VpcConfig"]["SecurityGroupIds"] == [network.lambda_sg]
    assert (config["MemorySize"], config["Timeout"]) == (3008, 28)
    assert config["Runtime"] == "python3.11" and config["Handler"] == "app.app"
    assert config["Environment"]["Variables"] == {
        "XRAY_EFS_ROOT": "/mnt/xray", "XRAY_PACKAGES_PATH": "/mnt/xray/packages",
        "XRAY_MODEL_PATH": "/mnt/xray/models/current"}
    assert first["state"]["concurrency"]["ReservedConcurrentExecutions"] == 2


def test_the_hook_sent_exactly_the_access_point_at_mnt_and_nothing_else(deployed):
    network, first, _ = deployed
    wanted = [{"Arn": network.access_point_arn, "LocalMountPath": "/mnt/xray"}]
    requests = hook_requests(first["state"])
    assert requests == [{"function": f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}",
                         "body": {"FileSystemConfigs": wanted}}]
    assert first["state"]["config"]["FileSystemConfigs"] == wanted  # read back (shim-stored)


def test_the_role_may_mount_only_through_the_access_point(deployed):
    network, first, _ = deployed
    statements = [s for doc in first["state"]["policies"] for s in doc["Statement"]]
    efs = [s for s in statements if "elasticfilesystem" in json.dumps(s["Action"])]
    assert efs == [{
        "Sid": "EfsReadOnlyMountThroughAccessPoint", "Effect": "Allow",
        "Action": "elasticfilesystem:ClientMount",
        "Resource": "arn:aws:elasticfilesystem:us-east-1:123456789012:file-system/*",
        "Condition": {"StringEquals": {
            "elasticfilesystem:AccessPointArn": network.access_point_arn}}}]


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
    assert after["config"]["FileSystemConfigs"] == before["config"]["FileSystemConfigs"]
    assert after["config"]["VpcConfig"] == before["config"]["VpcConfig"]
    for key in ("MemorySize", "Timeout", "Environment", "Role", "Handler", "Runtime"):
        assert after["config"][key] == before["config"][key], key
    assert hook_requests(after) == hook_requests(before)  # the hook sent nothing new
    assert "already attached" in second["output"]
    # Chalice's own update resent the VPC and never touched FileSystemConfigs (FIELD_NOTES)
    chalice_updates = after["updates"][len(before["updates"]):]
    assert chalice_updates and all("FileSystemConfigs" not in u["body"] for u in chalice_updates)
    assert all(u["body"].get("VpcConfig", {}).get("SubnetIds") for u in chalice_updates)
    assert FUNCTION in after["functions"] and after["functions"] == before["functions"]
    assert len(after["apis"]) == 1
    assert after["apis"][0]["id"] == before["apis"][0]["id"]
