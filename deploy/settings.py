"""Reads one stage of .chalice/config.json and validates the values a user must fill in, offline,
before anything touches AWS. Chalice ignores the keys it does not know (efs_access_point_arn),
so every user value lives in that one file."""
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List

from deploy.errors import DeployError

CONFIG = Path(".chalice") / "config.json"

# Lambda's own rule for FileSystemConfigs.LocalMountPath (one level below /mnt).
MOUNT_PATH = re.compile(r"^/mnt/[A-Za-z0-9_.-]+$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")
SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$")
ACCESS_POINT_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):elasticfilesystem:(?P<region>[a-z]{2}(-[a-z]+)+-\d):"
    r"(?P<account>\d{12}):access-point/(?P<id>fsap-[0-9a-f]{17})$")
# API Gateway (REST) gives up after 29 s; a function still running then is paid for but unheard.
MAX_TIMEOUT_S = 28
# torch alone takes ~0.5 GB resident; DenseNet-121 and a large image need the rest.
MIN_MEMORY_MB, MAX_MEMORY_MB = 1024, 10240
ENV_EFS_ROOT, ENV_PACKAGES, ENV_MODEL = "XRAY_EFS_ROOT", "XRAY_PACKAGES_PATH", "XRAY_MODEL_PATH"


@dataclass(frozen=True)
class StageSettings:
    project_dir: Path
    stage: str
    subnet_ids: List[str]
    security_group_ids: List[str]
    access_point_arn: str
    access_point_id: str
    region: str
    account: str
    partition: str
    mount_path: str
    memory_mb: int
    timeout_s: int
    reserved_concurrency: int
    environment: Dict[str, str]

    @property
    def policy_file(self) -> Path:
        return self.project_dir / ".chalice" / f"policy-{self.stage}.json"

    @property
    def file_system_configs(self) -> List[Dict[str, str]]:
        return [{"Arn": self.access_point_arn, "LocalMountPath": self.mount_path}]


def load_stage(project_dir: Path, stage: str) -> StageSettings:
    """Every problem found is reported at once, each naming its key."""
    path = project_dir / CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeployError(f"{path} not found: run from the project folder or pass "
                          "--project-dir") from None
    except json.JSONDecodeError as error:
        raise DeployError(f"{path} is not valid JSON: {error}") from None
    stages = config.get("stages") or {}
    if stage not in stages:
        raise DeployError(f"{CONFIG}: stage {stage!r} is not defined under \"stages\" "
                          f"(defined: {', '.join(sorted(stages)) or 'none'})")
    return _validate(project_dir, stage, config, stages[stage])


def _validate(project_dir: Path, stage: str, top: Dict[str, Any],
              own: Dict[str, Any]) -> StageSettings:
    problems: List[str] = []

    def value(key: str) -> Any:  # Chalice's lookup order: the stage, then the top level
        return own[key] if key in own else top.get(key)

    def problem(key: str, message: str) -> None:
        problems.append(f"{CONFIG} stages.{stage}.{key}: {message}")

    subnets = _id_list(value("subnet_ids"), SUBNET_ID, "subnet-0123456789abcdef0",
                       lambda m: problem("subnet_ids", m))
    groups = _id_list(value("security_group_ids"), SECURITY_GROUP_ID, "sg-0123456789abcdef0",
                      lambda m: problem("security_group_ids", m))

    arn = value("efs_access_point_arn")
    match = ACCESS_POINT_ARN.match(arn) if isinstance(arn, str) else None
    if match is None:
        problem("efs_access_point_arn", f"must be an EFS access point ARN like arn:aws:"
                f"elasticfilesystem:eu-west-1:123456789012:access-point/fsap-0123456789abcdef0 "
                f"(the file system's own ARN is not accepted by Lambda); got {arn!r}")

    env = {**(top.get("environment_variables") or {}), **(own.get("environment_variables") or {})}
    mount = env.get(ENV_EFS_ROOT)
    env_key = f"environment_variables.{ENV_EFS_ROOT}"
    if not isinstance(mount, str) or not MOUNT_PATH.match(mount):
        problem(env_key, f"is where Lambda mounts the access point and must be one folder "
                f"directly under /mnt/, like /mnt/xray; got {mount!r}")
        mount = None
    for name in (ENV_PACKAGES, ENV_MODEL):
        inner = env.get(name)
        if mount and inner is not None and not str(inner).startswith(mount + "/"):
            problem(f"environment_variables.{name}", f"must lie under {ENV_EFS_ROOT} "
                    f"({mount}/...), or torch and the model are not on the mounted EFS; "
                    f"got {inner!r}")
    if mount and ENV_PACKAGES not in env:
        problem(f"environment_variables.{ENV_PACKAGES}", "is missing: torch comes from EFS "
                f"on Lambda (e.g. {mount}/packages)")

    memory = _whole(value("lambda_memory_size"), MIN_MEMORY_MB, MAX_MEMORY_MB,
                    lambda m: problem("lambda_memory_size", m))
    timeout = _whole(value("lambda_timeout"), 1, MAX_TIMEOUT_S,
                     lambda m: problem("lambda_timeout", m + " (API Gateway's limit is 29 s)"))
    concurrency = _whole(value("reserved_concurrency"), 1, 1000,
                         lambda m: problem("reserved_concurrency", m))
    if value("api_gateway_endpoint_type") != "REGIONAL":
        problem("api_gateway_endpoint_type", "must be REGIONAL (an edge-optimized API adds a "
                "CloudFront hop and cannot have its 29 s timeout raised)")
    if value("autogen_policy") is not False or value("iam_policy_file") != f"policy-{stage}.json":
        problem("iam_policy_file", f'must be "policy-{stage}.json" with "autogen_policy": '
                "false: the deploy command writes that policy (Chalice's own never allows "
                "elasticfilesystem:ClientMount)")
    if problems:
        raise DeployError("the configuration is not ready to deploy:\n  " + "\n  ".join(problems))
    assert match is not None and mount is not None
    return StageSettings(
        project_dir=project_dir, stage=stage, subnet_ids=subnets, security_group_ids=groups,
        access_point_arn=arn, access_point_id=match["id"], region=match["region"],
        account=match["account"], partition=match["partition"], mount_path=mount,
        memory_mb=memory, timeout_s=timeout, reserved_concurrency=concurrency, environment=env)


def _id_list(raw: Any, pattern: "re.Pattern[str]", example: str,
             report: Callable[[str], None]) -> List[str]:
    if not isinstance(raw, list) or not raw:
        report(f"is missing or empty: list your own ids, like [\"{example}\"] (subnet_ids and "
               "security_group_ids always go together)")
        return []
    bad = [item for item in raw if not isinstance(item, str) or not pattern.match(item)]
    if bad:
        report(f"not an id like {example!r}: {', '.join(map(repr, bad))}")
    if len(set(raw)) != len(raw):
        report("lists an id twice")
    return list(raw)


def _whole(raw: Any, low: int, high: int, report: Callable[[str], None]) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        report(f"must be a whole number from {low} to {high}; got {raw!r}")
        return 0
    return raw

