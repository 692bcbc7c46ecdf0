"""chalicelib/settings.py: what each stage's environment turns into, on Lambda and off it."""
import pytest

from chalicelib.settings import (
    KEEP_DICOM_HEADERS,
    LOCAL_EFS_ROOT,
    PROJECT_ROOT,
    REDUCED_DECODING,
    AuthSettings,
    JobSettings,
    Settings,
)

DEV = {"XRAY_EFS_ROOT": "/mnt/xray", "XRAY_PACKAGES_PATH": "/mnt/xray/packages",
       "XRAY_MODEL_PATH": "/mnt/xray/models/current", "XRAY_LOCAL_EFS_ROOT": "efs-local"}
POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"


def test_given_the_dev_stage_off_lambda_then_the_local_store_and_this_torch_are_read():
    settings = Settings.from_env(DEV)
    assert settings.efs_root == PROJECT_ROOT / "efs-local" == LOCAL_EFS_ROOT
    assert settings.model_path == LOCAL_EFS_ROOT / "models" / "current"
    assert settings.packages_path is None and settings.local_store


def test_given_the_dev_stage_on_lambda_then_efs_is_read_and_the_local_root_ignored():
    settings = Settings.from_env({**DEV, "AWS_LAMBDA_FUNCTION_NAME": "chest-xray-dev"})
    assert str(settings.model_path) == "/mnt/xray/models/current"
    assert str(settings.packages_path) == "/mnt/xray/packages" and not settings.local_store
    assert "vendor_efs.ship" in settings.store_hint()


def test_given_a_stage_without_a_local_root_off_lambda_then_the_hint_says_how_to_serve_locally():
    hint = Settings.from_env({**DEV, "XRAY_LOCAL_EFS_ROOT": ""}).store_hint()
    assert "only on Lambda" in hint and "`chalice local`" in hint
    assert "XRAY_LOCAL_EFS_ROOT" in hint
    assert "scripts/setup" in Settings.from_env(DEV).store_hint()


@pytest.mark.parametrize("mode, mechanisms", [
    ("none", ()), ("iam", ("iam",)), ("api_key", ("api_key",)),
    ("iam+api_key", ("iam", "api_key")), ("cognito+api_key", ("cognito", "api_key"))])
def test_given_an_auth_mode_then_its_mechanisms(mode, mechanisms):
    auth = AuthSettings.from_env({"XRAY_AUTH": mode, "XRAY_COGNITO_USER_POOL_ARNS": POOL})
    assert auth.mechanisms == mechanisms
    assert (auth.iam, auth.cognito, auth.api_key) == tuple(
        m in mechanisms for m in ("iam", "cognito", "api_key"))


def test_given_no_auth_mode_then_iam_so_a_stage_is_never_open_by_omission():
    assert AuthSettings.from_env({}).mechanisms == ("iam",)


@pytest.mark.parametrize("env, said", [
    ({"XRAY_AUTH": "open"}, "XRAY_AUTH must be one of"),
    ({"XRAY_AUTH": "cognito"}, "needs XRAY_COGNITO_USER_POOL_ARNS"),
    ({"XRAY_AUTH": "cognito", "XRAY_COGNITO_USER_POOL_ARNS": "eu-west-1_AbC"}, "user pool ARNs"),
    ({"XRAY_AUTH": "cognito", "XRAY_COGNITO_USER_POOL_ARNS": POOL,
      "XRAY_COGNITO_DOMAIN": "https://x.auth.eu-west-1.amazoncognito.com/login"}, "no path"),
])
def test_given_a_wrong_auth_setting_then_it_fails_at_start_saying_what_to_fix(env, said):
    with pytest.raises(ValueError, match=said):
        AuthSettings.from_env(env)


def test_given_no_stage_name_then_local_and_each_deployed_stage_names_itself():
    import json
    assert Settings.from_env({}).stage == "local"
    config = json.loads((PROJECT_ROOT / ".chalice" / "config.json").read_text())
    for stage, own in config["stages"].items():
        assert Settings.from_env(own["environment_variables"]).stage == stage


@pytest.mark.parametrize("value", ["prod stage", "x" * 33, "dev\n"])
def test_given_a_stage_name_that_is_not_a_short_name_then_it_fails_at_start(value):
    with pytest.raises(ValueError, match="XRAY_STAGE"):
        Settings.from_env({"XRAY_STAGE": value})


@pytest.mark.parametrize("value, kept", [(None, False), ("", False), ("false", False),
                                         ("0", False), ("true", True), ("YES", True), ("1", True)])
def test_given_the_dicom_header_switch_then_a_job_keeps_headers_only_when_opted_in(value, kept):
    env = {} if value is None else {KEEP_DICOM_HEADERS: value}
    assert JobSettings.from_env(env).keep_dicom_headers is kept


def test_given_a_dicom_header_switch_that_is_no_yes_or_no_then_it_fails_at_start():
    with pytest.raises(ValueError, match="XRAY_KEEP_DICOM_HEADERS must be true or false"):
        JobSettings.from_env({KEEP_DICOM_HEADERS: "sometimes"})


def test_given_nothing_then_every_pixel_is_decoded():
    assert Settings.from_env({}).reduced_decoding is False


@pytest.mark.parametrize("value, expected", [("true", True), ("1", True), ("false", False),
                                             ("", False)])
def test_given_the_reduced_decoding_switch_then_the_stage_opts_in_or_not(value, expected):
    assert Settings.from_env({REDUCED_DECODING: value}).reduced_decoding is expected


def test_given_a_level_instead_of_a_switch_then_start_up_says_where_the_level_goes():
    with pytest.raises(ValueError, match="must be true or false; got '2' .the level is the "
                                         "model's: its manifest's reduced_decoding"):
        Settings.from_env({REDUCED_DECODING: "2"})
