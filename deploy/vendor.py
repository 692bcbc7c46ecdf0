"""The packages the Lambda zip holds without their declared dependencies, in vendor/:

    .venv/bin/python -m deploy.vendor --stage dev

Chalice resolves requirements.txt with every declared dependency and zips all of it, file by
file; it can leave out neither a dependency nor a file. Two of the zip's packages declare more
than the function runs: onnxruntime's wheel carries libonnxruntime.so, the C API for C and C++
callers (the Python API's extension module has the runtime linked in and never opens it), and
declares flatbuffers and protobuf, which only its model tools, quantization and transformer
helpers import (those need onnx too, which is not in the zip); highdicom declares pyjpegls, a
JPEG-LS codec for image objects, and a Structured Report holds no pixels. Together they would
push the zip past Lambda's direct-upload limit.

What Chalice does zip as it is: the project's vendor/ folder. So requirements-vendored.txt pins
these packages; the venv installs them with their dependencies (requirements-dev.txt includes
it), and here each pinned wheel is downloaded for the function's platform (Lambda's Python, the
stage's architecture, a manylinux tag within the runtime's glibc: never built on this machine),
unpacked into vendor/ with its dist-info (so the wheel's tags can be checked in the zip), less
the files DROP names, which its RECORD then no longer lists. Every dependency a vendored wheel
declares must be pinned in requirements.txt (Chalice installs it) or named in LEFT_OUT, so a new
dependency of a bumped pin is noticed here, not on Lambda.

Wheels are kept in build/lambda-wheels/ and vendor/ is rebuilt from them on every run (it is
generated: anything else in it is removed), byte for byte the same, so Chalice's own cache of
the deployment package (keyed on requirements.txt, the app and vendor/'s contents) still hits
and a second run needs no network. `python -m deploy` and `python -m deploy.package` run this
just before Chalice.
"""
import argparse
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from email.parser import Parser
from pathlib import Path, PurePosixPath
from typing import Callable, Dict, List, Optional, Tuple

from deploy.errors import DeployError
from vendor_efs.runtime.glibc import LAMBDA_GLIBC, Version, tag_glibc, this_python

VENDOR = "vendor"
REQUIREMENTS = "requirements-vendored.txt"
ZIP_REQUIREMENTS = "requirements.txt"
CACHE = Path("build") / "lambda-wheels"

# Chalice's lambda_architecture -> the machine its wheels are tagged for (Chalice's packager
# uses the same names for requirements.txt).
MACHINES: Dict[str, str] = {"x86_64": "x86_64", "arm64": "aarch64"}

# Files of a vendored distribution the zip leaves out (paths as its RECORD lists them).
DROP: Dict[str, Tuple[str, ...]] = {
    # the C API; the Python API's extension module needs only glibc and libstdc++ (its NEEDED
    # entries) and loads no library by that name
    "onnxruntime": ("onnxruntime/capi/libonnxruntime.so*",),
}

# Declared dependencies of vendored distributions that the zip leaves out, and why.
LEFT_OUT: Dict[str, str] = {
    "flatbuffers": "onnxruntime's ORT-format model tools only, never an InferenceSession",
    "protobuf": "onnxruntime's tools, quantization and transformers helpers only (with onnx, "
                "which is not in the zip either)",
    "pyjpegls": "highdicom's JPEG-LS codec for image objects; a Structured Report has no pixels",
}

Log = Callable[[str], None]


def normalize(name: str) -> str:
    """A distribution name as wheel file names and indexes compare it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> List[Tuple[str, str]]:
    """The (name, version) of each `name==version` line; anything else is refused."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DeployError(f"{path} not found: run from the project folder") from None
    pins = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+!\-]+)", line)
        if not match:
            raise DeployError(f"{path}: {line!r} is not pinned as name==version")
        pins.append((match.group(1), match.group(2)))
    return pins


@dataclass(frozen=True)
class Target:
    """The function's platform: Lambda's Python (Chalice deploys as the Python it runs under),
    the machine of the stage's architecture and the runtime's glibc."""
    python: str   # "3.13"
    machine: str  # "x86_64"
    glibc: Version

    @property
    def abi(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def platforms(self) -> List[str]:
        """pip's --platform values: pip takes each literally, so every manylinux_2_x up to the
        runtime's glibc is listed (as Chalice lists them), then the legacy alias."""
        major, minor = self.glibc
        return ([f"manylinux_{major}_{m}_{self.machine}" for m in range(17, minor + 1)]
                + [f"manylinux2014_{self.machine}"])

    def fits(self, tag: str) -> bool:
        """Whether a wheel tag (python-abi-platform) loads on this target."""
        python, abi, platform = tag.split("-")
        if abi not in ("none", "abi3", self.abi) or not python.startswith(("py3", "cp3")):
            return False
        kind, needs = tag_glibc(platform)
        return kind == "any" or (kind == "manylinux" and platform.endswith("_" + self.machine)
                                 and needs is not None and needs <= self.glibc)


def target_for(architecture: str, python: Optional[str] = None) -> Target:
    python = python or this_python()
    if architecture not in MACHINES:
        raise DeployError(f"lambda_architecture {architecture!r}: deploy/vendor.py builds "
                          f"vendor/ for {', '.join(MACHINES)} only")
    if python not in LAMBDA_GLIBC:
        raise DeployError(f"Python {python} is not a Lambda runtime this project knows "
                          "(vendor_efs/runtime/glibc.py): run scripts/setup")
    return Target(python=python, machine=MACHINES[architecture], glibc=LAMBDA_GLIBC[python])


def stage_architecture(project_dir: Path, stage: str) -> str:
    """The stage's lambda_architecture as Chalice resolves it (x86_64 when unset)."""
    from chalice.config import Config

    from deploy.chalice_files import read_config
    return Config(chalice_stage=stage, config_from_disk=read_config(project_dir)
                  ).lambda_architecture


def wheel_tags(filename: str) -> List[str]:
    """Every python-abi-platform tag a wheel's file name stands for (PEP 425's compressed
    tag sets expanded)."""
    python, abi, platform = filename[:-len(".whl")].split("-")[-3:]
    return [f"{p}-{a}-{m}" for p in python.split(".") for a in abi.split(".")
            for m in platform.split(".")]


def cached_wheel(cache: Path, name: str, version: str, target: Target) -> Optional[Path]:
    prefix = f"{normalize(name).replace('-', '_')}-{version}-"
    for wheel in sorted(cache.glob("*.whl")):
        if wheel.name.lower().startswith(prefix.lower()) and any(
                target.fits(tag) for tag in wheel_tags(wheel.name)):
            return wheel
    return None


def download(name: str, version: str, target: Target, cache: Path, log: Log) -> Path:
    """The pinned wheel for the target, from the cache or else downloaded into it (only a
    binary wheel, without its dependencies: nothing is built or resolved here)."""
    found = cached_wheel(cache, name, version, target)
    if found:
        return found
    cache.mkdir(parents=True, exist_ok=True)
    log(f"downloading {name}=={version} for {target.abi} {target.machine}")
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        command = [sys.executable, "-m", "pip", "download", "--quiet",
                   "--disable-pip-version-check", "--only-binary=:all:", "--no-deps",
                   "--dest", scratch, "--python-version", target.python, "--implementation", "cp",
                   "--abi", target.abi, "--abi", "abi3", "--abi", "none"]
        for platform in target.platforms:
            command += ["--platform", platform]
        done = subprocess.run(command + [f"{name}=={version}"], capture_output=True, text=True)
        if done.returncode != 0:
            # this machine's local package mirrors make pip warn about missing folders
            said = "\n".join(line for line in (done.stdout + done.stderr).splitlines()
                             if not line.startswith("WARNING: Location"))
            raise DeployError(f"pip could not download a {target.abi} {target.machine} wheel of "
                              f"{name}=={version} (manylinux, glibc <= "
                              f"{target.glibc[0]}.{target.glibc[1]}):\n{said}")
        wheels = list(Path(scratch).glob("*.whl"))
        fitting = [w for w in wheels if any(target.fits(t) for t in wheel_tags(w.name))]
        if len(fitting) != 1:
            raise DeployError(f"pip downloaded {[w.name for w in wheels]} for {name}=={version}: "
                              f"not one wheel that fits {target}")
        return Path(shutil.move(str(fitting[0]), cache / fitting[0].name))


def requirements_of(metadata: str, target: Target) -> List[str]:
    """The normalized names of the dependencies a METADATA file declares for the target
    (extras not asked for, markers evaluated for Lambda's Linux)."""
    from packaging.requirements import Requirement
    environment = {"python_version": target.python, "python_full_version": target.python + ".0",
                   "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                   "platform_machine": target.machine, "implementation_name": "cpython",
                   "platform_python_implementation": "CPython", "extra": ""}
    names = []
    for line in Parser().parsestr(metadata).get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            names.append(normalize(requirement.name))
    return names


@dataclass
class Vendored:
    name: str
    version: str
    wheel: str
    dropped: List[str] = field(default_factory=list)
    dropped_bytes: int = 0
    left_out: List[str] = field(default_factory=list)


def _safe(member: str) -> PurePosixPath:
    path = PurePosixPath(member)
    if path.is_absolute() or ".." in path.parts:
        raise DeployError(f"wheel member {member!r} would be written outside vendor/")
    return path


def install_wheel(wheel: Path, into: Path, drop: Tuple[str, ...]) -> Vendored:
    """Unpacks a wheel as an installer puts it in site-packages (its .data purelib and platlib
    at the top, nothing else of .data) less the files matching `drop`, whose RECORD lines go
    too."""
    name, version = wheel.name.split("-")[:2]
    done = Vendored(name=name, version=version, wheel=wheel.name)
    data_dir = f"{name}-{version}.data"
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            path = _safe(info.filename)
            if path.parts[0] == data_dir:
                if len(path.parts) < 3 or path.parts[1] not in ("purelib", "platlib"):
                    continue  # scripts, headers, data: nothing a function imports
                path = PurePosixPath(*path.parts[2:])
            if any(fnmatch.fnmatch(str(path), pattern) for pattern in drop):
                done.dropped.append(str(path))
                done.dropped_bytes += info.file_size
                continue
            target = into / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(target, mode or 0o644)
    unmatched = [pattern for pattern in drop
                 if not any(fnmatch.fnmatch(path, pattern) for path in done.dropped)]
    if unmatched:
        raise DeployError(f"{wheel.name} holds no {', '.join(unmatched)}: the wheel's layout "
                          "changed; update DROP in deploy/vendor.py")
    records = list(into.glob(f"{name}-{version}.dist-info/RECORD"))
    if len(records) != 1:
        raise DeployError(f"{wheel.name} has no {name}-{version}.dist-info/RECORD")
    if done.dropped:
        lines = records[0].read_text(encoding="utf-8").splitlines(keepends=True)
        gone = set(done.dropped)
        records[0].write_text("".join(line for line in lines
                                      if line.split(",", 1)[0] not in gone), encoding="utf-8")
    return done


def check_dependencies(vendored: Vendored, into: Path, target: Target,
                       zip_pins: List[Tuple[str, str]]) -> None:
    """Every declared dependency is in the zip (requirements.txt or vendored) or left out on
    purpose (LEFT_OUT)."""
    metadata = (into / f"{vendored.name}-{vendored.version}.dist-info" / "METADATA").read_text(
        encoding="utf-8")
    pinned = {normalize(name) for name, _ in zip_pins}
    left_out = []
    for needed in requirements_of(metadata, target):
        if needed in LEFT_OUT:
            left_out.append(needed)
        elif needed not in pinned:
            raise DeployError(
                f"{vendored.name} {vendored.version} declares the dependency {needed}, which "
                f"neither {ZIP_REQUIREMENTS} pins nor deploy/vendor.py's LEFT_OUT names: pin it "
                f"in {ZIP_REQUIREMENTS} if the function needs it, else add it to LEFT_OUT with "
                "the reason")
    vendored.left_out = left_out


def build(project_dir: Path, architecture: str, cache: Optional[Path] = None,
          log: Log = print) -> List[Vendored]:
    """Writes <project>/vendor/ anew from the pinned wheels (downloaded once into `cache`,
    default <project>/build/lambda-wheels/<abi>-<machine>)."""
    target = target_for(architecture)
    cache = cache or project_dir / CACHE / f"{target.abi}-{target.machine}"
    pins = read_pins(project_dir / REQUIREMENTS)
    zip_pins = read_pins(project_dir / ZIP_REQUIREMENTS)
    twice = {normalize(n) for n, _ in pins} & {normalize(n) for n, _ in zip_pins}
    if twice:
        raise DeployError(f"{', '.join(sorted(twice))} pinned in both {REQUIREMENTS} and "
                          f"{ZIP_REQUIREMENTS}: Chalice would zip them with their dependencies")
    wheels = [download(name, version, target, cache, log) for name, version in pins]
    vendor = project_dir / VENDOR
    (project_dir / "build").mkdir(exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix="vendor.", dir=project_dir / "build"))
    partial.chmod(0o755)  # as a folder the checkout made (mkdtemp's is private)
    try:
        report = []
        for (name, version), wheel in zip(pins, wheels):
            vendored = install_wheel(wheel, partial, DROP.get(normalize(name), ()))
            check_dependencies(vendored, partial, target, zip_pins + pins)
            report.append(vendored)
        if vendor.is_symlink() or vendor.is_file():
            vendor.unlink()
        elif vendor.exists():
            shutil.rmtree(vendor)
        partial.rename(vendor)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    for vendored in report:
        log(f"vendor/: {vendored.name} {vendored.version} ({vendored.wheel}) without "
            + ", ".join(vendored.dropped + vendored.left_out or ["nothing left out"]))
    return report


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.vendor",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="dev",
                        help="the stage whose lambda_architecture to build for (default dev)")
    parser.add_argument("--project-dir", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    project = args.project_dir.resolve()
    try:
        build(project, stage_architecture(project, args.stage),
              log=lambda message: print(f"vendor: {message}"))
    except DeployError as error:
        print(f"vendor: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
