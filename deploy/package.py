"""The CloudFormation path: a deployable SAM template instead of `chalice deploy`.

    .venv/bin/python -m deploy.package --stage prod --out build/cloudformation

validates the stage offline (as `python -m deploy` does), writes each function's policy file
(.chalice/policy-<stage>[-loader|-worker|-notifier|-sweeper].json: Chalice puts each into its
function's own role), writes vendor/ (deploy/vendor.py: onnxruntime and highdicom without what
the function never loads, zipped by Chalice as it is), and runs
`chalice package --stage <stage> --merge-template <merge> <out>`, where the merge template adds
what Chalice cannot express: the FileSystemConfigs of the functions that mount EFS (the API, the
loader, the job worker; their VpcConfig restated so that everything EFS needs is visible in one
file), the jobs bucket (deploy/jobs_bucket.py: created by the stack, since CloudFormation cannot
turn on EventBridge notifications of a bucket it did not create; its CORS rule names the REST
API's origin with Fn::Sub), API Gateway's own error answers with CORS headers in the REST API's
Swagger (deploy/gateway_responses.py), and, when XRAY_AUTH has api_key, the API key, the usage
plan on the API's stage and their association (what deploy/api_keys.py makes on the
`python -m deploy` path). Chalice itself turns the worker's and the notifier's on_cw_event into
CloudWatchEvent events (EventBridge rules) and the sweeper's schedule into a Schedule event;
check_merged reads all of it back. <out> then holds sam.json, deployment.zip and
efs-merge-template.json. Needs no AWS access.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from deploy import gateway_responses, jobs_bucket, vendor
from deploy.api_keys import read_value_command
from deploy.deploy import chalice_command
from deploy.errors import DeployError
from deploy.policy import write_policy
from deploy.settings import API, SWEEPER, FunctionSettings, StageSettings, load_stage
from deploy.triggers import event_patterns, sweep_schedule

MERGE_NAME = "efs-merge-template.json"
SAM_FUNCTION = "AWS::Serverless::Function"
REST_API = "RestAPI"  # Chalice's logical id of the AWS::Serverless::Api
API_KEY, USAGE_PLAN, USAGE_PLAN_KEY = "XrayApiKey", "XrayUsagePlan", "XrayUsagePlanKey"


def logical_id(function: FunctionSettings) -> str:
    """Chalice's logical id: APIHandler for the REST handler, else its CamelCase name
    (efs_loader -> EfsLoader)."""
    from chalice.utils import to_cfn_resource_name
    return "APIHandler" if function.name == API else to_cfn_resource_name(function.name)


def merge_template(settings: StageSettings) -> Dict[str, Any]:
    resources: Dict[str, Any] = {logical_id(function): {"Properties": {
        "FileSystemConfigs": settings.file_system_configs,
        "VpcConfig": {"SubnetIds": function.subnet_ids,
                      "SecurityGroupIds": function.security_group_ids},
    }} for function in settings.efs_functions}
    resources[jobs_bucket.LOGICAL_ID] = jobs_bucket.cloudformation_resource(settings)
    resources[REST_API] = {"Properties": {"DefinitionBody": {
        gateway_responses.SWAGGER_KEY: gateway_responses.gateway_responses(
            settings.cors_origins)}}}
    template: Dict[str, Any] = {"Resources": resources}
    if settings.auth.api_key:
        resources.update(api_key_resources(settings))
        template["Outputs"] = {"ApiKeyId": {
            "Value": {"Ref": API_KEY},
            "Description": "Read the key's value with: "
                           + read_value_command("<this id>")}}
    return template


def api_key_resources(settings: StageSettings) -> Dict[str, Any]:
    """The key, the plan on the REST API's stage and the association, named as the deploy
    command names them. `RestAPI.Stage` is SAM's reference to the API's stage, so the plan is
    made after the stage exists."""
    plan = settings.usage_plan
    assert plan is not None
    name = settings.resource_name
    return {
        API_KEY: {"Type": "AWS::ApiGateway::ApiKey", "Properties": {
            "Name": name, "Enabled": True,
            "Description": f"{name}: the API key of stage {settings.stage}"}},
        USAGE_PLAN: {"Type": "AWS::ApiGateway::UsagePlan", "Properties": {
            "UsagePlanName": name,
            "Description": f"{name}: throttle and quota of stage {settings.stage}",
            "ApiStages": [{"ApiId": {"Ref": REST_API}, "Stage": {"Ref": f"{REST_API}.Stage"}}],
            "Throttle": {"RateLimit": plan.throttle_rate_limit,
                         "BurstLimit": plan.throttle_burst_limit},
            "Quota": {"Limit": plan.quota_limit, "Period": plan.quota_period}}},
        USAGE_PLAN_KEY: {"Type": "AWS::ApiGateway::UsagePlanKey", "Properties": {
            "KeyId": {"Ref": API_KEY}, "KeyType": "API_KEY",
            "UsagePlanId": {"Ref": USAGE_PLAN}}},
    }


def check_merged(settings: StageSettings, template: Dict[str, Any]) -> None:
    """A merge into a logical id Chalice did not make would add a typeless resource; and the
    triggers must be the stage's (deploy/triggers.py)."""
    resources = template["Resources"]
    for function in settings.functions:
        resource = resources.get(logical_id(function), {})
        properties = resource.get("Properties", {})
        mounts = properties.get("FileSystemConfigs")
        if resource.get("Type") != SAM_FUNCTION or mounts != (
                settings.file_system_configs if function.mounts_efs else None):
            raise DeployError(f"chalice package made no {SAM_FUNCTION} "
                              f"{logical_id(function)} for {function.name}: the merge template "
                              "no longer matches Chalice's logical ids")
        if not function.in_vpc and "VpcConfig" in properties:
            raise DeployError(f"{logical_id(function)} ({function.name}) is in a VPC, where it "
                              "would reach neither SES nor webhook URLs without a NAT gateway")
    for name, pattern in event_patterns(settings).items():
        _check_event(resources, settings.function(name), "CloudWatchEvent", "Pattern", pattern)
    _check_event(resources, settings.function(SWEEPER), "Schedule", "Schedule",
                 sweep_schedule(settings))
    bucket = resources.get(jobs_bucket.LOGICAL_ID, {})
    if bucket.get("Type") != "AWS::S3::Bucket" or bucket.get("Properties", {}).get(
            "BucketName") != settings.jobs_bucket:
        raise DeployError(f"the template holds no AWS::S3::Bucket {jobs_bucket.LOGICAL_ID} "
                          f"named {settings.jobs_bucket}")
    body = template["Resources"].get(REST_API, {}).get("Properties", {}).get("DefinitionBody")
    if not isinstance(body, dict) or gateway_responses.SWAGGER_KEY not in body \
            or "paths" not in body:
        raise DeployError(f"chalice package made no {REST_API} with a Swagger DefinitionBody "
                          "to merge the Gateway Responses into: the merge template no longer "
                          "matches Chalice's logical ids")


def _check_event(resources: Dict[str, Any], function: FunctionSettings, kind: str, field: str,
                 wanted: Any) -> None:
    events = resources.get(logical_id(function), {}).get("Properties", {}).get("Events") or {}
    found = [e.get("Properties", {}).get(field) for e in events.values() if e.get("Type") == kind]
    if found != [wanted]:
        raise DeployError(f"chalice package gave {logical_id(function)} ({function.name}) the "
                          f"{kind} events {found!r}, not the stage's {wanted!r}: app.py was "
                          "imported with other values than the stage's")


def package(project_dir: Path, stage: str, out: Path) -> Path:
    settings = load_stage(project_dir, stage)
    for warning in settings.warnings:
        print(f"package: WARNING: {warning}", file=sys.stderr)
    write_policy(settings)
    vendor.build(project_dir, settings.architecture,
                 log=lambda message: print(f"package: {message}", file=sys.stderr))
    merge = merge_template(settings)
    with tempfile.TemporaryDirectory() as scratch:
        merge_file = Path(scratch) / MERGE_NAME
        merge_file.write_text(json.dumps(merge, indent=2) + "\n", encoding="utf-8")
        # Chalice wants a region although packaging calls no AWS; the access point's is right.
        env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION")
               or settings.region}
        done = subprocess.run([chalice_command(), "--project-dir", str(project_dir), "package",
                               "--stage", stage, "--pkg-format", "cloudformation",
                               "--merge-template", str(merge_file), str(out)], env=env)
        if done.returncode != 0:
            raise DeployError(f"chalice package failed (exit {done.returncode})")
    check_merged(settings, json.loads((out / "sam.json").read_text(encoding="utf-8")))
    (out / MERGE_NAME).write_text(json.dumps(merge, indent=2) + "\n", encoding="utf-8")
    return out / "sam.json"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.package",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    try:
        template = package(args.project_dir.resolve(), args.stage, args.out.resolve())
    except DeployError as error:
        print(f"package: error: {error}", file=sys.stderr)
        return 2
    print(f"package: wrote {template} (deploy it with aws cloudformation package + deploy)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
