"""The caller as API Gateway's authorizers established it, from the requestContext alone."""
import pytest

from chalicelib.web.principal import Principal, principal_of, source_ip

ARN = "arn:aws:iam::123456789012:user/radiologist"
SUB = "6f1c1d2e-8a3b-4c5d-9e0f-123456789abc"


@pytest.mark.parametrize("context, expected", [
    ({"identity": {"userArn": ARN, "caller": "AIDAEXAMPLE", "sourceIp": "203.0.113.7"}},
     Principal("iam", ARN)),
    ({"identity": {"caller": "AROAEXAMPLE:session"}}, Principal("iam", "AROAEXAMPLE:session")),
    ({"identity": {"userArn": None}, "authorizer": {"claims": {"sub": SUB, "email": "a@b.c"}}},
     Principal("cognito", SUB)),
    ({"identity": {"apiKeyId": "k1a2b3", "apiKey": "the-secret-key-value"}},
     Principal("anonymous", None, "k1a2b3")),
    ({"identity": {"userArn": ARN, "apiKeyId": "k1a2b3"}}, Principal("iam", ARN, "k1a2b3")),
    ({"authorizer": {"principalId": "user-7"}}, Principal("custom", "user-7")),
    ({"identity": {"sourceIp": "203.0.113.7"}}, Principal("anonymous")),
    ({}, Principal("anonymous")),
    (None, Principal("anonymous")),
], ids=["iam-user", "iam-role-session", "cognito", "api-key-only", "iam+api-key", "custom",
        "none", "empty", "missing"])
def test_given_a_request_context_when_read_then_the_authenticated_principal(context, expected):
    assert principal_of(context) == expected


def test_given_the_api_key_itself_in_the_context_then_only_its_id_is_kept():
    principal = principal_of({"identity": {"apiKeyId": "k1a2b3", "apiKey": "s3cr3t-key"}})
    assert "s3cr3t-key" not in repr(principal) and "s3cr3t-key" not in str(principal.as_log())


def test_given_malformed_context_values_when_read_then_anonymous_rather_than_a_crash():
    context = {"identity": "not a mapping", "authorizer": {"claims": ["sub", SUB]}}
    assert principal_of(context) == Principal("anonymous")


def test_the_source_ip_is_the_gateways_not_a_header():
    assert source_ip({"identity": {"sourceIp": "203.0.113.7"}}) == "203.0.113.7"
    assert source_ip({}) is None
