"""Builds the project's real artifacts once: `python -m deploy.package` on a copy of the
project with realistic user values (no AWS is needed to package)."""
import copy
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from tests.support.project import copy_project, set_stage
from vendor_efs.runtime.glibc import LAMBDA_GLIBC as RUNTIME_GLIBC
from vendor_efs.runtime.glibc import tag_glibc, this_python

# Lambda's runtime for the Python the project runs on (Chalice deploys as that Python):
# python3.13 is Amazon Linux 2023, glibc 2.34 (Chalice assumes the same).
RUNTIME_PYTHON = this_python()
LAMBDA_GLIBC = RUNTIME_GLIBC[RUNTIME_PYTHON]
# Shaped like real ids (17 hex digits), as cfn-lint and Lambda check them.
USER_VALUES = {
    "subnet_ids": ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5061728"],
    "security_group_ids": ["sg-0c1d2e3f405162738"],
    "efs_access_point_arn":
        "arn:aws:elasticfilesystem:eu-west-1:123456789012:access-point/fsap-0d1e2f30415263748",
    "efs_upload_bucket": "chest-xray-efs-upload-eu-west-1",
    "environment_variables": {"XRAY_JOBS_BUCKET": "chest-xray-jobs-eu-west-1"},
}


def filled(project: Path, stage: str = "dev", **values: Any) -> Any:
    """The stage of `project` with the user's values and `values` (environment variables merge
    key by key), as the offline validation reads it: its StageSettings."""
    from deploy.settings import load_stage
    set_stage(project, stage, **USER_VALUES)
    set_stage(project, stage, **values)
    return load_stage(project, stage)


def run_package(workdir: Path, stage: str = "prod", **values: Any) -> Path:
    project = copy_project(workdir / "project")
    set_stage(project, stage, **USER_VALUES)
    set_stage(project, stage, **values)
    return _package(project, stage, workdir / "cloudformation")


def _package(project: Path, stage: str, out: Path) -> Path:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run([sys.executable, "-m", "deploy.package", "--stage", stage,
                           "--out", str(out)], cwd=project, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"deploy.package failed:\n{done.stdout}\n{done.stderr}")
    return out


def wheel_tags(archive: zipfile.ZipFile) -> Dict[str, List[str]]:
    """dist-info folder -> the Tag lines of its WHEEL file: how each package was built."""
    tags = {}
    for name in archive.namelist():
        if name.endswith(".dist-info/WHEEL"):
            text = archive.read(name).decode()
            tags[name.split("/")[0]] = [line.split(":", 1)[1].strip()
                                        for line in text.splitlines() if line.startswith("Tag:")]
    return tags


_built: Dict[str, Path] = {}


def built_once(tmp_path_factory) -> Path:
    """The package output folder, built on first use and shared by every module in the session
    (a session fixture would need the shared conftest)."""
    if "out" not in _built:
        _built["out"] = run_package(tmp_path_factory.mktemp("package"))
    return _built["out"]


def built_for(tmp_path_factory, architecture: str) -> Path:
    """The package output folder of stage prod with this lambda_architecture: built_once's for
    x86_64 (the committed value), else a project copy of its own, built once per session (its
    vendor/ and Chalice's cache then never mix with the shared project's)."""
    if architecture == "x86_64":
        return built_once(tmp_path_factory)
    key = f"architecture-{architecture}"
    if key not in _built:
        _built[key] = run_package(tmp_path_factory.mktemp(f"package-{architecture}"),
                                  lambda_architecture=architecture)
    return _built[key]


def built_variant(tmp_path_factory, name: str, stage: str, **values: Any) -> Path:
    """The shared project (built_once's) packaged again with one stage's values changed, into
    its own folder; the config is restored afterwards. Chalice's dependency cache
    (.chalice/deployments/) makes such a rebuild take seconds, not a full build."""
    key = f"variant-{name}"
    if key not in _built:
        base = built_once(tmp_path_factory)
        project = base.parent / "project"
        config = project / ".chalice" / "config.json"
        saved = config.read_text()
        try:
            set_stage(project, stage, **USER_VALUES)
            set_stage(project, stage, **values)  # environment variables merge key by key
            _built[key] = _package(project, stage, base.parent / f"cloudformation-{name}")
        finally:
            config.write_text(saved)
    return _built[key]


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    cfn_lint_script = Path(sys.executable).parent / "cfn-lint"  # installed with the venv
    return subprocess.run([str(cfn_lint_script), str(path)], capture_output=True, text=True)


def translate(template: dict) -> dict:
    """SAM -> plain CloudFormation with AWS's own translator. The code location becomes an S3
    URI, as `aws cloudformation package` makes it (the translator accepts nothing else)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:  # the template names none; never ask IAM
        def load(self) -> dict:
            return {}

    template = copy.deepcopy(template)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://chest-xray-artifacts/prod/deployment.zip"
    return transform(template, {}, NoManagedPolicies())


# ELF e_machine of each wheel machine (the zip's native files must all be the architecture's)
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}


def elf_machine(head: bytes) -> Optional[str]:
    """The wheel machine name of an ELF file from its first 20 bytes; None if not ELF (or
    another machine than Lambda's two: "other")."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    number = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return next((name for name, code in ELF_MACHINE.items() if code == number), "other")


def lambda_compatible(tag: str, machine: str = "x86_64") -> bool:
    """Whether a wheel tag (python-abi-platform) runs on Lambda's runtime, on that machine
    (x86_64, or aarch64 for lambda_architecture arm64)."""
    _python, abi, platform = tag.split("-")
    if abi not in ("none", "abi3", "cp" + RUNTIME_PYTHON.replace(".", "")):
        return False
    kind, needs = tag_glibc(platform)
    if kind == "any":
        return True
    return (kind == "manylinux" and platform.endswith("_" + machine) and needs is not None
            and needs <= LAMBDA_GLIBC)
