"""The one deploy command:

    .venv/bin/python -m deploy --stage dev

1. validates the stage's values in .chalice/config.json (offline: ids, ARN, bucket, mount path,
   limits), for both functions as Chalice resolves them (api_handler and efs_loader),
2. writes .chalice/policy-<stage>.json (API: logs, VPC interfaces, ClientMount on our access
   point) and .chalice/policy-<stage>-loader.json (loader: the same plus ClientWrite, and
   s3:GetObject on the upload bucket's efs-upload/ prefix),
3. checks the account: subnets, security groups, access point region/VPC, mount targets, NFS;
   the upload bucket's region and the subnets' route to S3,
4. runs `chalice deploy --stage <stage>`,
5. attaches the access point to both functions (deploy/efs_hook.py), waits for the updates and
   reads them back,
6. puts API Gateway's own error answers with CORS headers on the REST API
   (deploy/gateway_responses.py) and, when XRAY_AUTH has api_key, makes the API key, the usage
   plan and their association (deploy/api_keys.py); each only when missing or changed.

Steps 1-3 fail before anything is deployed. AWS_ENDPOINT_URL is honoured by boto3 and Chalice
alike (the tests point both at a local moto server).
"""
import argparse
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import boto3

from deploy import gateway_responses
from deploy.api_keys import ensure_api_key
from deploy.aws_checks import check_network, check_region, check_upload_path
from deploy.chalice_files import rest_api_id
from deploy.efs_hook import attach_all, deployed_functions
from deploy.errors import DeployError
from deploy.policy import write_policy
from deploy.settings import StageSettings, load_stage

log = logging.getLogger("deploy")


def chalice_command() -> str:
    """The chalice beside this interpreter (the project venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "chalice"
    found = str(beside) if beside.exists() else shutil.which("chalice")
    if not found:
        raise DeployError("chalice is not installed: run scripts/setup")
    return found


def deploy(project_dir: Path, stage: str, skip_chalice: bool = False) -> StageSettings:
    settings = load_stage(project_dir, stage)
    for warning in settings.warnings:
        log.warning("WARNING: %s", warning)
    for name in write_policy(settings):
        log.info("wrote .chalice/%s", name)
    session = boto3.session.Session()
    if not session.region_name:
        raise DeployError("no AWS region: set AWS_DEFAULT_REGION (or the profile's region), "
                          f"e.g. {settings.region}, the access point's")
    check_region(stage, settings.region, session.region_name)
    ec2, efs = session.client("ec2"), session.client("efs")
    networks = {(tuple(f.subnet_ids), tuple(f.security_group_ids)) for f in settings.functions}
    for subnets, groups in sorted(networks):
        check_network(ec2, efs, stage, list(subnets), list(groups), settings.access_point_id)
    reach = check_upload_path(session.client("s3"), ec2, stage, settings.upload_bucket,
                              session.region_name, list(settings.loader.subnet_ids))
    log.info("the loader reaches s3://%s through the %s", settings.upload_bucket, reach)
    if not skip_chalice:
        log.info("running chalice deploy --stage %s", stage)
        done = subprocess.run([chalice_command(), "--project-dir", str(project_dir), "deploy",
                               "--stage", stage], env=os.environ.copy())
        if done.returncode != 0:
            raise DeployError(f"chalice deploy failed (exit {done.returncode}); the EFS access "
                              "point was not attached")
    arns = deployed_functions(project_dir, stage, settings)
    attach_all(session.client("lambda"), ec2, efs, session.client("iam"), settings, arns)
    apigw, api_id = session.client("apigateway"), rest_api_id(project_dir, stage)
    gateway_responses.apply(apigw, api_id, settings.api_stage, settings.cors_origins)
    if settings.auth.api_key:
        ensure_api_key(apigw, settings, api_id)
    log.info("stage %s deployed: %s, EFS %s at %s", stage, ", ".join(arns.values()),
             settings.access_point_arn, settings.mount_path)
    return settings


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, help="a stage of .chalice/config.json")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(),
                        help="the project folder (default: the current one)")
    parser.add_argument("--hook-only", action="store_true",
                        help="skip chalice deploy: only the steps after it (EFS, Gateway "
                        "Responses, API key) on what was deployed earlier")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="deploy: %(message)s")
    try:
        deploy(args.project_dir.resolve(), args.stage, skip_chalice=args.hook_only)
    except DeployError as error:
        print(f"deploy: error: {error}", file=sys.stderr)
        return 2
    return 0
