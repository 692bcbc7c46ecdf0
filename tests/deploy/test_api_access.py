"""The two post-deploy steps on API Gateway, in process against moto's in-memory account:
Gateway Responses (deploy/gateway_responses.py) and the API key with its usage plan
(deploy/api_keys.py). The real command runs them against a moto server in test_moto.py."""
import json
import logging
from dataclasses import replace

import boto3
import pytest
from moto import mock_aws

from deploy import gateway_responses
from deploy.api_keys import ensure_api_key, plan_patch
from deploy.errors import DeployError
from deploy.settings import UsagePlan, load_stage
from tests.support.packaging import USER_VALUES
from tests.support.project import copy_project, set_stage

REGION = "eu-west-1"


@pytest.mark.parametrize("origins, header", [
    ((), ""), (("https://app.example",), "https://app.example"),
    (("https://a.example", "https://b.example"), "*"), (("*",), "*")])
def test_the_allowed_origin_is_exact_for_one_origin_and_star_for_several(origins, header):
    assert gateway_responses.allow_origin(origins) == header
    for response in gateway_responses.gateway_responses(origins).values():
        expected = {"gatewayresponse.header.Access-Control-Allow-Origin": f"'{header}'"} \
            if header else {}
        assert response["responseParameters"] == expected


def test_the_bodies_are_shaped_like_our_errors_for_every_type_the_issue_names():
    responses = gateway_responses.gateway_responses(())
    assert {"DEFAULT_4XX", "DEFAULT_5XX", "UNAUTHORIZED", "ACCESS_DENIED",
            "MISSING_AUTHENTICATION_TOKEN", "INVALID_API_KEY", "REQUEST_TOO_LARGE",
            "INTEGRATION_TIMEOUT", "THROTTLED", "QUOTA_EXCEEDED"} <= set(responses)
    # what API Gateway makes of the template, with its variables filled in
    filled = responses["THROTTLED"]["responseTemplates"]["application/json"].replace(
        "$context.error.messageString", json.dumps("Too Many Requests"))
    assert json.loads(filled) == {"Code": "Throttled", "Message": "Too Many Requests"}
    assert "$context.error.responseType" in responses["DEFAULT_4XX"]["responseTemplates"][
        "application/json"]


@pytest.fixture
def apigw():
    with mock_aws():
        client = boto3.client("apigateway", region_name=REGION)
        calls = []
        client.meta.events.register(
            "before-call.api-gateway.*",
            lambda model, **_: calls.append(model.name) if model.name.startswith(
                ("Create", "Update", "Put", "Delete")) else None)
        api = client.create_rest_api(name="chest-xray")["id"]
        root = client.get_resources(restApiId=api)["items"][0]["id"]
        client.put_method(restApiId=api, resourceId=root, httpMethod="GET",
                          authorizationType="NONE")
        client.put_integration(restApiId=api, resourceId=root, httpMethod="GET", type="MOCK")
        calls.clear()
        yield client, api, calls


def test_gateway_responses_are_put_once_then_left_alone_and_updated_when_origins_change(apigw):
    client, api, calls = apigw
    assert len(gateway_responses.apply(client, api, "api", ())) == len(gateway_responses.CODES)
    assert calls.count("PutGatewayResponse") == len(gateway_responses.CODES)
    assert calls.count("CreateDeployment") == 1
    calls.clear()
    assert gateway_responses.apply(client, api, "api", ()) == [] and calls == []
    changed = gateway_responses.apply(client, api, "api", ("https://app.example",))
    assert len(changed) == len(gateway_responses.CODES) and calls[-1] == "CreateDeployment"


@pytest.fixture
def keyed_settings(tmp_path):
    project = copy_project(tmp_path / "project")
    set_stage(project, "prod", **USER_VALUES)
    set_stage(project, "prod", environment_variables={"XRAY_AUTH": "iam+api_key"})
    return load_stage(project, "prod")


def test_the_key_plan_and_association_are_made_once_and_a_changed_plan_is_patched(
        apigw, keyed_settings, caplog):
    client, api, calls = apigw
    caplog.set_level(logging.INFO, logger="deploy")
    first = ensure_api_key(client, keyed_settings, api)
    assert first.created == ["api key", "usage plan", "association"] and not first.updated
    calls.clear()
    again = ensure_api_key(client, keyed_settings, api)
    assert (again.key_id, again.created, again.updated, calls) == (first.key_id, [], [], [])
    changed = replace(keyed_settings, usage_plan=UsagePlan(quota_limit=7))
    assert ensure_api_key(client, changed, api).updated == ["usage plan"]
    assert calls == ["UpdateUsagePlan"]
    value = client.get_api_key(apiKey=first.key_id, includeValue=True)["value"]
    assert value not in caplog.text
    assert f"--api-key {first.key_id} --include-value" in caplog.text


def test_two_keys_of_the_same_name_are_refused_naming_both(apigw, keyed_settings):
    client, api, _ = apigw
    ids = [client.create_api_key(name="chest-xray-prod")["id"] for _ in range(2)]
    with pytest.raises(DeployError, match="2 API keys are named chest-xray-prod") as caught:
        ensure_api_key(client, keyed_settings, api)
    assert all(i in str(caught.value) for i in ids)


def test_the_plan_patch_is_empty_when_the_plan_matches_and_names_each_difference():
    plan = UsagePlan(2.5, 5, 100, "WEEK")
    current = {"throttle": {"rateLimit": 2.5, "burstLimit": 5},
               "quota": {"limit": 100, "period": "WEEK", "offset": 0},
               "apiStages": [{"apiId": "abc", "stage": "api"}]}
    assert plan_patch(current, plan, "abc", "api") == []
    assert plan_patch(current, replace(plan, throttle_rate_limit=3.0), "abc", "api") == [
        {"op": "replace", "path": "/throttle/rateLimit", "value": "3"}]
    assert plan_patch(current, plan, "new", "api") == [
        {"op": "add", "path": "/apiStages", "value": "new:api"}]
