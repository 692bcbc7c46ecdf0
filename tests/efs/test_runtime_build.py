"""The EFS runtime payload: Lambda's (arm64, from PyPI, for python3.13) built and fitting
Amazon Linux 2023's glibc; this machine's (vendor_efs.runtime.host) stripped, byte-compiled,
marked NOT-FOR-LAMBDA and still classifying in an isolated interpreter exactly like the venv does
in process; and a tree above the runtime's glibc refused unless overridden. No timing here:
figures are in `scripts/benchmark`."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures import PNG_CARDIOMEGALY, REPO
from vendor_efs.runtime.build import (
    NOT_FOR_LAMBDA,
    BuildRefused,
    resolve_target,
    stripped_by_rules,
)
from vendor_efs.runtime.glibc import check_tree, this_python, wheel_requirement
from vendor_efs.runtime.host import DEFAULT_WHEELS, find_cpu_wheel

pytestmark = pytest.mark.build

# Lambda python3.11's torch limit, shown with the CPU wheel for 3.11 that this machine keeps
WHEEL_311 = find_cpu_wheel(DEFAULT_WHEELS, "x86_64", "3.11")
needs_wheel_311 = pytest.mark.skipif(WHEEL_311 is None,
                                     reason=f"no torch CPU wheel for 3.11 in {DEFAULT_WHEELS}")


@pytest.fixture(scope="session")
def stripped_tree(host_runtime) -> Path:
    return host_runtime[0]


@pytest.fixture(scope="session")
def report(host_runtime) -> dict:
    return host_runtime[1]


def _files(tree: Path):
    return [p for p in tree.rglob("*") if p.is_file()]


def test_given_the_build_then_every_strip_rule_removed_what_it_names(stripped_tree, report):
    strip = report["strip"]
    for rule in ("torch/include", "torch/bin/*", "**/*.pyi"):
        assert strip[rule]["files"] > 0, f"{rule} matched nothing in this wheel"
    left = [p.relative_to(stripped_tree).as_posix() for p in _files(stripped_tree)]
    assert not [p for p in left if stripped_by_rules(p)]
    assert not [p for p in left if p.endswith((".a", ".pyi", ".h", ".cuh"))]
    assert not (stripped_tree / "torch" / "include").exists()
    # kept on purpose: import torch stats it (found by tracing stats, not only opens)
    assert (stripped_tree / "torch" / "bin" / "torch_shm_manager").is_file()
    removed = sum(rule["files"] for rule in strip.values())
    assert report["installed"]["files"] - removed == report["stripped"]["files"]
    removed_bytes = sum(rule["bytes"] for rule in strip.values())
    assert report["installed"]["bytes"] - removed_bytes == report["stripped"]["bytes"]
    assert removed_bytes > 50e6  # headers, test binaries, static libraries: tens of MB at least


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


@needs_wheel_311
@pytest.mark.parametrize("command_name", ["vendor_efs.runtime", "vendor_efs.build_runtime"])
def test_given_a_manylinux_2_28_torch_for_python3_11_when_built_then_it_is_refused(
        tmp_path, command_name):
    # the command, and its old name (deprecated, still working); python3.11 is Amazon Linux 2
    out = tmp_path / "packages"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"torch=={WHEEL_311.name.split('-')[1]}\n")
    command = [sys.executable, "-m", command_name, "--arch", "x86_64", "--python-version", "3.11",
               "--requirements", str(requirements), "--find-links", str(DEFAULT_WHEELS),
               "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert "REFUSED" in done.stderr and "python3.11" in done.stderr
    assert "manylinux_2_28" in done.stderr and "glibc 2.28" in done.stderr
    assert "--not-for-lambda" in done.stderr and "python3.13: 2.34" in done.stderr
    assert not out.exists()
    renamed = "is deprecated and will be removed: use python -m vendor_efs.runtime"
    assert (renamed in done.stderr) == (command_name == "vendor_efs.build_runtime")


def test_given_this_machines_tree_then_it_says_it_is_not_for_lambda(stripped_tree, report):
    assert report["for_lambda"] is False and report["runtime_glibc"] == "2.34"
    assert report["python"] == this_python()
    assert "Built for another host" in (stripped_tree / NOT_FOR_LAMBDA).read_text()
    # what it would need is still measured: manylinux_2_28 wheels, above Amazon Linux 2's 2.26
    assert check_tree(stripped_tree, (2, 34)).ok
    old = check_tree(stripped_tree, (2, 26))
    assert not old.ok
    assert any("libtorch_cpu.so needs GLIBC_2.2" in o for o in old.offenders), old.offenders[:5]


def test_given_the_arm64_pins_then_lambdas_tree_is_a_cpu_torch_that_fits_its_glibc(tmp_path):
    """The tree Lambda arm64 gets, built as the README says: from PyPI, for this Python."""
    out = tmp_path / "packages"
    done = subprocess.run([sys.executable, "-m", "vendor_efs.runtime", "--arch", "arm64",
                           "--out", str(out), "--json"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    built = json.loads(done.stdout)
    pinned = (REPO / "vendor_efs" / "runtime" / "requirements-efs-arm64.txt").read_text()
    assert f"torch=={built['versions']['torch']}" in pinned
    assert built["for_lambda"] is True and not (out / NOT_FOR_LAMBDA).exists()
    assert built["arch"] == "arm64" and built["python"] == this_python()
    assert built["glibc"]["offenders"] == [] and built["glibc"]["target_glibc"] == "2.34"
    assert (out / "torch" / "lib" / "libtorch_cpu.so").is_file()
    assert not list((out / "torch" / "lib").glob("*cuda*")), "a CUDA build, not CPU-only"
    assert not [p for p in out.glob("*.dist-info") if p.name.startswith(("nvidia", "cuda"))]
    tag = sys.implementation.cache_tag
    assert (out / "torch" / "__pycache__" / f"__init__.{tag}.pyc").is_file()


def test_given_a_glibc_above_the_runtime_without_the_flag_then_it_is_refused():
    with pytest.raises(BuildRefused, match="--not-for-lambda"):
        resolve_target("x86_64", "3.11", "2.28", not_for_lambda=False)
    assert resolve_target("arm64", "3.11", None, False).glibc == (2, 26)
    assert resolve_target("arm64", "3.13", None, False).glibc == (2, 34)
    assert resolve_target("arm64", "3.13", None, False).for_lambda
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


def test_given_only_the_app_and_the_tree_then_an_isolated_interpreter_classifies_like_the_venv(
        stripped_tree, report, demo_store, tmp_path):
    from lambda_sim.probe import probe_command, run_probe
    from lambda_sim.task_root import build_app_tree
    app_dir = build_app_tree(tmp_path / "app")
    result = run_probe(probe_command(app_dir, demo_store, PNG_CARDIOMEGALY, packages=stripped_tree,
                                     record_opens=True))
    assert result["flags_isolated"] == 1
    assert result["torch"].split("+")[0] == report["versions"]["torch"]  # +cpu, +cu130
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
