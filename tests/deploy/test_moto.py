"""The one deploy command, run for real (`python -m deploy --stage dev`: chalice deploy + the EFS
hook) against a local moto server holding the VPC, EFS, upload bucket and S3 gateway endpoint a
user creates first. Five functions: the API, the EFS loader and the job worker, each with its
own size and role, all mounting the access point; the job notifier and sweeper outside the VPC.
The jobs path on the same deploy: the EventBridge rules Chalice made (the patterns of
chalicelib/jobs/events.py, targeting the deployed functions) and the schedule, the jobs bucket
the deploy created and configured, and the trigger proven end to end: an upload's S3 event
reaches the worker's rule (moto cannot run Lambda code: the shim records the delivery to the
function, and an SQS target added by the test receives the same event). Deployed twice: the
second run must keep VPC and EFS attached and change nothing else. Then the same stage is
switched to iam+api_key, as a user would: the deploy makes the API key, the usage plan and the
association once, and a changed usage plan is updated in place. moto's gaps are bridged by
tests/support/moto_shim.py, which also records the exact requests the hook sends and API
Gateway's write operations."""
import json

import pytest

from tests.support.deploy_command import run_deploy
from tests.support.local_aws import build_network, local_aws
from tests.support.project import REPO, copy_project, set_stage, user_values

pytestmark = pytest.mark.aws_emulator

FUNCTION = "chest-xray-dev"
LOADER = "chest-xray-dev-efs_loader"
WORKER = "chest-xray-dev-job_worker"
NOTIFIER = "chest-xray-dev-job_notifier"
SWEEPER = "chest-xray-dev-job_sweeper"
FUNCTIONS = sorted([FUNCTION, LOADER, WORKER, NOTIFIER, SWEEPER])
IN_VPC = ("api", "loader", "worker")
ARN = "arn:aws:lambda:us-east-1:123456789012:function:"
COMMITTED_ENVIRONMENT = json.loads((REPO / ".chalice" / "config.json").read_text())[
    "stages"]["dev"]["environment_variables"]


def dev_environment(network) -> dict:
    """The committed dev stage's variables with the user's jobs bucket."""
    return {**COMMITTED_ENVIRONMENT, "XRAY_JOBS_BUCKET": network.jobs_bucket}


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
        "worker": function_state(aws, WORKER),
        "notifier": function_state(aws, NOTIFIER),
        "sweeper": function_state(aws, SWEEPER),
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


def test_the_efs_functions_run_in_the_users_vpc_each_with_its_own_size(deployed):
    network, first, _ = deployed
    assert first["state"]["functions"] == FUNCTIONS
    api, loader = first["state"]["api"], first["state"]["loader"]
    for name in IN_VPC:
        config = first["state"][name]["config"]
        assert sorted(config["VpcConfig"]["SubnetIds"]) == sorted(network.subnet_ids)
        assert config["VpcConfig"]["SecurityGroupIds"] == [network.lambda_sg]
        assert config["Runtime"] == "python3.13"
        # exactly the committed stage's environment (the EFS paths, auth, stage, origins...)
        assert config["Environment"]["Variables"] == dev_environment(network)
    assert COMMITTED_ENVIRONMENT["XRAY_MODEL_PATH"] == "/mnt/xray/models/current"
    # the API keeps the stage's values; the loader gets its override and only it
    assert (api["config"]["MemorySize"], api["config"]["Timeout"]) == (3008, 28)
    assert api["concurrency"] == 2
    assert api["config"]["Handler"] == "app.app"
    assert (loader["config"]["MemorySize"], loader["config"]["Timeout"]) == (2048, 900)
    assert loader["concurrency"] == 1
    assert loader["config"]["Handler"] == "app.efs_loader"


def test_the_hook_sent_exactly_the_access_point_at_mnt_to_the_three_and_nothing_else(deployed):
    network, first, _ = deployed
    wanted = [{"Arn": network.access_point_arn, "LocalMountPath": "/mnt/xray"}]
    requests = hook_requests(first["state"])
    assert sorted(requests, key=lambda r: r["function"]) == [
        {"function": ARN + name, "body": {"FileSystemConfigs": wanted}}
        for name in sorted([FUNCTION, LOADER, WORKER])]
    for function in IN_VPC:  # read back (shim-stored)
        assert first["state"][function]["config"]["FileSystemConfigs"] == wanted
    for function in ("notifier", "sweeper"):
        assert "FileSystemConfigs" not in first["state"][function]["config"]
    assert first["output"].count("attached " + network.access_point_arn) == 3


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
    assert network.upload_bucket not in json.dumps(api["policies"])  # S3: jobs bucket only


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
    for function in ("api", "loader", "worker", "notifier", "sweeper"):
        was, now = before[function], after[function]
        assert now["config"].get("FileSystemConfigs") == was["config"].get("FileSystemConfigs")
        assert now["config"].get("VpcConfig") == was["config"].get("VpcConfig")
        for key in ("MemorySize", "Timeout", "Environment", "Role", "Handler", "Runtime"):
            assert now["config"][key] == was["config"][key], (function, key)
        assert now["concurrency"] == was["concurrency"] and now["policies"] == was["policies"]
    assert hook_requests(after) == hook_requests(before)  # the hook sent nothing new
    assert second["output"].count("already attached") == 3
    # Chalice's own update resent the VPC and never touched FileSystemConfigs (FIELD_NOTES);
    # to the functions outside the VPC it sends empty lists, which keep them out
    chalice_updates = after["updates"][len(before["updates"]):]
    assert {u["function"] for u in chalice_updates} == set(FUNCTIONS)  # by name
    assert all("FileSystemConfigs" not in u["body"] for u in chalice_updates)
    vpcs = {u["function"]: u["body"].get("VpcConfig") for u in chalice_updates}
    for name in (FUNCTION, LOADER, WORKER):
        assert sorted(vpcs[name]["SubnetIds"]) == sorted(deployed[0].subnet_ids)
    for name in (NOTIFIER, SWEEPER):
        assert vpcs[name] == {"SubnetIds": [], "SecurityGroupIds": []}
    assert after["functions"] == before["functions"] == FUNCTIONS
    assert len(after["apis"]) == 1
    assert after["apis"][0]["id"] == before["apis"][0]["id"]


# --- the jobs path: triggers, bucket, and an upload reaching the worker ------------------------

def rules(aws) -> dict:
    events = aws.client("events")
    found = {}
    for rule in events.list_rules()["Rules"]:
        found[rule["Name"]] = {**rule, "Targets": events.list_targets_by_rule(
            Rule=rule["Name"])["Targets"]}
    return found


def test_the_rules_hold_the_job_patterns_and_target_the_deployed_functions(stack, deployed):
    from chalicelib.jobs.events import notifier_pattern, worker_pattern
    aws, network, _, _ = stack
    found = rules(aws)
    assert {"chest-xray-dev-job_worker-event", "chest-xray-dev-job_notifier-event",
            "chest-xray-dev-job_sweeper-event"} <= set(found)
    for name, function, pattern in (
            ("chest-xray-dev-job_worker-event", WORKER, worker_pattern(network.jobs_bucket)),
            ("chest-xray-dev-job_notifier-event", NOTIFIER,
             notifier_pattern(network.jobs_bucket))):
        rule = found[name]
        assert json.loads(rule["EventPattern"]) == pattern, name
        assert pattern["detail"]["bucket"]["name"] == [network.jobs_bucket]
        assert rule["State"] == "ENABLED"
        assert [t["Arn"] for t in rule["Targets"]][:1] == [ARN + function]
    sweep = found["chest-xray-dev-job_sweeper-event"]
    assert sweep["ScheduleExpression"] == "rate(10 minutes)"  # XRAY_SWEEP_MINUTES' default
    assert "EventPattern" not in sweep
    assert [t["Arn"] for t in sweep["Targets"]] == [ARN + SWEEPER]
    for function, rule in ((WORKER, "job_worker"), (NOTIFIER, "job_notifier"),
                           (SWEEPER, "job_sweeper")):  # EventBridge may invoke each
        policy = json.loads(aws.client("lambda").get_policy(FunctionName=function)["Policy"])
        assert any(s["Principal"] == {"Service": "events.amazonaws.com"} and s["Condition"][
            "ArnLike"]["AWS:SourceArn"].endswith(f"rule/chest-xray-dev-{rule}-event")
            for s in policy["Statement"]), function
    _, first, second = deployed
    for run in (first, second):  # the deploy read them back too
        assert "job_worker: rule chest-xray-dev-job_worker-event matches" in run["output"]
        assert "job_sweeper: rule chest-xray-dev-job_sweeper-event runs rate(10 minutes)" \
            in run["output"]


def test_the_deploy_created_the_jobs_bucket_configured_and_left_it_alone_the_second_time(
        stack, deployed):
    aws, network, _, _ = stack
    _, first, second = deployed
    s3, bucket = aws.client("s3"), network.jobs_bucket
    assert f"created the jobs bucket s3://{bucket} in us-east-1" in first["output"]
    assert "created the jobs bucket" not in second["output"]
    assert f"jobs bucket s3://{bucket}: all in place: nothing to change" in second["output"]
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] is None  # us-east-1
    assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
        "Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True}
    expiry = {r["Filter"]["Prefix"]: r["Expiration"]["Days"]
              for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert expiry == {"jobs/": 7, "pending/": 7, "notices/": 7, "notified/": 7, "results/": 7,
                      "uploads/": 1, "batch/": 1}
    (cors,) = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    api_id = first["state"]["apis"][0]["id"]
    assert cors["AllowedMethods"] == ["POST"]
    assert cors["AllowedOrigins"] == [f"https://{api_id}.execute-api.us-east-1.amazonaws.com",
                                      "http://localhost:3000", "http://127.0.0.1:3000"]
    notifications = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert notifications["EventBridgeConfiguration"] == {}
    assert f"the API and the worker reach s3://{bucket} through the S3 gateway endpoint" \
        in first["output"]


def test_the_worker_has_the_apis_size_and_the_outside_functions_no_vpc(stack, deployed):
    from deploy.policy import policy_document
    from deploy.settings import load_stage
    _, _, project, _ = stack
    _, first, _ = deployed
    worker, notifier, sweeper = (first["state"][n] for n in ("worker", "notifier", "sweeper"))
    assert (worker["config"]["MemorySize"], worker["config"]["Timeout"]) == (3008, 120)
    assert worker["concurrency"] == 2 and worker["config"]["Handler"] == "app.job_worker"
    for function, handler in ((notifier, "app.job_notifier"), (sweeper, "app.job_sweeper")):
        config = function["config"]
        assert not (config.get("VpcConfig") or {}).get("SubnetIds"), handler
        assert config["MemorySize"] == 256 and config["Handler"] == handler
    assert (notifier["config"]["Timeout"], sweeper["config"]["Timeout"]) == (90, 120)
    assert sweeper["concurrency"] == 1
    settings = load_stage(project, "dev")
    roles = {first["state"][n]["role"] for n in ("api", "loader", "worker", "notifier",
                                                  "sweeper")}
    assert len(roles) == 5  # one role each
    for name, function in (("worker", settings.worker), ("notifier", settings.notifier),
                           ("sweeper", settings.sweeper)):
        assert first["state"][name]["policies"] == [policy_document(settings, function)]


def test_an_upload_reaches_the_deployed_worker_and_a_notice_the_notifier(stack, deployed):
    """The trigger for real: S3 -> EventBridge -> the rules Chalice deployed. moto cannot run
    the function; the shim records what EventBridge delivered to it, and an SQS queue added as
    a second target of the worker's rule receives the event itself."""
    from chalicelib.jobs import layout
    from chalicelib.jobs.events import created_object
    aws, network, _, _ = stack
    sqs, events, s3 = aws.client("sqs"), aws.client("events"), aws.client("s3")
    queue = sqs.create_queue(QueueName="worker-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    events.put_targets(Rule="chest-xray-dev-job_worker-event",
                       Targets=[{"Id": "test-queue", "Arn": queue_arn}])
    job_id = "j" * 32
    seen = len(aws.lambda_events)
    put = s3.put_object(Bucket=network.jobs_bucket, Key=layout.upload_key(job_id), Body=b"x")
    s3.put_object(Bucket=network.jobs_bucket, Key=layout.record_key(job_id), Body=b"{}")
    s3.put_object(Bucket=network.jobs_bucket, Key=layout.notice_key(job_id), Body=b"{}")
    s3.put_object(Bucket=network.jobs_bucket, Key="batch/ward-7/a.png", Body=b"x")
    delivered = [(e["function"], created_object(e["event"]).key)
                 for e in aws.lambda_events[seen:]]
    assert delivered == [(ARN + WORKER, layout.upload_key(job_id)),
                         (ARN + NOTIFIER, layout.notice_key(job_id)),
                         (ARN + WORKER, "batch/ward-7/a.png")]  # the record woke nobody
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    received = [created_object(json.loads(m["Body"])) for m in messages]
    assert [(o.bucket, o.key) for o in received] == [
        (network.jobs_bucket, layout.upload_key(job_id)),
        (network.jobs_bucket, "batch/ward-7/a.png")]
    assert received[0].etag == put["ETag"].strip('"') and received[0].size == 1


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


@pytest.fixture(scope="module")
def on_arm64(stack):
    """The deployed stage switched to lambda_architecture arm64 and deployed again."""
    aws, _, project, _ = stack
    set_stage(project, "dev", lambda_architecture="arm64")
    return project, deploy_and_snapshot(project, aws)


def test_a_stage_switched_to_arm64_runs_every_function_on_arm64_from_an_aarch64_zip(on_arm64):
    import zipfile

    from tests.support.packaging import elf_machine
    project, run = on_arm64
    state = run["state"]
    for name in ("api", "loader", "worker", "notifier", "sweeper"):
        assert state[name]["config"]["Architectures"] == ["arm64"], name
    # the package chalice deploy uploaded: requirements.txt's wheels and vendor/ for aarch64
    (package,) = (project / ".chalice" / "deployments").glob("*-python3.13-arm64.zip")
    with zipfile.ZipFile(package) as archive:
        natives = [n for n in archive.namelist() if n.endswith(".so")]
        machines = {elf_machine(archive.read(n)[:20]) for n in natives}
        assert "onnxruntime/capi/onnxruntime_pybind11_state.cpython-313-aarch64-linux-gnu.so" \
            in natives
    assert machines == {"aarch64"}, machines
    # and the EFS attachment survived the update
    assert all(state[name]["config"]["FileSystemConfigs"] for name in IN_VPC)
