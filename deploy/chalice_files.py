"""The two files Chalice keeps in `.chalice/`, read in one place:

- config.json: the stages, with this project's own keys (efs_access_point_arn,
  efs_upload_bucket) beside Chalice's, which Chalice ignores;
- deployed/<stage>.json: what `chalice deploy` made, with each function's ARN.

Standard library only, so that the EFS tools (vendor_efs) can read them without Chalice.
"""
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List

from deploy.errors import DeployError

CONFIG = Path(".chalice") / "config.json"
DEPLOYED = Path(".chalice") / "deployed"


def read_config(project_dir: Path) -> Dict[str, Any]:
    path = project_dir / CONFIG
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeployError(f"{path} not found: run from the project folder or pass "
                          "--project-dir") from None
    except json.JSONDecodeError as error:
        raise DeployError(f"{path} is not valid JSON: {error}") from None


def stage_value(config: Dict[str, Any], stage: str, key: str) -> Any:
    """A stage-wide value as Chalice resolves it: the stage's own, else the top level's."""
    own = (config.get("stages") or {}).get(stage) or {}
    return own[key] if key in own else config.get(key)


def deployed_resources(project_dir: Path, stage: str) -> List[Dict[str, Any]]:
    record = project_dir / DEPLOYED / f"{stage}.json"
    try:
        return json.loads(record.read_text(encoding="utf-8"))["resources"]
    except FileNotFoundError:
        raise DeployError(f"{record} not found: stage {stage!r} has not been deployed by "
                          "Chalice from this folder") from None
    except (KeyError, ValueError):
        raise DeployError(f"{record} is not a record Chalice wrote: deploy the stage "
                          "again") from None


def function_arns(project_dir: Path, stage: str, names: Iterable[str]) -> Dict[str, str]:
    """The ARN of each Lambda function Chalice deployed under these resource names (the record
    is read once)."""
    functions = {resource.get("name"): resource["lambda_arn"]
                 for resource in deployed_resources(project_dir, stage)
                 if resource.get("resource_type") == "lambda_function"}
    for name in names:
        if name not in functions:
            raise DeployError(f"{project_dir / DEPLOYED / f'{stage}.json'} lists no "
                              f"lambda_function {name!r}: deploy the current app.py (it declares "
                              "every function)")
    return {name: functions[name] for name in names}


def event_rules(project_dir: Path, stage: str) -> Dict[str, str]:
    """The EventBridge rule Chalice made for each event-driven function (on_cw_event and
    schedule): Chalice's function name -> rule name."""
    return {resource["name"][:-len("-event")]: resource["rule_name"]
            for resource in deployed_resources(project_dir, stage)
            if resource.get("resource_type") in ("cloudwatch_event", "scheduled_event")
            and str(resource.get("name", "")).endswith("-event") and resource.get("rule_name")}


def rest_api_id(project_dir: Path, stage: str) -> str:
    """The id of the REST API Chalice deployed for the stage."""
    for resource in deployed_resources(project_dir, stage):
        if resource.get("resource_type") == "rest_api" and resource.get("rest_api_id"):
            return resource["rest_api_id"]
    raise DeployError(f"{project_dir / DEPLOYED / f'{stage}.json'} lists no rest_api: deploy "
                      "the current app.py (it declares the REST API's routes)")
