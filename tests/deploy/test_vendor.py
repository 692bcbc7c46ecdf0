"""vendor/, what `python -m deploy` and `python -m deploy.package` write before Chalice zips it
(deploy/vendor.py): the pinned wheels for the function's platform, less the files and
dependencies the function never loads. The unit tests use small wheels made here; the build
tests read the project that tests/support/packaging.py packaged, whose wheel cache the first
build filled from the package index."""
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deploy import vendor
from deploy.errors import DeployError
from tests.support.packaging import built_once, lambda_compatible
from tests.support.project import copy_project, set_stage

X86 = vendor.target_for("x86_64")


def make_wheel(folder: Path, name: str = "demo", version: str = "1.0",
               requires: tuple = (), extra_files: dict = None) -> Path:
    """A small wheel as a build backend writes one: package files, a .data folder, dist-info
    with METADATA, WHEEL and a RECORD listing every file."""
    files = {f"{name}/__init__.py": b"VALUE = 1\n",
             f"{name}/libdemo.so.1.0": b"\x7fELF not really",
             f"{name}/libdemo_shared.so": b"\x7fELF kept",
             f"{name}-{version}.data/purelib/{name}_extra.py": b"EXTRA = 2\n",
             f"{name}-{version}.data/scripts/{name}-tool": b"#!/bin/sh\n",
             f"{name}-{version}.dist-info/METADATA": (
                 f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                 + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode(),
             f"{name}-{version}.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nTag: cp313-cp313-manylinux_2_28_x86_64\n"}
    files.update(extra_files or {})
    record = "".join(f"{path},sha256=x,{len(data)}\n" for path, data in files.items())
    files[f"{name}-{version}.dist-info/RECORD"] = (
        record + f"{name}-{version}.dist-info/RECORD,,\n").encode()
    wheel = folder / f"{name}-{version}-cp313-cp313-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            info = zipfile.ZipInfo(path)
            info.external_attr = (0o755 if path.endswith((".so", "-tool")) or ".so." in path
                                  else 0o644) << 16
            archive.writestr(info, data)
    return wheel


def tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- the platform ----------------------------------------------------------------------------

def test_given_lambdas_python_then_pip_is_asked_for_every_manylinux_up_to_its_glibc():
    assert X86.abi == "cp313" and X86.glibc == (2, 34)
    assert X86.platforms[0] == "manylinux_2_17_x86_64"
    assert X86.platforms[-2:] == ["manylinux_2_34_x86_64", "manylinux2014_x86_64"]
    assert "manylinux_2_28_x86_64" in X86.platforms and len(X86.platforms) == 19


def test_given_arm64_then_pip_is_asked_for_aarch64_wheels_within_the_same_glibc():
    arm64 = vendor.target_for("arm64")
    assert (arm64.abi, arm64.machine, arm64.glibc) == ("cp313", "aarch64", (2, 34))
    assert arm64.platforms == [p.replace("x86_64", "aarch64") for p in X86.platforms]


TAGS = ["cp313-cp313-manylinux2014_x86_64", "cp310-abi3-manylinux_2_17_x86_64", "py3-none-any",
        "cp313-cp313-manylinux_2_28_x86_64", "cp313-cp313-manylinux_2_34_x86_64",
        "cp313-cp313-manylinux_2_35_x86_64", "cp313-cp313-linux_x86_64",
        "cp311-cp311-manylinux2014_x86_64", "cp313-cp313-manylinux2014_aarch64",
        "cp313-cp313-manylinux_2_28_aarch64", "cp313-cp313-manylinux_2_35_aarch64",
        "cp313-cp313-linux_aarch64", "cp313-cp313-musllinux_1_2_x86_64",
        "cp313-cp313-macosx_11_0_arm64"]


@pytest.mark.parametrize("architecture", ["x86_64", "arm64"])
@pytest.mark.parametrize("tag", TAGS)
def test_the_vendored_wheels_tag_rule_is_the_one_the_zips_test_checks(tag, architecture):
    target = vendor.target_for(architecture)
    assert target.fits(tag) is lambda_compatible(tag, target.machine)


def test_given_an_architecture_lambda_does_not_have_then_the_build_is_refused():
    with pytest.raises(DeployError, match="'aarch64'.*x86_64, arm64 only"):
        vendor.target_for("aarch64")


def test_given_the_committed_config_then_the_stages_architecture_is_x86_64(project):
    assert vendor.stage_architecture(project, "dev") == "x86_64"


def test_given_a_stage_set_to_arm64_then_its_architecture_is_arm64_and_the_others_unchanged(
        project):
    set_stage(project, "prod", lambda_architecture="arm64")
    assert vendor.stage_architecture(project, "prod") == "arm64"
    assert vendor.stage_architecture(project, "dev") == "x86_64"


# --- unpacking -------------------------------------------------------------------------------

def test_given_a_wheel_then_it_is_unpacked_as_installed_less_the_dropped_files(tmp_path):
    wheel = make_wheel(tmp_path)
    into = tmp_path / "vendor"
    done = vendor.install_wheel(wheel, into, ("demo/libdemo.so*",))
    assert done.dropped == ["demo/libdemo.so.1.0"] and done.dropped_bytes == 15
    assert not (into / "demo" / "libdemo.so.1.0").exists()
    assert (into / "demo" / "libdemo_shared.so").read_bytes() == b"\x7fELF kept"
    assert (into / "demo_extra.py").read_text() == "EXTRA = 2\n"  # .data/purelib at the top
    assert not list(into.glob("*.data")) and not list(into.rglob("demo-tool"))
    assert os.stat(into / "demo" / "libdemo_shared.so").st_mode & 0o777 == 0o755
    record = (into / "demo-1.0.dist-info" / "RECORD").read_text()
    assert "demo/libdemo.so.1.0" not in record and "demo/libdemo_shared.so," in record
    assert "demo_extra" in record  # what was kept is still listed


def test_given_a_drop_pattern_the_wheel_no_longer_matches_then_the_build_says_so(tmp_path):
    wheel = make_wheel(tmp_path)
    with pytest.raises(DeployError, match="holds no demo/libgone.so.*update DROP"):
        vendor.install_wheel(wheel, tmp_path / "vendor", ("demo/libdemo.so*", "demo/libgone.so*"))


def test_given_a_wheel_member_outside_the_folder_then_nothing_is_written_there(tmp_path):
    wheel = make_wheel(tmp_path, extra_files={"../escaped.py": b"x = 1\n"})
    with pytest.raises(DeployError, match="outside vendor/"):
        vendor.install_wheel(wheel, tmp_path / "vendor", ())
    assert not (tmp_path / "escaped.py").exists()


def test_given_a_new_undeclared_dependency_then_it_is_named_with_what_to_do(tmp_path):
    wheel = make_wheel(tmp_path, requires=("numpy>=1.21", "protobuf>=4", "newdep",
                                           "sympy; extra == 'symbolic'",
                                           "pywin32; sys_platform == 'win32'"))
    installed = vendor.install_wheel(wheel, tmp_path / "vendor", ())
    with pytest.raises(DeployError, match="declares the dependency newdep.*LEFT_OUT"):
        vendor.check_dependencies(installed, tmp_path / "vendor", X86, [("numpy", "2.5.5")])
    vendor.check_dependencies(installed, tmp_path / "vendor", X86,
                              [("numpy", "2.5.5"), ("NewDep", "1.0")])
    assert installed.left_out == ["protobuf"]  # extras and other platforms are not asked for


def test_given_a_package_pinned_in_both_files_then_the_build_is_refused(tmp_path):
    (tmp_path / "requirements.txt").write_text("numpy==2.5.5\nonnxruntime==1.31.1\n")
    (tmp_path / "requirements-vendored.txt").write_text("onnxruntime==1.31.1\n")
    with pytest.raises(DeployError, match="onnxruntime pinned in both"):
        vendor.build(tmp_path, "x86_64", log=lambda message: None)
    assert not (tmp_path / "vendor").exists()


def test_given_an_unpinned_line_then_it_is_refused(tmp_path):
    (tmp_path / "requirements-vendored.txt").write_text("onnxruntime>=1.31\n")
    with pytest.raises(DeployError, match="'onnxruntime>=1.31' is not pinned"):
        vendor.read_pins(tmp_path / "requirements-vendored.txt")


def test_given_a_cached_wheel_then_it_is_used_and_a_foreign_one_is_not(tmp_path):
    wheel = make_wheel(tmp_path)
    assert vendor.cached_wheel(tmp_path, "demo", "1.0", X86) == wheel
    assert vendor.cached_wheel(tmp_path, "demo", "1.1", X86) is None
    wheel.rename(tmp_path / "demo-1.0-cp313-cp313-manylinux_2_28_aarch64.whl")
    assert vendor.cached_wheel(tmp_path, "demo", "1.0", X86) is None


# --- the real build --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def packaged_project(tmp_path_factory) -> Path:
    return built_once(tmp_path_factory).parent / "project"


@pytest.mark.build
def test_the_packaged_vendor_folder_holds_the_pins_as_lambda_wheels_less_the_c_api(
        packaged_project):
    tree = packaged_project / "vendor"
    cache = packaged_project / "build" / "lambda-wheels" / "cp313-x86_64"
    wheels = sorted(p.name for p in cache.glob("*.whl"))
    assert [w.split("-")[:2] for w in wheels] == [["highdicom", "0.28.2"],
                                                  ["onnxruntime", "1.31.1"]]
    assert sorted(p.name for p in tree.iterdir()) == [
        "highdicom", "highdicom-0.28.2.dist-info", "onnxruntime", "onnxruntime-1.31.1.dist-info"]
    assert not list(tree.rglob("libonnxruntime.so*"))
    capi = tree / "onnxruntime" / "capi"
    assert (capi / "onnxruntime_pybind11_state.cpython-313-x86_64-linux-gnu.so").stat().st_size \
        > 10 * 2**20
    assert "libonnxruntime.so" not in (tree / "onnxruntime-1.31.1.dist-info" / "RECORD").read_text()
    for wheel in (tree / "onnxruntime-1.31.1.dist-info" / "WHEEL",
                  tree / "highdicom-0.28.2.dist-info" / "WHEEL"):
        tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines()
                if line.startswith("Tag:")]
        assert any(lambda_compatible(tag) for tag in tags), tags


@pytest.mark.build
def test_a_second_build_from_the_cache_needs_no_index_and_writes_the_same_bytes(
        packaged_project, tmp_path):
    """A fresh checkout with the wheel cache: pip is given no index and no local wheels, so any
    download would fail; vendor/ comes out byte for byte as the packaged one, twice (what keeps
    Chalice's deployment-package cache, keyed on vendor/'s contents, hitting)."""
    project = copy_project(tmp_path / "checkout")
    shutil.copytree(packaged_project / "build" / "lambda-wheels",
                    project / "build" / "lambda-wheels")
    (project / "vendor").mkdir()
    (project / "vendor" / "stale.py").write_text("left from an older build\n")
    cached = tree_digest(project / "build" / "lambda-wheels")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "AWS_"))}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS="", PIP_CONFIG_FILE=os.devnull,
               https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "deploy.vendor", "--stage", "prod"],
                              cwd=project, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "downloading" not in done.stdout
        assert tree_digest(project / "vendor") == tree_digest(packaged_project / "vendor")
    assert "without onnxruntime/capi/libonnxruntime.so.1.31.1, flatbuffers, protobuf" in \
        done.stdout and "highdicom 0.28.2 (highdicom-0.28.2-py3-none-any.whl) without pyjpegls" \
        in done.stdout
    assert tree_digest(project / "build" / "lambda-wheels") == cached
    assert not list((project / "build").glob("vendor.*"))  # no partial build left behind


@pytest.mark.build
def test_without_the_cache_and_without_an_index_the_build_says_what_failed(tmp_path):
    project = copy_project(tmp_path / "checkout")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "AWS_"))}
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS="", PIP_CONFIG_FILE=os.devnull)
    done = subprocess.run([sys.executable, "-m", "deploy.vendor"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "vendor: error: pip could not download a cp313 x86_64 wheel of onnxruntime==1.31.1" \
        in done.stderr
    assert not (project / "vendor").exists()


@pytest.mark.build
def test_packaging_again_rebuilds_vendor_and_chalice_reuses_its_deployment_package(
        packaged_project, tmp_path):
    """vendor/ is rebuilt before every `chalice package`; Chalice keys its cached deployment
    package on vendor/'s contents, so the same bytes mean no second dependency build."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run([sys.executable, "-m", "deploy.package", "--stage", "prod",
                           "--out", str(tmp_path / "out")], cwd=packaged_project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "package: vendor/: onnxruntime 1.31.1" in done.stderr
    assert "Reusing existing deployment package." in done.stdout, done.stdout
    assert (tmp_path / "out" / "deployment.zip").stat().st_size < 50 * 2**20
