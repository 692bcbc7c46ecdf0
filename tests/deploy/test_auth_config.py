"""Who may call each stage, validated offline with the rest of .chalice/config.json: XRAY_AUTH,
the Cognito pools, the api_key usage plan, the CORS origins the Gateway Responses name, and
Chalice's own `xray` switch."""
import json

import pytest

from deploy.errors import DeployError
from deploy.settings import UsagePlan, load_stage
from tests.support.packaging import USER_VALUES
from tests.support.project import REPO, set_stage

POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"


def filled(project, stage: str = "dev", env=None, **values):
    set_stage(project, stage, **USER_VALUES)
    set_stage(project, stage, **values, **({"environment_variables": env} if env else {}))
    return load_stage(project, stage)


def refused(project, stage: str = "dev", env=None, **values) -> str:
    with pytest.raises(DeployError) as caught:
        filled(project, stage, env, **values)
    return str(caught.value)


def test_the_committed_stages_are_dev_open_and_prod_iam(project):
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    assert config["stages"]["dev"]["environment_variables"]["XRAY_AUTH"] == "none"
    assert config["stages"]["prod"]["environment_variables"]["XRAY_AUTH"] == "iam"
    dev, prod = filled(project, "dev"), filled(project, "prod")
    assert dev.auth.mechanisms == () and prod.auth.mechanisms == ("iam",)
    assert dev.api_stage == prod.api_stage == "api"
    assert prod.resource_name == "chest-xray-prod"
    assert dev.cors_origins == ("http://localhost:3000", "http://127.0.0.1:3000")
    assert prod.cors_origins == () and prod.warnings == ()


def test_given_prod_with_none_when_validated_then_refused_saying_what_to_set(project):
    message = refused(project, "prod", env={"XRAY_AUTH": "none"})
    assert "stages.prod.environment_variables.XRAY_AUTH: is none" in message
    assert '"iam"' in message and '"cognito" with XRAY_COGNITO_USER_POOL_ARNS' in message


def test_given_prod_without_xray_auth_when_validated_then_it_is_iam(project):
    config_path = project / ".chalice" / "config.json"
    config = json.loads(config_path.read_text())
    del config["stages"]["prod"]["environment_variables"]["XRAY_AUTH"]
    config_path.write_text(json.dumps(config))
    assert filled(project, "prod").auth.mechanisms == ("iam",)


def test_given_another_stage_with_none_when_validated_then_a_warning_says_it_is_open(project):
    (warning,) = filled(project, "dev").warnings
    assert "XRAY_AUTH=none" in warning and "open to anyone" in warning


@pytest.mark.parametrize("env, words", [
    ({"XRAY_AUTH": "sigv4"}, "XRAY_AUTH must be one of"),
    ({"XRAY_AUTH": "cognito"}, "needs XRAY_COGNITO_USER_POOL_ARNS"),
    ({"XRAY_AUTH": "cognito", "XRAY_COGNITO_USER_POOL_ARNS": "eu-west-1_AbCdEf123"},
     "must be user pool ARNs"),
    ({"XRAY_CORS_ORIGINS": "https://app.example/"}, "XRAY_CORS_ORIGINS entries must be"),
])
def test_given_a_bad_auth_or_origin_value_when_validated_then_refused_naming_the_key(
        project, env, words):
    message = refused(project, "prod", env=env)
    assert "stages.prod.environment_variables.XRAY_" in message and words in message


def test_given_cognito_with_a_pool_when_validated_then_its_arn_is_kept(project):
    settings = filled(project, "prod", env={"XRAY_AUTH": "cognito+api_key",
                                            "XRAY_COGNITO_USER_POOL_ARNS": POOL})
    assert settings.auth.user_pool_arns == (POOL,) and settings.auth.api_key
    assert settings.usage_plan == UsagePlan()  # no usage_plan key: the defaults


def test_given_api_key_with_a_usage_plan_when_validated_then_it_is_read(project):
    plan = {"throttle_rate_limit": 2.5, "throttle_burst_limit": 5, "quota_limit": 100,
            "quota_period": "WEEK"}
    settings = filled(project, "prod", env={"XRAY_AUTH": "iam+api_key"}, usage_plan=plan)
    assert settings.usage_plan == UsagePlan(2.5, 5, 100, "WEEK")
    partial = filled(project, "prod", usage_plan={"quota_limit": 7})
    assert partial.usage_plan == UsagePlan(quota_limit=7)


def test_given_api_key_alone_when_validated_then_a_warning_says_it_only_identifies(project):
    (warning,) = filled(project, "prod", env={"XRAY_AUTH": "api_key"}).warnings
    assert "identifies callers" in warning and "does not protect" in warning


@pytest.mark.parametrize("plan, words", [
    ({"throttle_rate_limit": 0}, "throttle_rate_limit must be a positive number"),
    ({"throttle_rate_limit": True}, "throttle_rate_limit must be a positive number"),
    ({"throttle_burst_limit": 2.5}, "throttle_burst_limit must be a whole number"),
    ({"quota_limit": 0}, "quota_limit must be a whole number"),
    ({"quota_period": "YEAR"}, "quota_period must be one of DAY, WEEK, MONTH"),
    ({"rate": 5}, "unknown field(s) rate"),
    ([5, 10], "must be an object"),
])
def test_given_a_bad_usage_plan_when_validated_then_refused_naming_the_field(project, plan,
                                                                             words):
    message = refused(project, "prod", env={"XRAY_AUTH": "iam+api_key"}, usage_plan=plan)
    assert "stages.prod.usage_plan:" in message and words in message


def test_given_a_usage_plan_without_api_key_when_validated_then_a_warning_says_it_is_ignored(
        project):
    settings = filled(project, "prod", usage_plan={"quota_limit": 7})
    assert settings.usage_plan is None
    (warning,) = settings.warnings
    assert "usage_plan is ignored" in warning


@pytest.mark.parametrize("value", ["true", 1, "yes"])
def test_given_a_non_bool_xray_switch_when_validated_then_refused(project, value):
    message = refused(project, "prod", xray=value)
    assert f"stages.prod.xray: is Chalice's X-Ray tracing switch and must be true or false; " \
           f"got {value!r}" in message
    assert message.count("stages.prod.xray") == 1  # once, though both functions inherit it


@pytest.mark.parametrize("value", [True, False])
def test_given_a_bool_xray_switch_when_validated_then_accepted(project, value):
    assert filled(project, "prod", xray=value).stage == "prod"
