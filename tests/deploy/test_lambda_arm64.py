"""The arm64 deployment package run the way Lambda runs it, on this x86_64 machine: stage prod
built with lambda_architecture arm64, unzipped into an empty folder (as /var/task), and the
handler called by lambda_sim/runner.py in Debian's arm64 python3.13 under qemu-user-static
(lambda_sim/arm64.py), with API Gateway proxy events carrying a shared PNG and a shared DICOM.
Its findings must be the x86_64 package's, run the same way with this machine's Python.

Timing under emulation is not a timing: nothing here measures arm64 speed."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lambda_sim.arm64 import build as build_arm64_python
from lambda_sim.events import proxy_event
from lambda_sim.task_root import unzip_package
from tests.support.fixtures import CONTENT_TYPE, DCM_MONO2, PNG_CARDIOMEGALY, REPO
from tests.support.packaging import built_for, elf_machine

pytestmark = pytest.mark.build

RUNNER = REPO / "lambda_sim" / "runner.py"
TOLERANCE = 1e-4
IMAGES = (PNG_CARDIOMEGALY, DCM_MONO2)
# The function's timeout each request counts down from: a model load and a forward pass under
# emulation take far longer than the API's 28 s (the load would answer 503 "still loading").
EMULATED_TIMEOUT_S = 1800


def run(command: list, task: Path, efs: Path, timeout_s: float) -> dict:
    """The events through runner.py in `command` (an interpreter), as runner.py reports them."""
    env = {  # what Lambda sets, plus the stage's variables; nothing from this shell
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(task.parent),
        "LAMBDA_TASK_ROOT": str(task), "AWS_LAMBDA_FUNCTION_NAME": "chest-xray-prod",
        "XRAY_EFS_ROOT": str(efs), "XRAY_PACKAGES_PATH": str(efs / "packages"),
        "XRAY_MODEL_PATH": str(efs / "models" / "current"),
    }
    events = [proxy_event("POST", "/xray", path.read_bytes(), CONTENT_TYPE[path.suffix])
              for path in IMAGES]
    answers = task.parent / "answers.json"
    done = subprocess.run(command + ["-I", "-S", str(RUNNER), str(task), str(answers),
                                     str(timeout_s)],
                          input=json.dumps(events), capture_output=True, text=True, env=env,
                          cwd=task, timeout=timeout_s + 300)
    assert done.returncode == 0, done.stderr[-5000:] + done.stdout[-3000:]
    return json.loads(answers.read_text())


@pytest.fixture(scope="module")
def efs(tmp_path_factory, demo_store) -> Path:
    """An EFS root holding the demo model only: classification needs no torch."""
    root = tmp_path_factory.mktemp("efs-arm64")
    shutil.copytree(demo_store / "models", root / "models", symlinks=True)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, efs):
    """{architecture: runner.py's report} for the x86_64 and the arm64 package."""
    arm64_python = build_arm64_python()  # once: cached under build/arm64-python/
    found = {}
    for architecture, command, timeout_s in (
            ("x86_64", [sys.executable], 600),
            ("arm64", arm64_python.command(), EMULATED_TIMEOUT_S)):
        work = tmp_path_factory.mktemp(f"lambda-{architecture}")
        task = unzip_package(built_for(tmp_path_factory, architecture) / "deployment.zip",
                             work / "task")
        found[architecture] = run(command, task, efs, timeout_s)
        found[architecture]["task"] = task
    yield found
    for run_report in found.values():
        shutil.rmtree(run_report["task"].parent)


def findings(answer: dict) -> dict:
    assert answer["statusCode"] == 200, answer
    return {f["label"]: f["probability"] for f in json.loads(answer["body"])["findings"]}


def test_the_arm64_package_classifies_a_png_and_a_dicom_as_the_x86_64_package_does(runs):
    worst = 0.0
    for path, ours, theirs in zip(IMAGES, runs["arm64"]["answers"], runs["x86_64"]["answers"],
                                  strict=True):
        got, want = findings(ours), findings(theirs)
        assert got.keys() == want.keys() and len(got) == 18, path.name
        difference = max(abs(got[label] - want[label]) for label in want)
        print(f"{path.name}: arm64 vs x86_64 max |probability difference| {difference:.2e}")
        worst = max(worst, difference)
        assert json.loads(ours["body"])["positive"] == json.loads(theirs["body"])["positive"]
    assert worst <= TOLERANCE, worst


def test_the_arm64_run_loaded_the_zips_aarch64_extension_modules(runs):
    """The answers came from the arm64 zip's own native code (numpy, onnxruntime, Pillow),
    loaded from the task root, and every extension module the interpreter loaded (the standard
    library's too) is aarch64 code: an x86_64 interpreter could load none of it."""
    task = runs["arm64"]["task"].resolve()
    native = [Path(f) for f in runs["arm64"]["module_files"] if f.endswith(".so")]
    ours = [f for f in native if f.resolve().is_relative_to(task)]
    names = {f.name.split(".")[0] for f in ours}
    assert {"onnxruntime_pybind11_state", "_multiarray_umath", "_imaging"} <= names, names
    machines = {f.name: elf_machine(f.read_bytes()[:20]) for f in native}
    assert set(machines.values()) == {"aarch64"}, machines
