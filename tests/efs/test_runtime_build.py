"""The EFS runtime payload: built from this machine's torch CPU wheel (offline), stripped and
byte-compiled, refused for Lambda's glibc unless overridden, and still classifying in an isolated
interpreter exactly like the venv does in process. No timing here: figures are in
`scripts/benchmark`."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures import PNG_CARDIOMEGALY, REPO
from vendor_efs.runtime.build import (
    NOT_FOR_LAMBDA,
    REPORT_FILE,
    BuildRefused,
    build,
    resolve_target,
    stripped_by_rules,
)
from vendor_efs.runtime.glibc import check_tree, wheel_requirement
from vendor_efs.runtime.local_wheel import find_cpu_wheel, local_build

pytestmark = pytest.mark.build

WHEEL = find_cpu_wheel()
needs_wheel = pytest.mark.skipif(WHEEL is None, reason="no torch CPU wheel in /opt/wheels")


@pytest.fixture(scope="session")
def local_options(tmp_path_factory):
    return local_build(tmp_path_factory.mktemp("efs-requirements"))


@pytest.fixture(scope="session")
def stripped_tree(tmp_path_factory, local_options) -> Path:
    """vendor_efs.runtime's tree from the local wheel, once per session (about 20 s)."""
    out = tmp_path_factory.mktemp("efs-build") / "packages"
    build(out=out, log=lambda message: None, **local_options)
    return out


@pytest.fixture(scope="session")
def report(stripped_tree) -> dict:
    return json.loads((stripped_tree / REPORT_FILE).read_text())


def _files(tree: Path):
    return [p for p in tree.rglob("*") if p.is_file()]


@needs_wheel
def test_given_the_build_then_every_strip_rule_removed_what_it_names(stripped_tree, report):
    strip = report["strip"]
    for rule in ("torch/include", "torch/test", "torch/bin/*", "**/*.pyi",
                 "torch/lib/libtorchbind_test.so"):
        assert strip[rule]["files"] > 0, f"{rule} matched nothing in this wheel"
    left = [p.relative_to(stripped_tree).as_posix() for p in _files(stripped_tree)]
    assert not [p for p in left if stripped_by_rules(p)]
    assert not [p for p in left if p.endswith((".a", ".pyi", ".h", ".cuh"))]
    assert not (stripped_tree / "torch" / "include").exists()
    # kept on purpose: import torch stats it (found by tracing stats, not only opens)
    assert (stripped_tree / "torch" / "bin" / "torch_shm_manager").is_file()
    removed = sum(rule["files"] for rule in strip.values())
    assert report["installed"]["files"] - removed == report["stripped"]["files"]
    assert report["stripped"]["bytes"] < report["installed"]["bytes"] - 100e6


@needs_wheel
def test_given_the_build_then_every_module_has_an_unchecked_hash_pyc(stripped_tree, report):
    sources = list(stripped_tree.rglob("*.py"))
    assert len(sources) == report["compiled"]["sources"] > 1000
    not_compilable = report["compiled"]["not_compilable"]
    assert len(not_compilable) < 5
    for relative in not_compilable:  # newer-Python-only sources: this Python cannot import them
        with pytest.raises(SyntaxError):
            compile((stripped_tree / relative).read_bytes(), relative, "exec")
    tag = sys.implementation.cache_tag
    for source in sources:
        if source.relative_to(stripped_tree).as_posix() in not_compilable:
            continue
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        header = pyc.read_bytes()[:8]
        # PEP 552 flags: bit 0 = hash-based, bit 1 = check_source; 0b01 = unchecked hash
        assert int.from_bytes(header[4:8], "little") == 0b01, pyc


@needs_wheel
@pytest.mark.parametrize("command_name", ["vendor_efs.runtime", "vendor_efs.build_runtime"])
def test_given_a_manylinux_2_28_torch_when_built_without_override_then_it_is_refused(
        tmp_path, local_options, command_name):
    # the command, and its old name (deprecated, still working)
    out = tmp_path / "packages"
    command = [sys.executable, "-m", command_name, "--arch", "x86_64",
               "--requirements", str(local_options["requirements"]),
               "--find-links", local_options["find_links"][0], "--out", str(out)]
    if local_options["index_url"]:
        command += ["--index-url", local_options["index_url"]]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "REFUSED" in done.stderr and "python3.11" in done.stderr
    assert "manylinux_2_28" in done.stderr and "glibc 2.28" in done.stderr
    assert "--not-for-lambda" in done.stderr
    assert not out.exists()
    renamed = "is deprecated and will be removed: use python -m vendor_efs.runtime"
    assert (renamed in done.stderr) == (command_name == "vendor_efs.build_runtime")


@needs_wheel
def test_given_the_override_then_the_tree_says_it_is_not_for_lambda(stripped_tree, report):
    assert report["for_lambda"] is False and report["runtime_glibc"] == "2.26"
    assert (stripped_tree / NOT_FOR_LAMBDA).is_file()
    report = check_tree(stripped_tree, (2, 26))
    assert not report.ok
    assert any("libtorch_cpu.so needs GLIBC_2.28" in o for o in report.offenders)
    assert check_tree(stripped_tree, (2, 28)).ok


def test_given_a_glibc_above_the_runtime_without_the_flag_then_it_is_refused():
    with pytest.raises(BuildRefused, match="--not-for-lambda"):
        resolve_target("x86_64", "3.11", "2.28", not_for_lambda=False)
    assert resolve_target("arm64", "3.11", None, False).glibc == (2, 26)
    assert resolve_target("arm64", "3.12", None, False).glibc == (2, 34)
    platforms = resolve_target("arm64", "3.11", None, False).pip_platforms()
    assert platforms[0] == "manylinux_2_26_aarch64" and "manylinux2014_aarch64" in platforms
    assert platforms.index("manylinux2014_aarch64") < platforms.index("manylinux_2_28_aarch64")


def test_wheel_tags_fit_when_any_one_tag_fits():
    assert wheel_requirement(["cp311-cp311-manylinux_2_17_x86_64",
                              "cp311-cp311-manylinux2014_x86_64"]) == ("manylinux", (2, 17))
    assert wheel_requirement(["cp311-cp311-manylinux_2_28_x86_64"]) == ("manylinux", (2, 28))
    assert wheel_requirement(["py3-none-any"]) == ("any", None)
    assert wheel_requirement(["cp311-cp311-linux_x86_64"]) == ("unknown", None)
    assert wheel_requirement(["cp311-cp311-musllinux_1_2_x86_64"]) == ("foreign", None)


def _in_process_probabilities(efs_root: Path) -> dict:
    from chalicelib.imaging.dispatch import decode
    from chalicelib.imaging.image import Limits
    from chalicelib.inference.classifier import load_classifier
    from chalicelib.settings import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
    classifier = load_classifier(efs_root / "models" / "current", None)
    image = decode(PNG_CARDIOMEGALY.read_bytes(), "image/png",
                   Limits(max_pixels=DEFAULT_MAX_PIXELS, min_side=DEFAULT_MIN_SIDE))
    probabilities = classifier.inference(classifier.preprocess(image.pixels))
    return dict(zip(classifier.manifest.labels, probabilities))


@needs_wheel
def test_given_only_the_app_and_the_tree_then_an_isolated_interpreter_classifies_like_the_venv(
        stripped_tree, demo_store, tmp_path):
    from lambda_sim.probe import probe_command, run_probe
    from lambda_sim.task_root import build_app_tree
    app_dir = build_app_tree(tmp_path / "app")
    result = run_probe(probe_command(app_dir, demo_store, PNG_CARDIOMEGALY, packages=stripped_tree,
                                     record_opens=True))
    assert result["flags_isolated"] == 1
    assert result["torch"] == WHEEL.name.split("-")[1]
    assert Path(result["torch_file"]) == stripped_tree / "torch" / "__init__.py"
    assert not [p for p in result["sys_path"] if "site-packages" in p or ".venv" in p]
    venv = str(REPO / ".venv")
    assert not [p for p in result["opened"] if p.startswith(venv)]
    assert str(stripped_tree / "torch" / "lib" / "libtorch_cpu.so") in result["opened"]

    expected = _in_process_probabilities(demo_store)
    assert set(result["probabilities"]) == set(expected)
    for label, probability in expected.items():
        assert result["probabilities"][label] == pytest.approx(probability, abs=1e-4), label
    # and the outputs are not a constant: the demo model's probabilities differ by label
    assert max(expected.values()) - min(expected.values()) > 0.1
