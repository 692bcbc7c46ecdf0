"""The one deploy command:

    .venv/bin/python -m deploy --stage dev

1. validates the stage's values in .chalice/config.json (offline: ids, ARN, buckets, mount path,
   limits, the jobs path's variables), for every function as Chalice resolves them (api_handler,
   efs_loader, job_worker, job_notifier, job_sweeper),
2. writes each function's policy, .chalice/policy-<stage>[-loader|-worker|-notifier|-sweeper]
   .json (deploy/policy.py: the API and the worker mount read-only, the loader read-write and
   reads the upload bucket's efs-upload/ prefix, each jobs function touches only its prefixes
   of the jobs bucket),
3. checks the account: subnets, security groups, access point region/VPC, mount targets, NFS;
   the upload bucket's region; the jobs bucket's region (when it exists); the subnets' route
   to S3; the SES sender's verification (when XRAY_SES_SENDER is set) and the webhook secret
   (when XRAY_WEBHOOK_SECRET_NAME is set),
4. writes vendor/ (deploy/vendor.py: onnxruntime and highdicom for the stage's
   lambda_architecture, x86_64 or arm64, as Chalice picks requirements.txt's wheels for it;
   without what the function never loads; wheels downloaded once into build/lambda-wheels/),
5. creates the jobs bucket when it does not exist (in the functions' region),
6. runs `chalice deploy --stage <stage>` (the functions, the REST API, and the EventBridge rules
   of the worker, the notifier and the sweeper's schedule; the zip holds vendor/ as it is),
7. attaches the access point to the functions that mount it (deploy/efs_hook.py), waits for the
   updates and reads them back,
8. configures the jobs bucket (deploy/jobs_bucket.py: encryption, public access block,
   lifecycle, CORS for the API's origin, EventBridge notifications on) and reads the rules back
   (deploy/triggers.py): each holds the stage's pattern or schedule and targets its function,
9. puts API Gateway's own error answers with CORS headers on the REST API
   (deploy/gateway_responses.py) and, when XRAY_AUTH has api_key, makes the API key, the usage
   plan and their association (deploy/api_keys.py); each only when missing or changed.

Steps 1-4 fail before anything is created. The bucket's notifications are turned on after the
worker has its EFS mount, so no upload wakes a worker that cannot load the model. AWS_ENDPOINT_URL
is honoured by boto3 and Chalice alike (the tests point both at a local moto server).
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

from deploy import gateway_responses, jobs_bucket, vendor
from deploy.api_keys import ensure_api_key
from deploy.aws_checks import (
    check_jobs_bucket,
    check_network,
    check_region,
    check_ses_sender,
    check_upload_path,
    check_webhook_secret,
)
from deploy.chalice_files import event_rules, rest_api_id
from deploy.efs_hook import attach_all, deployed_functions
from deploy.errors import DeployError
from deploy.policy import write_policy
from deploy.settings import StageSettings, load_stage
from deploy.triggers import check_triggers

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
    region = session.region_name
    check_region(stage, settings.region, region)
    ec2, efs, s3 = session.client("ec2"), session.client("efs"), session.client("s3")
    networks = {(tuple(f.subnet_ids), tuple(f.security_group_ids))
                for f in settings.efs_functions}
    for subnets, groups in sorted(networks):
        check_network(ec2, efs, stage, list(subnets), list(groups), settings.access_point_id)
    reach = check_upload_path(s3, ec2, stage, settings.upload_bucket, region,
                              list(settings.loader.subnet_ids))
    log.info("the loader reaches s3://%s through the %s", settings.upload_bucket, reach)
    bucket = settings.jobs_bucket
    for subnets in sorted({tuple(f.subnet_ids) for f in (settings.api, settings.worker)}):
        exists, reach = check_jobs_bucket(s3, ec2, stage, bucket, region, list(subnets))
        log.info("the API and the worker reach s3://%s through the %s%s", bucket, reach,
                 "" if exists else " (the bucket does not exist yet: it will be created)")
    if settings.jobs.ses_sender:
        verified = check_ses_sender(session.client("ses"), stage, settings.jobs.ses_sender,
                                    region)
        log.info("the notifier's SES sender is verified (its %s)", verified)
    if settings.jobs.webhook_secret_name:
        arn = check_webhook_secret(session.client("ssm"), stage,
                                   settings.jobs.webhook_secret_name, region)
        log.info("the notifier signs webhooks with the secret %s", arn)
    if not skip_chalice:
        vendor.build(project_dir, settings.architecture, log=log.info)
    jobs_bucket.ensure_bucket(s3, settings, region)
    if not skip_chalice:
        log.info("running chalice deploy --stage %s", stage)
        done = subprocess.run([chalice_command(), "--project-dir", str(project_dir), "deploy",
                               "--stage", stage], env=os.environ.copy())
        if done.returncode != 0:
            raise DeployError(f"chalice deploy failed (exit {done.returncode}); the EFS access "
                              "point was not attached, the jobs bucket not configured")
    arns = deployed_functions(project_dir, stage, settings)
    attach_all(session.client("lambda"), ec2, efs, session.client("iam"), settings, arns)
    apigw, api_id = session.client("apigateway"), rest_api_id(project_dir, stage)
    jobs_bucket.put_configuration(s3, settings, api_id, region)
    check_triggers(session.client("events"), settings, event_rules(project_dir, stage), arns)
    gateway_responses.apply(apigw, api_id, settings.api_stage, settings.cors_origins)
    if settings.auth.api_key:
        ensure_api_key(apigw, settings, api_id)
    log.info("stage %s deployed: %s, EFS %s at %s, jobs in s3://%s", stage,
             ", ".join(arns.values()), settings.access_point_arn, settings.mount_path, bucket)
    return settings


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, help="a stage of .chalice/config.json")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(),
                        help="the project folder (default: the current one)")
    parser.add_argument("--hook-only", action="store_true",
                        help="skip chalice deploy: only the steps after it (EFS, the jobs "
                        "bucket, Gateway Responses, API key) on what was deployed earlier")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="deploy: %(message)s")
    try:
        deploy(args.project_dir.resolve(), args.stage, skip_chalice=args.hook_only)
    except DeployError as error:
        print(f"deploy: error: {error}", file=sys.stderr)
        return 2
    return 0
