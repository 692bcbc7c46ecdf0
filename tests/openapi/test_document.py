"""The document itself: a valid OpenAPI 3.1 document (openapi-spec-validator) listing exactly
the routes of app.routes, refusing to be built for a route it has no entry for, naming every
error class that can reach a client, with the security of each XRAY_AUTH mode as Chalice gives
it to API Gateway, its server the request's own base URL, and built without the heavy imports
a deploy must not pay for."""
import importlib.util
import json

import pytest
from chalice import Chalice
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from chalicelib import errors
from chalicelib.openapi import gateway
from chalicelib.openapi.document import UndocumentedRoute, build
from chalicelib.openapi.operations import INTERNAL, OPERATIONS
from chalicelib.openapi.schemas import view_errors
from chalicelib.settings import AUTH_CHOICES, PUBLIC_URL, Settings
from lambda_sim.context import LambdaContext
from lambda_sim.events import proxy_event
from tests.openapi.cases import NOT_REPRODUCIBLE
from tests.openapi.conftest import routes
from tests.openapi.test_answers import documented_items
from tests.support.serving import run_isolated, serving

POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"
MECHANISMS = {"iam": gateway.IAM, "cognito": gateway.COGNITO, "api_key": gateway.API_KEY}
# The STOW-RS routes' module, written on its own branch
DICOMWEB = "chalicelib.dicomweb"


def stage_documents(answered) -> dict:
    return {got.case.stage: got.contract.document for got in answered.values()}


def test_given_each_stages_served_document_then_it_is_valid_openapi_3_1(answered):
    for stage, document in stage_documents(answered).items():
        assert document["openapi"].startswith("3.1.")
        validate(document, cls=OpenAPIV31SpecValidator)  # raises, naming what is wrong


def test_given_app_routes_then_the_document_lists_exactly_their_methods(answered):
    document = answered["openapi"].contract.document
    listed = {(path, method.upper()) for path, methods in document["paths"].items()
              for method in methods}
    assert listed == {(path, method) for path, methods in routes().items() for method in methods}


def test_given_a_route_with_no_entry_when_the_document_is_built_then_it_is_refused():
    app = Chalice(app_name="contract-test")

    @app.route("/xray", methods=["POST"], content_types=["image/png"])
    def known():
        return {}

    @app.route("/something-new", methods=["GET"])
    def new_route():
        return {}

    with pytest.raises(UndocumentedRoute, match="GET /something-new"):
        build(app.routes, Settings.from_env({}), "contract-test")


def test_given_a_path_parameter_with_no_entry_when_the_document_is_built_then_it_is_refused():
    app = Chalice(app_name="contract-test")

    @app.route("/xray/jobs/{ticket}", methods=["OPTIONS"])
    def preflight(ticket):
        return {}

    with pytest.raises(UndocumentedRoute, match="ticket"):
        build(app.routes, Settings.from_env({}), "contract-test")


def stale_marks(key):
    if key[0].startswith("/studies") and importlib.util.find_spec(DICOMWEB) is None:
        return [pytest.mark.xfail(strict=True, reason=f"the STOW-RS routes come with {DICOMWEB}"
                                                      ", on its own branch")]
    return []


@pytest.mark.parametrize("key", [pytest.param(key, id=" ".join(key), marks=stale_marks(key))
                                 for key in OPERATIONS])
def test_given_an_entry_of_the_operations_table_then_its_route_exists(key):
    path, method = key
    assert method in routes().get(path, {}), f"{method} {path} is documented but not routed"


def test_given_errors_py_then_each_class_a_client_can_get_is_documented_on_some_route(answered):
    document = answered["openapi"].contract.document
    documented = {item[3] for item in documented_items(document)}
    for error in view_errors():
        if error is errors.ClientError:  # the base class: never raised as itself
            continue
        if error in INTERNAL:
            assert error.__name__ not in documented
        else:
            assert error.__name__ in documented, f"{error.__name__} is on no route"


PROBE = r'''
import json, sys
import app
from chalice.deploy.swagger import CFNSwaggerGenerator
heavy = sorted(m for m in ("numpy", "PIL", "pydicom", "highdicom", "torch", "onnxruntime")
               if m in sys.modules)
document = app.get_openapi()
heavy_after = sorted(m for m in ("numpy", "PIL", "pydicom", "highdicom", "torch", "onnxruntime")
                     if m in sys.modules)
swagger = CFNSwaggerGenerator().generate_swagger(app.app)
print(json.dumps({"document": document, "swagger": swagger.get("securityDefinitions", {}),
                  "heavy": heavy_after, "heavy_before": heavy}))
'''


@pytest.fixture(scope="module")
def by_mode():
    """XRAY_AUTH mode -> what app.py, imported under it in a fresh interpreter, documents."""
    seen: dict = {}

    def probe(mode: str) -> dict:
        if mode not in seen:
            env = {"XRAY_AUTH": mode, "AWS_DEFAULT_REGION": "eu-west-1"}
            if "cognito" in mode:
                env["XRAY_COGNITO_USER_POOL_ARNS"] = POOL
            seen[mode] = json.loads(run_isolated(PROBE, **env).splitlines()[-1])
        return seen[mode]
    return probe


@pytest.mark.parametrize("mode", AUTH_CHOICES)
def test_given_an_auth_mode_then_each_protected_route_needs_all_its_mechanisms(mode, by_mode):
    probed = by_mode(mode)
    document = probed["document"]
    validate(document, cls=OpenAPIV31SpecValidator)
    mechanisms = () if mode == "none" else tuple(mode.split("+"))
    scheme_of = {"iam": "sigv4", "cognito": "cognito_user_pool", "api_key": "api_key"}
    wanted = {scheme_of[m]: [] for m in mechanisms}
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if method == "options" or path in ("/", "/openapi.json"):
                assert operation["security"] == [], (path, method)
            else:
                assert operation["security"] == ([wanted] if wanted else []), (path, method)
    schemes = document.get("components", {}).get("securitySchemes", {})
    # what Chalice gives API Gateway, less the authorizer's configuration (the pool's ARN)
    given = {name: {key: value for key, value in scheme.items()
                    if key != "x-amazon-apigateway-authorizer"}
             for name, scheme in probed["swagger"].items()}
    assert {name: {key: value for key, value in scheme.items() if key != "description"}
            for name, scheme in schemes.items()} == given
    assert all(scheme["description"] for scheme in schemes.values())
    assert "123456789012" not in json.dumps(document)  # the pool ARN names the account


@pytest.mark.parametrize("mode", [mode for mode in AUTH_CHOICES if mode != "none"])
def test_given_an_auth_mode_then_it_adds_only_api_gateways_refusals_of_its_mechanisms(
        mode, by_mode):
    unauthenticated = documented_items(by_mode("none")["document"])
    added = set(documented_items(by_mode(mode)["document"])) - set(unauthenticated)
    assert {what for *_, what in added} == set().union(*(
        {refusal.code for refusal in MECHANISMS[m]} for m in mode.split("+")))
    assert all(what in NOT_REPRODUCIBLE for *_, what in added)
    # on the protected routes only: every method but the page's, the contract's, preflights
    assert {(method, path) for method, path, *_ in added} == {
        (method.upper(), path) for path, methods in by_mode(mode)["document"]["paths"].items()
        for method in methods if method != "options" and path not in ("/", "/openapi.json")}


def test_given_a_fresh_interpreter_when_the_document_is_built_then_nothing_heavy_is_imported(
        by_mode):
    probed = by_mode("none")
    assert probed["heavy_before"] == [] and probed["heavy"] == []


def test_given_a_request_through_api_gateway_then_the_server_is_its_stage_url(demo_store):
    import app as app_module
    with serving(demo_store):
        response = app_module.app(proxy_event("GET", "/openapi.json"), LambdaContext())
    assert response["statusCode"] == 200
    servers = json.loads(response["body"])["servers"]
    assert servers == [{"url": "https://abc123.execute-api.us-east-1.amazonaws.com/api",
                        "description": "This stage"}]


def test_given_a_public_url_then_the_server_is_that_url(demo_store):
    with serving(demo_store, **{PUBLIC_URL: "https://xray.example.org/v1"}) as client:
        document = json.loads(client.http.get("/openapi.json").body)
    assert document["servers"][0]["url"] == "https://xray.example.org/v1"
