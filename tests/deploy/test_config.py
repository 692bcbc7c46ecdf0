"""The stages in .chalice/config.json and the offline validation of a user's values: every
mistake is reported at once, each naming its key, before anything touches AWS. Here the API
(api_handler) and the EFS loader (efs_loader), each with its own policy file; the jobs path's
three functions in test_jobs_config.py."""
import json
import re

import pytest
from chalice.config import Config

from deploy.errors import DeployError
from deploy.policy import allows_get_object, allows_mount, policy_document, write_policy
from deploy.settings import load_stage
from tests.support.packaging import USER_VALUES, filled
from tests.support.project import REPO

STAGES = ("dev", "prod")
# the committed loader override of stage dev
LOADER = {"iam_policy_file": "policy-dev-loader.json", "lambda_timeout": 900,
          "lambda_memory_size": 2048, "reserved_concurrency": 1}


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_is_ready_once_the_user_values_are_filled_in(project, stage):
    settings = filled(project, stage)
    assert settings.mount_path == "/mnt/xray" and settings.region == "eu-west-1"
    assert settings.upload_bucket == USER_VALUES["efs_upload_bucket"]
    api, loader = settings.api, settings.loader
    assert api.timeout_s <= 28 and api.memory_mb >= 2048 and api.reserved_concurrency >= 2
    assert api.environment["XRAY_PACKAGES_PATH"].startswith("/mnt/xray/")
    assert api.environment["XRAY_MODEL_PATH"].startswith("/mnt/xray/")
    assert api.policy_file.name == f"policy-{stage}.json"
    assert (loader.timeout_s, loader.memory_mb, loader.reserved_concurrency) == (900, 2048, 1)
    assert loader.policy_file.name == f"policy-{stage}-loader.json"
    assert loader.environment["XRAY_EFS_ROOT"] == "/mnt/xray"
    assert loader.subnet_ids == api.subnet_ids == USER_VALUES["subnet_ids"]
    assert [f.name for f in settings.functions] == [
        "api_handler", "efs_loader", "job_worker", "job_notifier", "job_sweeper"]
    assert [f.name for f in settings.efs_functions] == ["api_handler", "efs_loader", "job_worker"]


def test_the_committed_stages_share_the_chalice_settings_efs_needs():
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    assert config["api_gateway_endpoint_type"] == "REGIONAL"
    assert config["autogen_policy"] is False
    for stage in STAGES:
        own = config["stages"][stage]
        assert own["subnet_ids"] and own["security_group_ids"]  # always together
        assert own["iam_policy_file"] == f"policy-{stage}.json"
        assert "efs_upload_bucket" in own
        assert own["lambda_functions"]["efs_loader"] == {
            "iam_policy_file": f"policy-{stage}-loader.json", "lambda_timeout": 900,
            "lambda_memory_size": 2048, "reserved_concurrency": 1}
        assert sorted(own["lambda_functions"]) == ["efs_loader", "job_notifier", "job_sweeper",
                                                   "job_worker"]
    assert "lambda_functions" not in config  # nothing that could reach the API by accident


@pytest.mark.parametrize("stage", STAGES)
def test_chalice_itself_gives_the_loader_overrides_to_the_loader_only(stage):
    """Read with Chalice's own Config, as `chalice deploy` reads it, not with our code."""
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    own = config["stages"][stage]
    api = Config(chalice_stage=stage, function_name="api_handler", config_from_disk=config)
    loader = Config(chalice_stage=stage, function_name="efs_loader", config_from_disk=config)
    assert (api.iam_policy_file, api.lambda_timeout, api.lambda_memory_size,
            api.reserved_concurrency) == (f"policy-{stage}.json", 28, own["lambda_memory_size"],
                                          own["reserved_concurrency"])
    assert (loader.iam_policy_file, loader.lambda_timeout, loader.lambda_memory_size,
            loader.reserved_concurrency) == (f"policy-{stage}-loader.json", 900, 2048, 1)
    # the same VPC and the same mount path: the hook attaches one access point to both
    assert (loader.subnet_ids, loader.security_group_ids) == (api.subnet_ids,
                                                              api.security_group_ids)
    assert loader.environment_variables == api.environment_variables


def test_the_committed_placeholders_fail_naming_every_user_key(project):
    with pytest.raises(DeployError) as caught:
        load_stage(project, "prod")
    for key in ("stages.prod.subnet_ids", "stages.prod.security_group_ids",
                "stages.prod.efs_access_point_arn", "stages.prod.efs_upload_bucket",
                "stages.prod.environment_variables.XRAY_JOBS_BUCKET"):
        assert key in str(caught.value)
    # the loader and the worker inherit the same ids: each wrong value is reported once, where
    # it is set (the notifier and the sweeper have their own, empty, lists)
    assert "lambda_functions" not in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1 + 5


@pytest.mark.parametrize("values, key", [
    ({"efs_access_point_arn": "arn:aws:elasticfilesystem:eu-west-1:123456789012:"
                              "file-system/fs-0123456789abcdef0"}, "efs_access_point_arn"),
    ({"efs_access_point_arn": "arn:aws:elasticfilesystem:eu-west-1:123456789012:"
                              "access-point/fsap-0123abcd"}, "efs_access_point_arn"),
    ({"subnet_ids": "subnet-0a1b2c3d4e5f60718"}, "subnet_ids"),  # a string, not a list
    ({"security_group_ids": ["sg-1", "sg-0c1d2e3f405162738"]}, "security_group_ids"),
    ({"environment_variables": {"XRAY_EFS_ROOT": "/mnt/xray/deeper"}},
     "environment_variables.XRAY_EFS_ROOT"),
    ({"environment_variables": {"XRAY_PACKAGES_PATH": "/opt/packages"}},
     "environment_variables.XRAY_PACKAGES_PATH"),
    ({"environment_variables": {"XRAY_MODEL_PATH": "/tmp/models/current"}},
     "environment_variables.XRAY_MODEL_PATH"),
    ({"lambda_timeout": 29}, "lambda_timeout"),
    ({"lambda_memory_size": 512}, "lambda_memory_size"),
    ({"reserved_concurrency": 0}, "reserved_concurrency"),
    ({"api_gateway_endpoint_type": "EDGE"}, "api_gateway_endpoint_type"),
    ({"iam_policy_file": "my-policy.json"}, "iam_policy_file"),
    # the loader's own values
    ({"lambda_functions": {"efs_loader": {**LOADER, "lambda_timeout": 28}}},
     "lambda_functions.efs_loader.lambda_timeout"),
    ({"lambda_functions": {"efs_loader": {**LOADER, "lambda_timeout": 901}}},
     "lambda_functions.efs_loader.lambda_timeout"),
    ({"lambda_functions": {"efs_loader": {**LOADER, "reserved_concurrency": 2}}},
     "lambda_functions.efs_loader.reserved_concurrency"),
    ({"lambda_functions": {"efs_loader": {**LOADER, "lambda_memory_size": 512}}},
     "lambda_functions.efs_loader.lambda_memory_size"),
    ({"lambda_functions": {"efs_loader": {**LOADER, "iam_policy_file": "policy-dev.json"}}},
     "lambda_functions.efs_loader.iam_policy_file"),  # the API's read-only role
    ({"lambda_functions": {"efs_loader": {**LOADER, "environment_variables": {
        "XRAY_EFS_ROOT": "/mnt/other"}}}},
     "lambda_functions.efs_loader.environment_variables.XRAY_EFS_ROOT"),
    ({"lambda_functions": {"efs_loader": {**LOADER, "subnet_ids": ["subnet-1"]}}},
     "lambda_functions.efs_loader.subnet_ids"),
    # an override for the API is seen where Chalice sees it
    ({"lambda_functions": {"efs_loader": LOADER, "api_handler": {"lambda_timeout": 60}}},
     "lambda_functions.api_handler.lambda_timeout"),
    ({"lambda_functions": {"efs_loader": LOADER,
                           "api_handler": {"iam_policy_file": "policy-dev-loader.json"}}},
     "lambda_functions.api_handler.iam_policy_file"),
])
def test_a_malformed_value_fails_naming_its_key(project, values, key):
    with pytest.raises(DeployError, match=re.escape(f"stages.dev.{key}:")):
        filled(project, **values)



def test_the_loaders_values_moved_to_the_stage_are_refused_for_the_api(project):
    """The loader's long timeout set stage-wide would reach the API: refused for the API."""
    with pytest.raises(DeployError) as caught:
        filled(project, lambda_timeout=900, reserved_concurrency=1)
    assert "stages.dev.lambda_timeout: must be a whole number from 1 to 28" in str(caught.value)


def test_a_loader_without_its_override_is_refused_naming_where_its_values_come_from(project):
    config = json.loads((project / ".chalice" / "config.json").read_text())
    del config["stages"]["dev"]["lambda_functions"]
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    with pytest.raises(DeployError) as caught:
        filled(project)
    message = str(caught.value)
    for key, inherited in (("lambda_timeout", "28"), ("reserved_concurrency", "2"),
                           ("iam_policy_file", "'policy-dev.json'")):
        pattern = (rf"stages\.dev\.lambda_functions\.efs_loader\.{key}: .*"
                   rf"got {re.escape(inherited)} .*\(inherited from stages\.dev\.{key}")
        assert re.search(pattern, message), message
    assert "stages.dev.lambda_timeout" not in message.replace("inherited from stages.dev.", "")


@pytest.mark.parametrize("bucket", [
    "REPLACE_WITH_YOUR_BUCKET", "ab", "a" * 64, "-bucket", "bucket-", "my_bucket",
    "my..bucket", "my.-bucket", "my-.bucket", "192.168.1.10", "xn--bucket", "sthree-bucket",
    "amzn-s3-demo-bucket", "bucket-s3alias", "bucket--ol-s3", "bucket.mrap", "bucket--x-s3",
    "bucket--table-s3", "", None, 42,
])
def test_a_bucket_name_s3_would_refuse_fails_naming_the_key(project, bucket):
    with pytest.raises(DeployError, match=re.escape("stages.dev.efs_upload_bucket:")):
        filled(project, efs_upload_bucket=bucket)


@pytest.mark.parametrize("bucket", ["abc", "a" * 63, "my-bucket", "my.bucket.eu-west-1",
                                    "0chest-xray-upload9"])
def test_a_valid_bucket_name_is_accepted(project, bucket):
    assert filled(project, efs_upload_bucket=bucket).upload_bucket == bucket


def test_an_unknown_stage_lists_the_defined_ones(project):
    with pytest.raises(DeployError, match="'staging' is not defined.*dev, prod"):
        load_stage(project, "staging")


def actions_of(document) -> list:
    return [a for s in document["Statement"] for a in
            ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]


def test_the_api_policy_allows_a_read_only_mount_through_the_access_point_and_no_more(project):
    settings = filled(project)
    document = policy_document(settings, settings.api)
    assert document == policy_document(settings)  # the API's is the default
    assert [s["Sid"] for s in document["Statement"]][:3] == [
        "Logs", "VpcNetworkInterfaces", "EfsReadOnlyMountThroughAccessPoint"]
    actions = actions_of(document)
    assert [a for a in actions if a.startswith("elasticfilesystem:")] == [
        "elasticfilesystem:ClientMount"]
    # S3 only on the jobs bucket (its grants: test_jobs_config.py), never the upload bucket
    s3 = [s for s in document["Statement"] if "s3:" in str(s["Action"])]
    assert s3 and all(r.startswith("arn:aws:s3:::chest-xray-jobs-eu-west-1") for s in s3
                      for r in ([s["Resource"]] if isinstance(s["Resource"], str)
                                else s["Resource"]))
    assert not any(a.endswith("*") for a in actions)
    assert allows_mount(document, settings.access_point_arn)
    assert not allows_mount(document, settings.access_point_arn, "elasticfilesystem:ClientWrite")
    other = settings.access_point_arn.replace("fsap-0d1e", "fsap-9d1e")
    assert not allows_mount(document, other)
    assert not allows_get_object(document, settings.upload_objects_arn.replace("*", "x.tar.gz"))


def test_the_loader_policy_is_exactly_logs_vpc_read_write_mount_and_the_upload_prefix(project):
    settings = filled(project)
    arn = USER_VALUES["efs_access_point_arn"]
    document = policy_document(settings, settings.loader)
    assert document == {"Version": "2012-10-17", "Statement": [
        {"Sid": "Logs", "Effect": "Allow",
         "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "arn:aws:logs:eu-west-1:123456789012:*"},
        {"Sid": "VpcNetworkInterfaces", "Effect": "Allow",
         "Action": ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                    "ec2:DetachNetworkInterface", "ec2:DeleteNetworkInterface"],
         "Resource": "*"},
        {"Sid": "EfsReadWriteMountThroughAccessPoint", "Effect": "Allow",
         "Action": ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
         "Resource": "arn:aws:elasticfilesystem:eu-west-1:123456789012:file-system/*",
         "Condition": {"StringEquals": {"elasticfilesystem:AccessPointArn": arn}}},
        {"Sid": "ReadUploadedArchives", "Effect": "Allow", "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::chest-xray-efs-upload-eu-west-1/efs-upload/*"},
    ]}
    bucket = "arn:aws:s3:::chest-xray-efs-upload-eu-west-1"
    assert allows_get_object(document, f"{bucket}/efs-upload/runtime/0123.tar.gz")
    assert not allows_get_object(document, f"{bucket}/other/x.tar.gz")
    assert not allows_get_object(document, "arn:aws:s3:::someone-else/efs-upload/x.tar.gz")
    for action in ("elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"):
        assert allows_mount(document, arn, action)
        assert not allows_mount(document, arn.replace("fsap-0d1e", "fsap-9d1e"), action)
    assert not allows_mount(document, arn, "elasticfilesystem:ClientRootAccess")


def test_given_xray_tracing_then_every_policy_allows_the_trace_writes_and_only_then(project):
    settings = filled(project)
    assert not any(a.startswith("xray:") for f in settings.functions
                   for a in actions_of(policy_document(settings, f)))
    traced = filled(project, xray=True)
    for function in traced.functions:
        assert function.tracing
        assert [a for a in actions_of(policy_document(traced, function))
                if a.startswith("xray:")] == ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]


def test_the_partition_comes_from_the_access_point(project):
    settings = filled(project, efs_access_point_arn="arn:aws-cn:elasticfilesystem:cn-north-1:"
                      "123456789012:access-point/fsap-0d1e2f30415263748")
    document = policy_document(settings, settings.loader)
    assert document["Statement"][-1]["Resource"] == (
        "arn:aws-cn:s3:::chest-xray-efs-upload-eu-west-1/efs-upload/*")


def test_the_policy_files_are_written_once_and_then_left_alone(project):
    settings = filled(project)
    assert write_policy(settings) == ["policy-dev.json", "policy-dev-loader.json",
                                      "policy-dev-worker.json", "policy-dev-notifier.json",
                                      "policy-dev-sweeper.json"]
    for function in settings.functions:
        assert json.loads(function.policy_file.read_text()) == policy_document(settings,
                                                                               function)
    assert write_policy(settings) == []


# --- the architecture --------------------------------------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
def test_the_committed_stages_run_on_x86_64(project, stage):
    assert filled(project, stage).architecture == "x86_64"


def test_a_stage_set_to_arm64_runs_every_function_on_arm64_and_leaves_the_other_stage(project):
    assert filled(project, "prod", lambda_architecture="arm64").architecture == "arm64"
    assert filled(project, "dev").architecture == "x86_64"


def test_an_architecture_lambda_does_not_have_is_refused_naming_the_key(project):
    with pytest.raises(DeployError, match=re.escape(
            "stages.dev.lambda_architecture: must be one of 'x86_64', 'arm64'")):
        filled(project, lambda_architecture="aarch64")


def test_a_functions_own_architecture_which_chalice_ignores_is_refused(project):
    """One deployment package per stage, built for the stage's architecture; Chalice reads no
    per-function lambda_architecture, so the worker would run x86_64 whatever it says."""
    assert Config(chalice_stage="dev", function_name="job_worker", config_from_disk={
        "lambda_architecture": "x86_64", "stages": {"dev": {"lambda_functions": {
            "job_worker": {"lambda_architecture": "arm64"}}}}}).lambda_architecture == "x86_64"
    config = json.loads((project / ".chalice" / "config.json").read_text())
    config["stages"]["dev"]["lambda_functions"]["job_worker"]["lambda_architecture"] = "arm64"
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    with pytest.raises(DeployError) as caught:
        filled(project)
    message = str(caught.value)
    assert ("stages.dev.lambda_functions.job_worker.lambda_architecture: is ignored by "
            "Chalice") in message, message
    assert "got 'arm64'" in message
    assert message.count("lambda_architecture") == 2  # the worker's line only (and its advice)
