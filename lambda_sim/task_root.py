"""The unzipped Lambda deployment package (what Lambda puts in /var/task), for running the
function in an isolated interpreter (`python -I`) beside an EFS packages tree: either the real
deployment.zip unpacked (unzip_package), or the same layout built from this venv (build_app_tree):

    <out>/app.py, <out>/chalicelib/..., <out>/chalice/{__init__,app}.py   (Chalice's packager)
    <out>/numpy, PIL, pydicom, safetensors + their dist-info             (requirements.txt)
    <out>/onnxruntime, highdicom + their dist-info          (requirements-vendored.txt, vendor/)

build_app_tree copies the zip's dependencies from this venv's installed distributions (the
versions pinned in requirements.txt and requirements-vendored.txt, checked here; less the files
deploy/vendor.py leaves out of vendor/), so it needs no network and no `chalice package`; it is
not what gets deployed (`chalice package` builds that).
"""
import fnmatch
import re
import shutil
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Iterable, List

from chalicelib.settings import PROJECT_ROOT
from deploy.vendor import DROP, REQUIREMENTS, normalize


def zip_requirements(requirements: Path = PROJECT_ROOT / "requirements.txt") -> List[str]:
    """The pinned `name==version` lines of a requirements file (requirements.txt)."""
    pins = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+\-]+", line):
                raise ValueError(f"{requirements}: {line!r} is not pinned as name==version")
            pins.append(line)
    return pins


def _copy_distribution(pin: str, out: Path) -> None:
    name, version = pin.split("==")
    dist = metadata.distribution(name)
    if dist.version != version:
        raise RuntimeError(f"this venv has {name} {dist.version}, the requirements pin "
                           f"{version}: run scripts/setup")
    drop = DROP.get(normalize(name), ())
    for entry in dist.files or ():
        source = Path(dist.locate_file(entry))
        if "__pycache__" in entry.parts or entry.parts[0] == ".." or not source.is_file():
            continue  # scripts under ../../bin, and this host's caches, are not in the zip
        if any(fnmatch.fnmatch(str(entry), pattern) for pattern in drop):
            continue  # as deploy/vendor.py leaves it out of vendor/
        target = out / entry
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def build_app_tree(out: Path, pins: Iterable[str] = ()) -> Path:
    """Writes the unzipped deployment package into `out` (which must not exist yet)."""
    import chalice
    import chalice.app
    out.mkdir(parents=True)
    shutil.copy2(PROJECT_ROOT / "app.py", out / "app.py")
    _copy_tree(PROJECT_ROOT / "chalicelib", out / "chalicelib")
    (out / "chalice").mkdir()
    shutil.copy2(chalice.__file__, out / "chalice" / "__init__.py")
    shutil.copy2(chalice.app.__file__, out / "chalice" / "app.py")
    for pin in list(pins) or (zip_requirements()
                              + zip_requirements(PROJECT_ROOT / REQUIREMENTS)):
        _copy_distribution(pin, out)
    return out


def unzip_package(deployment_zip: Path, out: Path) -> Path:
    """Unpacks the deployment package Chalice built into `out` (which must not exist yet)."""
    out.mkdir(parents=True)
    with zipfile.ZipFile(deployment_zip) as archive:
        archive.extractall(out)
    return out
