"""Runs the real deploy command in a subprocess, as a user would, against the local moto."""
import os
import subprocess
import sys
from pathlib import Path

from tests.support.local_aws import REGION, LocalAws


def run_deploy(project: Path, aws: LocalAws, stage: str = "dev",
               region: str = REGION) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(aws.env(region), HOME=str(project.parent))
    return subprocess.run([sys.executable, "-m", "deploy", "--stage", stage], cwd=project,
                          env=env, capture_output=True, text=True, timeout=600)
