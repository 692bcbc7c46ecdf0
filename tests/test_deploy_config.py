"""The stages in .chalice/config.json and the offline validation of a user's values: every
mistake is reported at once, each naming its key, before anything touches AWS."""
import json
import re
import shutil

import pytest

from deploy.errors import DeployError
from deploy.policy import allows_mount, policy_document, write_policy
from deploy.settings import load_stage
from tests.deploy_support.packaging import USER_VALUES
from tests.deploy_support.project import REPO, set_stage

STAGES = ("dev", "prod")


@pytest.fixture
def project(tmp_path):
    (tmp_path / ".chalice").mkdir()
    shutil.copy(REPO / ".chalice" / "config.json", tmp_path / ".chalice" / "config.json")
    return tmp_path


def filled(project, stage: str = "dev", **values):
    set_stage(project, stage, **{**USER_VALUES, **values})
    return load_stage(project, stage)


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_is_ready_once_the_user_values_are_filled_in(project, stage):
    settings = filled(project, stage)
    assert settings.mount_path == "/mnt/xray" and settings.region == "eu-west-1"
    assert settings.timeout_s <= 28 and settings.memory_mb >= 2048
    assert settings.reserved_concurrency >= 1
    assert settings.environment["XRAY_PACKAGES_PATH"].startswith("/mnt/xray/")
    assert settings.environment["XRAY_MODEL_PATH"].startswith("/mnt/xray/")


def test_the_committed_stages_share_the_chalice_settings_efs_needs():
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    assert config["api_gateway_endpoint_type"] == "REGIONAL"
    assert config["autogen_policy"] is False
    for stage in STAGES:
        own = config["stages"][stage]
        assert own["subnet_ids"] and own["security_group_ids"]  # always together
        assert own["iam_policy_file"] == f"policy-{stage}.json"


def test_the_committed_placeholders_fail_naming_every_user_key(project):
    with pytest.raises(DeployError) as caught:
        load_stage(project, "prod")
    for key in ("stages.prod.subnet_ids", "stages.prod.security_group_ids",
                "stages.prod.efs_access_point_arn"):
        assert key in str(caught.value)


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
])
def test_a_malformed_value_fails_naming_its_key(project, values, key):
    with pytest.raises(DeployError, match=re.escape(f"stages.dev.{key}:")):
        filled(project, **values)


def test_an_unknown_stage_lists_the_defined_ones(project):
    with pytest.raises(DeployError, match="'staging' is not defined.*dev, prod"):
        load_stage(project, "staging")


def test_the_policy_allows_a_read_only_mount_through_the_access_point_and_no_more(project):
    settings = filled(project)
    document = policy_document(settings)
    actions = [a for s in document["Statement"] for a in
               ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert [a for a in actions if a.startswith("elasticfilesystem:")] == [
        "elasticfilesystem:ClientMount"]
    assert not any(a.endswith("*") for a in actions)
    assert allows_mount(document, settings.access_point_arn)
    other = settings.access_point_arn.replace("fsap-0d1e", "fsap-9d1e")
    assert not allows_mount(document, other)


def test_the_policy_file_is_written_once_and_then_left_alone(project):
    settings = filled(project)
    assert write_policy(settings) is True
    assert json.loads(settings.policy_file.read_text()) == policy_document(settings)
    assert write_policy(settings) is False
