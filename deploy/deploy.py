"""The one deploy command:

    .venv/bin/python -m deploy --stage dev

1. validates the stage's values in .chalice/config.json (offline: ids, ARN, mount path, limits),
2. writes .chalice/policy-<stage>.json (logs, VPC interfaces, ClientMount on our access point),
3. checks the account: subnets, security groups, access point region/VPC, mount targets, NFS,
4. runs `chalice deploy --stage <stage>`,
5. attaches the access point (deploy/efs_hook.py), waits for the update and reads it back.

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

from deploy.aws_checks import check_network, check_region
from deploy.efs_hook import attach, deployed_function
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
    if write_policy(settings):
        log.info("wrote %s", settings.policy_file.relative_to(project_dir))
    session = boto3.session.Session()
    if not session.region_name:
        raise DeployError("no AWS region: set AWS_DEFAULT_REGION (or the profile's region), "
                          f"e.g. {settings.region}, the access point's")
    check_region(stage, settings.region, session.region_name)
    ec2, efs = session.client("ec2"), session.client("efs")
    check_network(ec2, efs, stage, settings.subnet_ids, settings.security_group_ids,
                  settings.access_point_id)
    if not skip_chalice:
        log.info("running chalice deploy --stage %s", stage)
        done = subprocess.run([chalice_command(), "--project-dir", str(project_dir), "deploy",
                               "--stage", stage], env=os.environ.copy())
        if done.returncode != 0:
            raise DeployError(f"chalice deploy failed (exit {done.returncode}); the EFS access "
                              "point was not attached")
    function_arn = deployed_function(project_dir, stage)
    attach(session.client("lambda"), ec2, efs, session.client("iam"), settings, function_arn)
    log.info("stage %s deployed: %s, EFS %s at %s", stage, function_arn,
             settings.access_point_arn, settings.mount_path)
    return settings


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", required=True, help="a stage of .chalice/config.json")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd(),
                        help="the project folder (default: the current one)")
    parser.add_argument("--hook-only", action="store_true",
                        help="only attach EFS to the function deployed earlier")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="deploy: %(message)s")
    try:
        deploy(args.project_dir.resolve(), args.stage, skip_chalice=args.hook_only)
    except DeployError as error:
        print(f"deploy: error: {error}", file=sys.stderr)
        return 2
    return 0
