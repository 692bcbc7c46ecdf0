"""TEST-ONLY shim over moto 5.2.5's gaps, applied in the test process that runs the moto server.

What moto lacks, and what this does about it (nothing else is changed):
1. ImportRestApi / PutRestApi accept only OpenAPI 3 with info.description; Chalice sends
   Swagger 2.0. The shim turns Chalice's Swagger into the subset moto reads: paths, methods and
   integrations. It also keeps what moto ignores and we must check: the
   x-amazon-apigateway-binary-media-types list and the endpointConfigurationTypes parameter.
   Mock integrations (CORS preflight, which crash moto's importer) are left out. Each
   method's `security` (Chalice's authorizer and api_key_required), which moto's importer
   drops, becomes the method's authorizationType and apiKeyRequired, as API Gateway imports it.
2. UpdateFunctionConfiguration(FileSystemConfigs=...) is accepted and silently dropped. The shim
   stores it and returns it from GetFunctionConfiguration, as Lambda does, so the hook's
   read-back is exercised; and it records every raw UpdateFunctionConfiguration request body,
   so a test sees exactly what the hook sent (a shim that stored anything would hide a bug).
3. Access point ids are fsap- + 8 hex digits in moto, 17 in AWS; Lambda (and cfn-lint) accept
   only 17, and so does our config validation. The shim gives new access points 17.
4. Nothing is changed for API keys, usage plans and gateway responses (moto has them); the shim
   only records which of API Gateway's write operations each request was, so a test sees what
   a deploy created or updated.
5. GetBucketNotificationConfiguration leaves out EventBridgeConfiguration although moto stores
   it (and emits the events). The shim adds it to the answer, as S3 gives it.
6. An EventBridge rule's Lambda target raises NotImplementedError inside moto (it cannot run
   the code), which silently stops the delivery to every later target and rule of the event;
   and a schedule-only rule (no pattern) matches every event. The shim records each delivery to
   a Lambda target (rule, function ARN, event) instead, delivers to the other targets as moto
   does, and lets schedule-only rules match no event, as EventBridge does.
7. UpdateFunctionCode(Architectures=[...]) is accepted and the architecture silently kept;
   Lambda switches it (Chalice sends it when a stage's lambda_architecture changed). The shim
   sets it through moto's own validating setter before the code update.
"""
import contextlib
import copy
import json
import re
from typing import Any, Dict, Iterator, List, Optional
from urllib.parse import unquote

from moto.apigateway.models import APIGatewayBackend, RestAPI
from moto.apigateway.responses import APIGatewayResponse
from moto.apigateway.utils import deserialize_body
from moto.awslambda.models import LambdaFunction
from moto.awslambda.responses import LambdaResponse
from moto.efs.models import AccessPoint
from moto.events.models import Rule
from moto.moto_api._internal import mock_random
from moto.s3.responses import S3Response

BINARY_TYPES = "x-amazon-apigateway-binary-media-types"
# securityDefinitions' x-amazon-apigateway-authtype -> API Gateway's authorizationType
AUTH_TYPES = {"awsSigv4": "AWS_IAM", "cognito_user_pools": "COGNITO_USER_POOLS"}
# API Gateway's write operations that a deploy's API key and gateway-response steps may send
RECORDED = ("create_api_key", "update_api_key", "create_usage_plan", "update_usage_plan",
            "create_usage_plan_key", "put_gateway_response", "create_deployment")


@contextlib.contextmanager
def moto_shim(update_requests: List[Dict[str, Any]], apigateway_calls: List[str],
              lambda_events: Optional[List[Dict[str, Any]]] = None) -> Iterator[None]:
    lambda_events = [] if lambda_events is None else lambda_events
    originals = {
        **{(APIGatewayBackend, name): getattr(APIGatewayBackend, name) for name in RECORDED},
        (APIGatewayResponse, "import_rest_api"): APIGatewayResponse.import_rest_api,
        (APIGatewayBackend, "put_rest_api"): APIGatewayBackend.put_rest_api,
        (LambdaResponse, "update_function_configuration"):
            LambdaResponse.update_function_configuration,
        (LambdaFunction, "update_configuration"): LambdaFunction.update_configuration,
        (LambdaFunction, "get_configuration"): LambdaFunction.get_configuration,
        (LambdaFunction, "update_function_code"): LambdaFunction.update_function_code,
        (AccessPoint, "__init__"): AccessPoint.__init__,
        (S3Response, "get_bucket_notification"): S3Response.get_bucket_notification,
        (Rule, "send_to_targets"): Rule.send_to_targets,
    }
    put_rest_api = APIGatewayBackend.put_rest_api

    def import_rest_api(self: APIGatewayResponse) -> Any:
        doc = deserialize_body(self.body)
        if "swagger" not in doc:
            return originals[(APIGatewayResponse, "import_rest_api")](self)
        types = self.querystring.get("endpointConfigurationTypes") or ["EDGE"]
        api = self.backend.create_rest_api(
            name=doc["info"]["title"], description=doc["info"].get("description", ""),
            endpoint_configuration={"types": types})
        self.backend.put_rest_api(api.id, doc, fail_on_warnings=False, mode="overwrite")
        return 200, {}, json.dumps(api.to_dict())

    def put_swagger(self: APIGatewayBackend, function_id: str, api_doc: Dict[str, Any],
                    fail_on_warnings: bool, mode: str = "merge") -> Any:
        if "swagger" not in api_doc:
            return put_rest_api(self, function_id, api_doc, fail_on_warnings, mode)
        api = put_rest_api(self, function_id, _as_openapi3(api_doc), False, mode)
        api.binaryMediaTypes = list(api_doc.get(BINARY_TYPES, []))
        _apply_security(api, api_doc)
        return api

    def recorder(name: str) -> Any:
        def record(self: APIGatewayBackend, *args: Any, **kwargs: Any) -> Any:
            apigateway_calls.append(name)
            return originals[(APIGatewayBackend, name)](self, *args, **kwargs)
        return record

    def record_update(self: LambdaResponse) -> Any:
        update_requests.append({"function": unquote(self.path.rsplit("/", 2)[-2]),
                                "body": json.loads(self.body or b"{}")})
        return originals[(LambdaResponse, "update_function_configuration")](self)

    def update_configuration(self: LambdaFunction, config_updates: Dict[str, Any]) -> Any:
        if "FileSystemConfigs" in config_updates:
            self.shim_file_system_configs = config_updates["FileSystemConfigs"]
        return originals[(LambdaFunction, "update_configuration")](self, config_updates)

    def get_configuration(self: LambdaFunction, on_create: bool = False) -> Dict[str, Any]:
        config = originals[(LambdaFunction, "get_configuration")](self, on_create)
        if getattr(self, "shim_file_system_configs", None):
            config["FileSystemConfigs"] = self.shim_file_system_configs
        return config

    def update_function_code(self: LambdaFunction, updated_spec: Dict[str, Any]) -> Any:
        if "Architectures" in updated_spec:
            self.architectures = updated_spec["Architectures"]
        return originals[(LambdaFunction, "update_function_code")](self, updated_spec)

    def access_point_init(self: AccessPoint, *args: Any, **kwargs: Any) -> None:
        originals[(AccessPoint, "__init__")](self, *args, **kwargs)
        short = self.access_point_id
        self.access_point_id = f"fsap-{mock_random.get_random_hex(17)}"
        self.access_point_arn = self.access_point_arn.replace(short, self.access_point_id)

    def get_bucket_notification(self: S3Response) -> Any:
        answer = originals[(S3Response, "get_bucket_notification")](self)
        config = self.backend.get_bucket_notification_configuration(self.bucket_name)
        if config is None or config.event_bridge is None:
            return answer
        status, headers, body = answer
        text = body.decode() if isinstance(body, bytes) else body
        text = re.sub(r"<NotificationConfiguration([^>]*)/>",
                      r"<NotificationConfiguration\1></NotificationConfiguration>", text)
        text = text.replace("</NotificationConfiguration>", "<EventBridgeConfiguration>"
                            "</EventBridgeConfiguration></NotificationConfiguration>")
        return status, headers, text

    def send_to_targets(self: Rule, event: Dict[str, Any], transform_input: bool = True) -> None:
        if self.scheduled_expression and not self.event_pattern.get_pattern():
            return  # a schedule, not a pattern: EventBridge matches no event to it
        if not self.event_pattern.matches_event(event):
            return
        functions = [t for t in self.targets if t["Arn"].split(":")[2] == "lambda"]
        for target in functions:
            lambda_events.append({"rule": self.name, "function": target["Arn"],
                                  "event": copy.deepcopy(event)})
        saved = self.targets
        self.targets = [t for t in saved if t not in functions]
        try:
            originals[(Rule, "send_to_targets")](self, event, transform_input)
        finally:
            self.targets = saved

    for name in RECORDED:
        setattr(APIGatewayBackend, name, recorder(name))
    APIGatewayResponse.import_rest_api = import_rest_api
    APIGatewayBackend.put_rest_api = put_swagger
    LambdaResponse.update_function_configuration = record_update
    LambdaFunction.update_configuration = update_configuration
    LambdaFunction.get_configuration = get_configuration
    LambdaFunction.update_function_code = update_function_code
    AccessPoint.__init__ = access_point_init  # type: ignore[method-assign]
    S3Response.get_bucket_notification = get_bucket_notification
    Rule.send_to_targets = send_to_targets
    try:
        yield
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)


def _apply_security(api: RestAPI, swagger: Dict[str, Any]) -> None:
    definitions = swagger.get("securityDefinitions", {})
    for path, methods in swagger.get("paths", {}).items():
        resource = api.get_resource_for_path(path)
        for method, spec in methods.items():
            if method.upper() not in resource.resource_methods:
                continue  # a mock integration left out above
            target = resource.resource_methods[method.upper()]
            for requirement in spec.get("security", []):
                (name,) = requirement
                if name == "api_key":
                    target.api_key_required = True
                else:
                    target.authorization_type = AUTH_TYPES[
                        definitions[name]["x-amazon-apigateway-authtype"]]


def _as_openapi3(swagger: Dict[str, Any]) -> Dict[str, Any]:
    paths: Dict[str, Any] = {}
    for path, methods in swagger.get("paths", {}).items():
        kept = {}
        for method, spec in methods.items():
            integration = spec.get("x-amazon-apigateway-integration", {})
            if integration.get("type") == "mock":
                continue
            kept[method] = {"responses": spec.get("responses", {}),
                            "x-amazon-apigateway-integration": integration}
        paths[path] = kept
    return {"openapi": "3.0.1",
            "info": {"title": swagger["info"]["title"],
                     "description": swagger["info"].get("description", ""),
                     "version": swagger["info"].get("version", "1.0")},
            "paths": paths}
