"""The CloudFormation path under each XRAY_AUTH mode: the template `python -m deploy.package`
writes has the authorizer (and the API key requirement) on every method but the CORS
preflights and the page (GET /), API Gateway's own errors with CORS headers and our error shape,
and for api_key stages the key, the usage plan on the API's stage and their association. One
full build is shared with test_package.py; each mode repackages the same checkout from
Chalice's dependency cache."""
import json

import pytest

from deploy.gateway_responses import CODES, SWAGGER_KEY
from tests.support.packaging import built_once, built_variant, cfn_lint, translate

pytestmark = pytest.mark.build

POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"
PLAN = {"throttle_rate_limit": 2, "throttle_burst_limit": 4, "quota_limit": 1000,
        "quota_period": "MONTH"}
# mode -> (stage, its values); iam is the committed prod stage, as test_package.py builds it
MODES = {
    "none": ("dev", {}),
    "iam": ("prod", {}),
    "cognito": ("prod", {"environment_variables": {
        "XRAY_AUTH": "cognito", "XRAY_COGNITO_USER_POOL_ARNS": POOL}}),
    "api_key": ("prod", {"environment_variables": {"XRAY_AUTH": "api_key"}}),
    "iam+api_key": ("prod", {"environment_variables": {"XRAY_AUTH": "iam+api_key"}}),
    "cognito+api_key": ("prod", {"environment_variables": {
        "XRAY_AUTH": "cognito+api_key", "XRAY_COGNITO_USER_POOL_ARNS": POOL},
        "usage_plan": PLAN}),
}
OPEN = {("/", "get"), ("/openapi.json", "get")}  # and every options method
AUTHORIZERS = {"iam": "sigv4", "cognito": "cognito_user_pool"}


def template_of(tmp_path_factory, mode: str) -> dict:
    stage, values = MODES[mode]
    out = built_once(tmp_path_factory) if mode == "iam" else built_variant(
        tmp_path_factory, mode, stage, **values)
    return json.loads((out / "sam.json").read_text())


@pytest.fixture(scope="module", params=list(MODES))
def packaged(request, tmp_path_factory):
    return request.param, template_of(tmp_path_factory, request.param)


def swagger(template: dict) -> dict:
    return template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]


def test_every_method_but_the_preflights_and_the_page_carries_the_stages_auth(packaged):
    mode, template = packaged
    name = next((AUTHORIZERS[m] for m in AUTHORIZERS if m in mode), None)
    wanted = ([{"api_key": []}] if "api_key" in mode else []) + ([{name: []}] if name else [])
    methods = [(path, verb, spec) for path, verbs in swagger(template)["paths"].items()
               for verb, spec in verbs.items()]
    assert {(p, v) for p, v, _ in methods} >= {("/xray", "post"), ("/model", "get"),
                                               ("/xray", "options"), ("/", "get")}
    for path, verb, spec in methods:
        if verb == "options" or (path, verb) in OPEN:
            assert "security" not in spec, (mode, path, verb)
        else:
            assert spec.get("security", []) == wanted, (mode, path, verb)


def test_the_authorizer_is_declared_as_api_gateway_reads_it(packaged):
    mode, template = packaged
    definitions = swagger(template).get("securityDefinitions", {})
    expected = {AUTHORIZERS[m] for m in AUTHORIZERS if m in mode} | (
        {"api_key"} if "api_key" in mode else set())
    assert set(definitions) == expected
    if "cognito" in mode:
        assert definitions["cognito_user_pool"]["x-amazon-apigateway-authorizer"] == {
            "type": "cognito_user_pools", "providerARNs": [POOL]}
    if "iam" in mode:
        assert definitions["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    if "api_key" in mode:
        assert definitions["api_key"] == {"type": "apiKey", "name": "x-api-key",
                                          "in": "header"}


def test_the_gateway_responses_name_the_stages_origins_and_our_error_shape(packaged):
    mode, template = packaged
    responses = swagger(template)[SWAGGER_KEY]
    assert set(responses) == set(CODES)
    # dev allows two origins ("*": API Gateway cannot match a list); prod is same-origin only
    header = {"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"} \
        if MODES[mode][0] == "dev" else {}
    for response in responses.values():
        assert response["responseParameters"] == header
        assert '"Message": $context.error.messageString' in response["responseTemplates"][
            "application/json"]


def test_api_key_stages_get_the_key_the_plan_on_the_stage_and_the_association(packaged):
    mode, template = packaged
    resources = template["Resources"]
    keyed = {name for name, r in resources.items() if r["Type"].startswith(
        ("AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlan"))}
    if "api_key" not in mode:
        assert keyed == set() and "ApiKeyId" not in template.get("Outputs", {})
        return
    assert keyed == {"XrayApiKey", "XrayUsagePlan", "XrayUsagePlanKey"}
    plan = resources["XrayUsagePlan"]["Properties"]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "RestAPI"}, "Stage": {"Ref": "RestAPI.Stage"}}]
    expected = PLAN if mode == "cognito+api_key" else {
        "throttle_rate_limit": 5, "throttle_burst_limit": 10, "quota_limit": 5000,
        "quota_period": "DAY"}  # the defaults
    assert plan["Throttle"] == {"RateLimit": expected["throttle_rate_limit"],
                                "BurstLimit": expected["throttle_burst_limit"]}
    assert plan["Quota"] == {"Limit": expected["quota_limit"],
                             "Period": expected["quota_period"]}
    assert resources["XrayApiKey"]["Properties"]["Name"] == "chest-xray-prod"
    assert resources["XrayUsagePlanKey"]["Properties"] == {
        "KeyId": {"Ref": "XrayApiKey"}, "KeyType": "API_KEY",
        "UsagePlanId": {"Ref": "XrayUsagePlan"}}
    output = template["Outputs"]["ApiKeyId"]
    assert output["Value"] == {"Ref": "XrayApiKey"} and "--include-value" in output[
        "Description"]


def test_each_modes_template_passes_cfn_lint_as_sam_and_translated(packaged, tmp_path,
                                                                   monkeypatch):
    mode, template = packaged
    (tmp_path / "sam.json").write_text(json.dumps(template))
    linted = cfn_lint(tmp_path / "sam.json")
    assert linted.returncode == 0, linted.stdout + linted.stderr
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    plain = translate(template)
    if "api_key" in mode:  # SAM resolved the stage reference to the stage it makes
        stage = plain["Resources"]["XrayUsagePlan"]["Properties"]["ApiStages"][0]["Stage"]
        assert stage == {"Ref": "RestAPIapiStage"}, stage
        assert plain["Resources"]["RestAPIapiStage"]["Properties"]["StageName"] == "api"
    (tmp_path / "cfn.json").write_text(json.dumps(plain))
    linted = cfn_lint(tmp_path / "cfn.json")
    assert linted.returncode == 0, linted.stdout + linted.stderr
