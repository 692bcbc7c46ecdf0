"""XRAY_AUTH as Chalice declares it on a route (chalicelib/web/auth.py). What app.py does with
it under each mode is checked in a fresh interpreter in tests/api/test_auth_modes.py."""
import pytest
from chalice import CognitoUserPoolAuthorizer, IAMAuthorizer

from chalicelib.settings import AUTH_CHOICES, AuthSettings
from chalicelib.web.auth import COGNITO_AUTHORIZER, authorizer, route_auth

POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"


def auth_of(mode: str) -> AuthSettings:
    env = {"XRAY_AUTH": mode}
    if "cognito" in mode:
        env["XRAY_COGNITO_USER_POOL_ARNS"] = POOL
    return AuthSettings.from_env(env)


@pytest.mark.parametrize("mode, kind, api_key", [
    ("none", None, False), ("api_key", None, True),
    ("iam", IAMAuthorizer, False), ("iam+api_key", IAMAuthorizer, True),
    ("cognito", CognitoUserPoolAuthorizer, False),
    ("cognito+api_key", CognitoUserPoolAuthorizer, True)])
def test_given_a_mode_when_turned_into_route_options_then_the_authorizer_and_key_match(
        mode, kind, api_key):
    options = route_auth(auth_of(mode))
    assert set(options) == {"authorizer", "api_key_required"}
    assert options["api_key_required"] is api_key
    if kind is None:
        assert options["authorizer"] is None
    else:
        assert type(options["authorizer"]) is kind


def test_given_cognito_when_declared_then_the_pools_are_the_configured_ones():
    declared = authorizer(auth_of("cognito")).to_swagger()
    assert declared["x-amazon-apigateway-authorizer"] == {"type": "cognito_user_pools",
                                                          "providerARNs": [POOL]}
    assert declared["name"] == "Authorization"  # the id token goes in the Authorization header
    assert authorizer(auth_of("cognito")).name == COGNITO_AUTHORIZER


def test_given_iam_when_declared_then_it_is_sigv4():
    assert authorizer(auth_of("iam")).to_swagger()["x-amazon-apigateway-authtype"] == "awsSigv4"


def test_every_mode_the_settings_accept_is_covered_above():
    assert set(AUTH_CHOICES) == {"none", "api_key", "iam", "iam+api_key", "cognito",
                                 "cognito+api_key"}
