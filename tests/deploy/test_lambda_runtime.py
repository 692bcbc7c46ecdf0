"""The real deployment package run the way Lambda runs it: unzipped into an empty folder (as
/var/task), the model and torch (for XRAY_BACKEND=torch only: classification and heatmaps run on
onnxruntime and numpy from the zip) taken from an EFS-like folder, the handler called in a bare
interpreter with API Gateway proxy events carrying the shared fixtures as base64. Its answers
must equal the in-process app's. Catches a module missing from the zip and a broken EFS
bootstrap (XRAY_PACKAGES_PATH), which no in-process test can."""
import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from lambda_sim.events import proxy_event
from lambda_sim.task_root import unzip_package
from tests.support.fixtures import ALL_FIXTURES, CONTENT_TYPE, REPO
from tests.support.packaging import built_once, lambda_compatible
from tests.support.serving import serving

pytestmark = pytest.mark.build

RUNNER = REPO / "lambda_sim" / "runner.py"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def lambda_layout(tmp_path_factory, demo_store, host_runtime):
    """(task root, EFS root): the unzipped package, and EFS holding only models + packages
    (vendor_efs.runtime's tree for this machine: the same build steps as Lambda's)."""
    root = tmp_path_factory.mktemp("lambda")
    efs = root / "efs"
    task = unzip_package(built_once(tmp_path_factory) / "deployment.zip", root / "task")
    shutil.copytree(demo_store / "models", efs / "models", symlinks=True)
    (efs / "packages").symlink_to(host_runtime[0], target_is_directory=True)
    yield task, efs
    shutil.rmtree(root)


def run_in_lambda_layout(task: Path, efs: Path, events: list, **stage: str) -> dict:
    env = {  # what Lambda sets, plus the stage's variables; nothing from this shell
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(task.parent),
        "LAMBDA_TASK_ROOT": str(task), "AWS_LAMBDA_FUNCTION_NAME": "chest-xray-dev",
        "XRAY_EFS_ROOT": str(efs), "XRAY_PACKAGES_PATH": str(efs / "packages"),
        "XRAY_MODEL_PATH": str(efs / "models" / "current"), **stage,
    }
    answers = task.parent / "answers.json"
    done = subprocess.run([sys.executable, "-I", "-S", str(RUNNER), str(task), str(answers)],
                          input=json.dumps(events), capture_output=True, text=True, env=env,
                          cwd=task, timeout=600)
    assert done.returncode == 0, done.stderr[-5000:]
    return json.loads(answers.read_text())


@pytest.fixture(scope="module")
def lambda_run(lambda_layout):
    task, efs = lambda_layout
    events = [proxy_event("GET", "/health"), proxy_event("GET", "/model")]
    events += [proxy_event("POST", "/xray", path.read_bytes(), CONTENT_TYPE[path.suffix])
               for path in ALL_FIXTURES]
    # last: a heatmap, which needs no torch either (the graph's feature map and numpy)
    events.append(proxy_event("POST", "/xray", ALL_FIXTURES[0].read_bytes(),
                              CONTENT_TYPE[ALL_FIXTURES[0].suffix], query={"heatmap": "top"}))
    return run_in_lambda_layout(task, efs, events)


def test_the_handler_imports_only_the_package_efs_and_the_standard_library(lambda_layout,
                                                                           lambda_run):
    task, efs = lambda_layout
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    allowed = (task.resolve(), (efs / "packages").resolve(), stdlib, RUNNER.resolve())
    strays = [f for f in lambda_run["module_files"]
              if not any(Path(f).resolve().is_relative_to(a) for a in allowed)]
    assert not strays, strays[:10]
    # classification and the heatmap run on onnxruntime and numpy from the zip: no torch
    assert lambda_run["torch_imported"] == [False] * (len(ALL_FIXTURES) + 3)
    assert not any("site-packages" in p for p in lambda_run["sys_path"]), lambda_run["sys_path"]


def test_the_torch_backend_imports_torch_from_efs(lambda_layout):
    """XRAY_BACKEND=torch (the seed article's way): torch comes from the EFS packages tree,
    through the app's own bootstrap, and answers a heatmap."""
    task, efs = lambda_layout
    run = run_in_lambda_layout(task, efs, [proxy_event(
        "POST", "/xray", ALL_FIXTURES[0].read_bytes(), CONTENT_TYPE[ALL_FIXTURES[0].suffix],
        query={"heatmap": "top"})], XRAY_BACKEND="torch")
    (answer,) = run["answers"]
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["heatmap"]["png"]
    assert run["torch_imported"] == [True]
    assert Path(run["torch_file"]).resolve().is_relative_to((efs / "packages").resolve())
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    allowed = (task.resolve(), (efs / "packages").resolve(), stdlib, RUNNER.resolve())
    strays = [f for f in run["module_files"]
              if not any(Path(f).resolve().is_relative_to(a) for a in allowed)]
    assert not strays, strays[:10]


def test_classification_ran_on_the_zips_onnxruntime_which_has_no_c_api_library(lambda_layout,
                                                                                 lambda_run):
    """onnxruntime comes from vendor/ without libonnxruntime.so (deploy/vendor.py): the
    extension module the classifications used was the task root's, and that file is absent."""
    task, _ = lambda_layout
    loaded = [Path(f) for f in lambda_run["module_files"]
              if Path(f).name.startswith("onnxruntime_pybind11_state.")]
    assert loaded and all(f.resolve().is_relative_to(task.resolve()) for f in loaded), loaded
    assert (task / "onnxruntime" / "capi").is_dir()
    assert not list(task.rglob("libonnxruntime.so*"))


LEFT_OUT_PROBE = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
import highdicom, highdicom.sr, packaging
from pydicom.sr.codedict import codes
item = highdicom.sr.TextContentItem(name=codes.DCM.Finding, value="no finding",
                                    relationship_type=highdicom.sr.RelationshipTypeValues.CONTAINS)
print(json.dumps({"files": [highdicom.__file__, packaging.__file__], "text": item.TextValue,
                  "absent": [m for m in ("google", "flatbuffers", "jpeg_ls")
                             if importlib.util.find_spec(m) is None]}))
"""


def test_highdicom_imports_from_the_zip_without_its_left_out_codec(lambda_layout):
    """highdicom is in vendor/ without pyjpegls (and onnxruntime without protobuf and
    flatbuffers): in a bare interpreter on the task root it imports and makes content items,
    and none of the left-out packages can be found."""
    task, _ = lambda_layout
    done = subprocess.run([sys.executable, "-I", "-S", "-c", LEFT_OUT_PROBE, str(task)],
                          capture_output=True, text=True, cwd=task, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(Path(f).resolve().is_relative_to(task.resolve()) for f in found["files"]), found
    assert found["text"] == "no finding"
    assert found["absent"] == ["google", "flatbuffers", "jpeg_ls"]


def test_every_fixture_gets_the_in_process_apps_findings(demo_store, lambda_run):
    health, model, *answers, heatmap = lambda_run["answers"]
    assert heatmap["statusCode"] == 200 and json.loads(heatmap["body"])["heatmap"]["png"]
    assert health["statusCode"] == 200 and json.loads(health["body"])["live"] is True
    assert model["statusCode"] == 200
    with serving(demo_store) as client:
        for path, answer in zip(ALL_FIXTURES, answers, strict=True):
            direct = client.http.post("/xray", body=path.read_bytes(),
                                      headers={"Content-Type": CONTENT_TYPE[path.suffix]})
            assert answer["statusCode"] == direct.status_code == 200, (path.name, answer)
            ours, theirs = json.loads(answer["body"]), json.loads(direct.body)
            assert ours["model"] == theirs["model"] and ours["image"] == theirs["image"]
            got = {f["label"]: f["probability"] for f in ours["findings"]}
            want = {f["label"]: f["probability"] for f in theirs["findings"]}
            assert got.keys() == want.keys() and len(got) == 18
            worst = max(abs(got[label] - want[label]) for label in want)
            assert worst <= TOLERANCE, (path.name, worst)
            assert set(ours["positive"]) == set(theirs["positive"]), path.name


def test_after_the_cold_start_health_reports_the_model_loaded_from_efs(lambda_layout):
    task, efs = lambda_layout
    event = proxy_event("POST", "/xray", ALL_FIXTURES[0].read_bytes(),
                        CONTENT_TYPE[ALL_FIXTURES[0].suffix])
    first, health = run_in_lambda_layout(task, efs, [event, proxy_event("GET", "/health")])[
        "answers"]
    status = json.loads(health["body"])
    assert first["statusCode"] == 200
    assert status["ready"] is True and status["model"]["path"] == str(efs / "models" / "current")


def test_the_efs_torch_build_fits_lambdas_glibc(lambda_layout):
    """torch's wheel tags fit the runtime (manylinux_2_28 <= Amazon Linux 2023's glibc 2.34;
    on python3.11's glibc 2.26 no torch wheel of this machine did)."""
    _, efs = lambda_layout
    (wheel,) = (efs / "packages").glob("torch-*.dist-info/WHEEL")
    tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines()
            if line.startswith("Tag:")]
    assert any(lambda_compatible(tag) for tag in tags), tags
