"""The jobs path in the template `python -m deploy.package` writes (one full build, shared with
test_package.py): the worker's and the notifier's EventBridge rules with the patterns of
chalicelib/jobs/events.py, the sweeper's schedule, the worker mounting EFS in the VPC, the
notifier and the sweeper outside it, and the jobs bucket the stack creates with EventBridge on.
Then the rule CloudFormation would make from it, put into moto's EventBridge with an SQS target,
receives the event moto's S3 emits for an upload, and nothing for a key the worker ignores."""
import json
import re

import boto3
import pytest
from moto import mock_aws

from chalicelib.jobs import layout
from chalicelib.jobs.events import created_object, notifier_pattern, worker_pattern
from deploy.policy import policy_document
from deploy.settings import load_stage
from local_stack.resources import rule_to_queue
from tests.support.jobs import SQS_VISIBILITY_S
from tests.support.packaging import USER_VALUES, built_once, translate

pytestmark = pytest.mark.build

BUCKET = USER_VALUES["environment_variables"]["XRAY_JOBS_BUCKET"]
MOUNT = [{"Arn": USER_VALUES["efs_access_point_arn"], "LocalMountPath": "/mnt/xray"}]


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    return built_once(tmp_path_factory)


@pytest.fixture(scope="module")
def resources(package_dir) -> dict:
    return json.loads((package_dir / "sam.json").read_text())["Resources"]


@pytest.fixture(scope="module")
def plain(package_dir) -> dict:
    """The template as plain CloudFormation (AWS's SAM translator), as the stack is made."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        return translate(json.loads((package_dir / "sam.json").read_text()))["Resources"]


def events_of(resources: dict, name: str) -> list:
    return list(resources[name]["Properties"].get("Events", {}).values())


def test_the_worker_and_notifier_get_the_job_patterns_and_the_sweeper_its_schedule(resources):
    assert events_of(resources, "JobWorker") == [
        {"Type": "CloudWatchEvent", "Properties": {"Pattern": worker_pattern(BUCKET)}}]
    assert events_of(resources, "JobNotifier") == [
        {"Type": "CloudWatchEvent", "Properties": {"Pattern": notifier_pattern(BUCKET)}}]
    assert events_of(resources, "JobSweeper") == [
        {"Type": "Schedule", "Properties": {"Schedule": "rate(10 minutes)"}}]
    for name in ("APIHandler", "EfsLoader"):
        assert not events_of(resources, name)


def test_the_worker_mounts_efs_in_the_vpc_and_the_notifier_and_sweeper_are_outside(
        package_dir, resources):
    worker = resources["JobWorker"]["Properties"]
    assert worker["Handler"] == "app.job_worker"
    assert worker["FileSystemConfigs"] == MOUNT
    assert worker["VpcConfig"] == {"SubnetIds": USER_VALUES["subnet_ids"],
                                   "SecurityGroupIds": USER_VALUES["security_group_ids"]}
    assert (worker["Timeout"], worker["MemorySize"], worker["ReservedConcurrentExecutions"]) \
        == (120, resources["APIHandler"]["Properties"]["MemorySize"], 10)
    assert worker["Environment"]["Variables"]["XRAY_JOBS_BUCKET"] == BUCKET
    for name, handler in (("JobNotifier", "app.job_notifier"), ("JobSweeper", "app.job_sweeper")):
        properties = resources[name]["Properties"]
        assert properties["Handler"] == handler
        assert "VpcConfig" not in properties and "FileSystemConfigs" not in properties
        assert properties["MemorySize"] == 256
    assert resources["JobSweeper"]["Properties"]["ReservedConcurrentExecutions"] == 1
    settings = load_stage(package_dir.parent / "project", "prod")
    for name, function in (("JobWorkerRole", settings.worker),
                           ("JobNotifierRole", settings.notifier),
                           ("JobSweeperRole", settings.sweeper)):
        (policy,) = resources[name]["Properties"]["Policies"]
        assert policy["PolicyDocument"] == policy_document(settings, function), name


def test_the_stack_creates_the_jobs_bucket_with_eventbridge_on(resources):
    bucket = resources["XrayJobsBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket" and bucket["DeletionPolicy"] == "Retain"
    properties = bucket["Properties"]
    assert properties["BucketName"] == BUCKET
    assert properties["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    assert all(properties["PublicAccessBlockConfiguration"].values())
    assert {r["Prefix"]: r["ExpirationInDays"]
            for r in properties["LifecycleConfiguration"]["Rules"]} == {
        "jobs/": 7, "pending/": 7, "notices/": 7, "notified/": 7, "results/": 7,
        "uploads/": 1, "batch/": 1}
    (cors,) = properties["CorsConfiguration"]["CorsRules"]
    # prod: same-origin only, so just the API's own origin, known in the stack
    assert cors["AllowedOrigins"] == [{"Fn::Sub": "https://${RestAPI}.execute-api."
                                                  "${AWS::Region}.${AWS::URLSuffix}"}]
    assert cors["AllowedMethods"] == ["POST"]


def rules_of(plain: dict) -> dict:
    """Function logical id -> the AWS::Events::Rule targeting it."""
    found = {}
    for rule in (r for r in plain.values() if r["Type"] == "AWS::Events::Rule"):
        (target,) = rule["Properties"]["Targets"]
        found[target["Arn"]["Fn::GetAtt"][0]] = rule["Properties"]
    return found


def test_the_translated_stack_has_the_rules_their_targets_and_the_permissions(plain):
    rules = rules_of(plain)
    assert set(rules) == {"JobWorker", "JobNotifier", "JobSweeper"}
    assert rules["JobWorker"]["EventPattern"] == worker_pattern(BUCKET)
    assert rules["JobNotifier"]["EventPattern"] == notifier_pattern(BUCKET)
    assert rules["JobSweeper"]["ScheduleExpression"] == "rate(10 minutes)"
    permitted = {p["Properties"]["FunctionName"]["Ref"] for p in plain.values()
                 if p["Type"] == "AWS::Lambda::Permission"
                 and p["Properties"]["Principal"] == "events.amazonaws.com"}
    assert permitted == {"JobWorker", "JobNotifier", "JobSweeper"}


def test_the_templates_rules_match_the_events_moto_s3_emits_for_job_keys_only(plain,
                                                                            resources):
    """The bucket as the template makes it (its name, EventBridge on), the rules as
    CloudFormation makes them, each with an SQS target instead of the function."""
    rules = rules_of(plain)
    bucket = resources["XrayJobsBucket"]["Properties"]
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"]
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        events = boto3.client("events", region_name="eu-west-1")
        sqs = boto3.client("sqs", region_name="eu-west-1")
        s3.create_bucket(Bucket=bucket["BucketName"],
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        s3.put_bucket_notification_configuration(Bucket=bucket["BucketName"],
                                                 NotificationConfiguration={
                                                     "EventBridgeConfiguration": {}})
        queues = {}
        for name in ("JobWorker", "JobNotifier"):
            queues[name] = rule_to_queue(sqs, events, name, rules[name]["EventPattern"],
                                         SQS_VISIBILITY_S)
        job_id = "Q" * 32
        keys = [layout.upload_key(job_id), layout.record_key(job_id),
                layout.pending_key(job_id), layout.notice_key(job_id),
                layout.notified_key(job_id, "email"), "batch/ward-7/a.dcm",
                layout.result_key("ward-7", "a.dcm")]
        for key in keys:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        received = {}
        for name, url in queues.items():
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
                "Messages", [])
            received[name] = [created_object(json.loads(m["Body"])).key for m in messages]
    assert received == {"JobWorker": [layout.upload_key(job_id), "batch/ward-7/a.dcm"],
                        "JobNotifier": [layout.notice_key(job_id)]}


@pytest.mark.parametrize("breakage, message", [
    (lambda r: r["JobWorker"]["Properties"]["Events"]["JobWorkerEvent"]["Properties"][
        "Pattern"]["detail"]["bucket"].update(name=["another-bucket"]),
     "JobWorker (job_worker) the CloudWatchEvent events"),
    (lambda r: r["JobSweeper"]["Properties"]["Events"]["JobSweeperEvent"]["Properties"].update(
        Schedule="rate(1 minute)"), "JobSweeper (job_sweeper) the Schedule events"),
    (lambda r: r["JobNotifier"]["Properties"].update(VpcConfig={"SubnetIds": ["subnet-1"]}),
     "JobNotifier (job_notifier) is in a VPC"),
    (lambda r: r["JobWorker"]["Properties"].pop("FileSystemConfigs"),
     "no AWS::Serverless::Function JobWorker for job_worker"),
    (lambda r: r.pop("XrayJobsBucket"), f"no AWS::S3::Bucket XrayJobsBucket named {BUCKET}"),
])
def test_a_template_whose_triggers_or_bucket_are_not_the_stages_is_refused(package_dir,
                                                                            breakage, message):
    import copy

    from deploy.errors import DeployError
    from deploy.package import check_merged
    settings = load_stage(package_dir.parent / "project", "prod")
    template = json.loads((package_dir / "sam.json").read_text())
    check_merged(settings, template)  # the real output passes
    broken = copy.deepcopy(template)
    breakage(broken["Resources"])
    with pytest.raises(DeployError, match=re.escape(message)):
        check_merged(settings, broken)
