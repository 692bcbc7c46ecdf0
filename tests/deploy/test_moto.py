"""The one deploy command, run for real (`python -m deploy --stage dev`: chalice deploy + the EFS
hook) against a local moto server holding the VPC, EFS, upload bucket and S3 gateway endpoint a
user creates first. Two functions: the API and the EFS loader, each with its own size and role,
both mounting the access point. Deployed twice: the second run must keep VPC and EFS attached
and change nothing else. Then the same stage is switched to iam+api_key, as a user would: the
deploy makes the API key, the usage plan and the association once, and a changed usage plan is
updated in place. moto's gaps are bridged by tests/support/moto_shim.py, which also records
the exact requests the hook sends and API Gateway's write operations."""
import json

import pytest

from tests.support.deploy_command import run_deploy
from tests.support.local_aws import build_network, local_aws
from tests.support.project import REPO, copy_project, set_stage, user_values

pytestmark = pytest.mark.aws_emulator

FUNCTION = "chest-xray-dev"
LOADER = "chest-xray-dev-efs_loader"
ARN = "arn:aws:lambda:us-east-1:123456789012:function:"
DEV_ENVIRONMENT = json.loads((REPO / ".chalice" / "config.json").read_text())[
    "stages"]["dev"]["environment_variables"]


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
        "apigateway_calls": list(aws.apigateway_calls),
        "gateway_responses": {r["responseType"]: r for r in apigw.get_gateway_responses(
            restApiId=api["id"])["items"]} if api else {},
    }


def deploy_and_snapshot(project, aws) -> dict:
    calls_before = len(aws.apigateway_calls)
    done = run_deploy(project, aws)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    state = snapshot(aws)
    return {"output": done.stdout + done.stderr, "state": state,
            "calls": state["apigateway_calls"][calls_before:]}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The moto account, the user's network and project, and the stage deployed twice as
    committed (dev: XRAY_AUTH=none)."""
    with local_aws() as aws:
        network = build_network(aws)
        project = copy_project(tmp_path_factory.mktemp("user") / "chest-xray")
        set_stage(project, "dev", **user_values(network))
        runs = [deploy_and_snapshot(project, aws) for _ in range(2)]
        yield aws, network, project, runs


@pytest.fixture(scope="module")
def deployed(stack):
    """The network and what the account held after each of the two runs."""
    _, network, _, runs = stack
    return network, runs[0], runs[1]


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
        # exactly the committed stage's environment (the EFS paths, auth, stage, origins...)
        assert config["Environment"]["Variables"] == DEV_ENVIRONMENT
        assert DEV_ENVIRONMENT["XRAY_MODEL_PATH"] == "/mnt/xray/models/current"
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


# --- who may call it: Gateway Responses, then the stage switched to iam+api_key ----------------

def test_the_deploy_warns_that_a_stage_with_auth_none_is_open(deployed):
    _, first, second = deployed
    for run in (first, second):
        assert "WARNING: stage dev has XRAY_AUTH=none" in run["output"]
        assert "open to anyone who finds the URL" in run["output"]
    assert "API key" not in first["output"]  # no key for a stage without api_key
    assert "create_api_key" not in first["calls"] + second["calls"]


def test_gateway_responses_carry_cors_and_our_error_shape_and_are_put_once(deployed):
    from deploy.gateway_responses import CODES
    _, first, second = deployed
    responses = first["state"]["gateway_responses"]
    assert set(responses) == set(CODES)
    for response_type, response in responses.items():
        # dev allows two origins; API Gateway cannot pick one from a list (gateway_responses.py)
        assert response["responseParameters"] == {
            "gatewayresponse.header.Access-Control-Allow-Origin": "'*'"}, response_type
        template = response["responseTemplates"]["application/json"]
        assert template.startswith('{"Code": "') and '"Message": $context.error.messageString' \
            in template
    assert '"Code": "Unauthorized"' in responses["UNAUTHORIZED"]["responseTemplates"][
        "application/json"]
    # first run: every response put, and one redeploy of the stage beside Chalice's own
    assert sorted(c for c in first["calls"] if c == "put_gateway_response") == [
        "put_gateway_response"] * len(CODES)
    assert first["calls"].count("create_deployment") == 2
    # second run: only Chalice's own deployment; the responses were already in place
    assert second["calls"] == ["create_deployment"]
    assert second["state"]["gateway_responses"] == responses
    assert f"all {len(CODES)} already in place" in second["output"]


PLAN_CHANGE = {"throttle_rate_limit": 2, "throttle_burst_limit": 4, "quota_limit": 100,
               "quota_period": "WEEK"}


@pytest.fixture(scope="module")
def keyed(stack):
    """The stage switched to iam+api_key and deployed twice, then once more with a changed
    usage_plan."""
    aws, _, project, _ = stack
    set_stage(project, "dev", environment_variables={"XRAY_AUTH": "iam+api_key"})
    runs = [deploy_and_snapshot(project, aws) for _ in range(2)]
    set_stage(project, "dev", usage_plan=PLAN_CHANGE)
    runs.append(deploy_and_snapshot(project, aws))
    return aws, runs


def key_state(aws) -> dict:
    apigw = aws.client("apigateway")
    plans = apigw.get_usage_plans()["items"]
    return {"keys": apigw.get_api_keys(includeValues=False)["items"], "plans": plans,
            "members": {p["id"]: [k["id"] for k in apigw.get_usage_plan_keys(
                usagePlanId=p["id"])["items"]] for p in plans}}


def method(state: dict, path: str, verb: str) -> dict:
    resource = next(r for r in state["resources"] if r["path"] == path)
    return resource["resourceMethods"][verb]


def test_iam_and_api_key_guard_every_route_but_the_page(keyed):
    _, (first, _, _) = keyed
    for path, verb in (("/xray", "POST"), ("/preview", "POST"), ("/health", "GET"),
                       ("/model", "GET")):
        assert method(first["state"], path, verb)["authorizationType"] == "AWS_IAM", path
        assert method(first["state"], path, verb)["apiKeyRequired"] is True, path
    page = method(first["state"], "/", "GET")
    # moto leaves an unset authorizationType out; API Gateway reports NONE
    assert page.get("authorizationType", "NONE") == "NONE" and not page.get("apiKeyRequired")


def test_the_key_plan_and_association_are_made_once_and_the_value_never_logged(keyed):
    aws, (first, second, _) = keyed
    assert sorted(c for c in first["calls"] if c != "create_deployment") == [
        "create_api_key", "create_usage_plan", "create_usage_plan_key"]
    assert second["calls"] == ["create_deployment"]  # Chalice's own; nothing of ours
    state = key_state(aws)
    (key,) = state["keys"]
    assert key["name"] == "chest-xray-dev" and key["enabled"] is True
    (plan,) = state["plans"]
    api_id = first["state"]["apis"][0]["id"]
    assert plan["name"] == "chest-xray-dev"
    assert plan["apiStages"] == [{"apiId": api_id, "stage": "api"}]
    assert state["members"] == {plan["id"]: [key["id"]]}
    command = (f"aws apigateway get-api-key --api-key {key['id']} --include-value "
               "--query value --output text")
    value = aws.client("apigateway").get_api_key(apiKey=key["id"], includeValue=True)["value"]
    for run in (first, second):
        assert command in run["output"] and value not in run["output"]
    assert "nothing to change" in second["output"]


def test_a_changed_usage_plan_is_updated_in_place(keyed):
    aws, (first, second, third) = keyed
    from deploy.settings import UsagePlan
    assert third["calls"] == ["create_deployment", "update_usage_plan"]
    (plan,) = key_state(aws)["plans"]
    assert plan["throttle"] == {"rateLimit": 2, "burstLimit": 4}
    assert plan["quota"]["limit"] == 100 and plan["quota"]["period"] == "WEEK"
    default = UsagePlan()
    assert "%g rps, burst %d" % (default.throttle_rate_limit, default.throttle_burst_limit) \
        in first["output"]
