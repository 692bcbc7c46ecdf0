"""A throwaway copy of the project, as a user's checkout with their values in config.json, so
that deploys write .chalice/deployed/ and the policy file there, never in the repository."""
import json
import shutil
from pathlib import Path
from typing import Any, Dict

from tests.support.local_aws import UserNetwork

REPO = Path(__file__).resolve().parents[2]
# What Chalice reads (app.py, chalicelib/, requirements.txt, the config), what the deploy
# commands put into vendor/ (requirements-vendored.txt) and, to prove they stay out of the zip,
# the folders a checkout has beside them. Nothing generated (.venv, build output, vendor/,
# .chalice/deployed): a user's first deploy starts without them.
ENTRIES = ("app.py", "requirements.txt", "requirements-vendored.txt", "chalicelib",
           ".chalice/config.json", "deploy", "vendor_efs", "lambda_sim", "benchmarks", "scripts",
           "tests", "docs")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc")


def copy_project(dest: Path) -> Path:
    for entry in ENTRIES:
        source, target = REPO / entry, dest / entry
        if source.is_dir():
            shutil.copytree(source, target, ignore=SKIP)
        elif source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def user_values(network: UserNetwork) -> Dict[str, Any]:
    return {"subnet_ids": network.subnet_ids, "security_group_ids": [network.lambda_sg],
            "efs_access_point_arn": network.access_point_arn,
            "efs_upload_bucket": network.upload_bucket,
            "environment_variables": {"XRAY_JOBS_BUCKET": network.jobs_bucket}}


def set_stage(project: Path, stage: str, **values: Any) -> None:
    """Overrides keys of one stage (environment variables merge key by key: call it twice to
    add variables to user_values')."""
    path = project / ".chalice" / "config.json"
    config = json.loads(path.read_text())
    own = config["stages"][stage]
    env = values.pop("environment_variables", None)
    own.update(values)
    if env:
        own["environment_variables"] = {**own.get("environment_variables", {}), **env}
    path.write_text(json.dumps(config, indent=2))
