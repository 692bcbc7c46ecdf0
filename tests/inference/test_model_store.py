"""The model store and the lazy model: checked weights, no pickle, one load under concurrency,
failures reported (503, /health) and recovered from without a restart."""
import json
import os
import pickle
import sys
import threading
import time

import pytest

from chalicelib.errors import ModelUnavailable
from chalicelib.inference.classifier import load_classifier
from chalicelib.inference.lazy import LazyModel
from chalicelib.inference.store import ManifestError, read_manifest
from chalicelib.inference.torch_import import RUNTIME_REPORT, TorchUnavailable, import_torch
from tests.support.fixtures import REPO
from tests.support.model_store import (
    FakeClassifier,
    copy_store,
    current_dir,
    edit_manifest,
    post_png,
)
from tests.support.serving import run_isolated, serving
from vendor_efs.models.demo import VERSION


@pytest.fixture
def store_copy(demo_store, tmp_path):
    return copy_store(demo_store, tmp_path)


def test_the_pointer_is_resolved_once_so_the_loaded_version_is_pinned(store_copy):
    manifest = read_manifest(current_dir(store_copy))
    assert manifest.directory.name == VERSION and manifest.directory.parent.name == manifest.name


def test_a_missing_store_is_503_with_a_message_saying_where(tmp_path):
    with serving(tmp_path / "nothing-here") as client:
        response = post_png(client)
        assert response.status_code == 503
        assert "no model at" in json.loads(response.body)["Message"]
        assert client.http.get("/model").status_code == 503


def test_bad_input_is_refused_without_loading_the_model(tmp_path):
    with serving(tmp_path / "nothing-here") as client:
        response = client.http.post("/xray", headers={"Content-Type": "image/png"}, body=b"x")
        assert response.status_code == 415
        assert json.loads(client.http.get("/health").body)["model"]["state"] == "not_loaded"


@pytest.mark.parametrize("changes, message", [
    ({"labels": ["A", "A"]}, "duplicates"),
    ({"thresholds": {"Atelectasis": 0.5}}, "every label"),
    ({"weights": {"file": "model.safetensors", "format": "pickle", "sha256": "0" * 64}},
     "pickled weights are never loaded"),
    ({"architecture": {"name": "resnet9000"}}, "unknown architecture"),
    ({"format": "something-else/2"}, '"format" must be'),
    ({"accepts": {"views": []}}, '"accepts.views" must be a non-empty list'),
])
def test_invalid_manifests_are_named_precisely(store_copy, changes, message):
    edit_manifest(store_copy, **changes)
    with pytest.raises(ManifestError, match=message):
        load_classifier(current_dir(store_copy), None)


@pytest.mark.parametrize("feature_map,message", [
    ({"output": "features", "layer": "layer4"},
     "must be this architecture's Grad-CAM layer \\(features.norm5\\), not 'layer4'"),
    ({"output": "", "layer": "features.norm5"}, "needs the graph's \"output\" name"),
    ({"layer": "features.norm5"}, "needs the graph's \"output\" name"),
    ("features", "needs the graph's \"output\" name"),
])
def test_a_wrong_feature_map_entry_is_named_precisely(store_copy, feature_map, message):
    """onnx.feature_map (optional) names the graph output holding the Grad-CAM layer."""
    manifest = json.loads((current_dir(store_copy) / "manifest.json").read_text())
    edit_manifest(store_copy, onnx={**manifest["onnx"], "feature_map": feature_map})
    with pytest.raises(ManifestError, match=message):
        load_classifier(current_dir(store_copy), None)


def test_a_manifest_without_a_feature_map_is_valid_and_heatmaps_go_through_torch(store_copy):
    manifest = json.loads((current_dir(store_copy) / "manifest.json").read_text())
    assert manifest["onnx"]["feature_map"] == {"output": "features", "layer": "features.norm5"}
    del manifest["onnx"]["feature_map"]
    edit_manifest(store_copy, onnx=manifest["onnx"])
    classifier = load_classifier(current_dir(store_copy), None, backend="onnxruntime")
    assert classifier.backend == "onnxruntime" and not classifier.closed_form_heatmaps


class _Boom:
    """Unpickling this would create a marker file: proof that pickle never runs."""
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_in_place_of_the_weights_is_refused_and_never_executed(store_copy, tmp_path):
    import hashlib
    _Boom.marker = tmp_path / "pickle-was-executed"
    payload = pickle.dumps({"features.conv0.weight": _Boom()})
    (current_dir(store_copy) / "model.safetensors").write_bytes(payload)
    manifest = json.loads((current_dir(store_copy) / "manifest.json").read_text())
    manifest["weights"]["sha256"] = hashlib.sha256(payload).hexdigest()  # even if "trusted"
    (current_dir(store_copy) / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception):
        load_classifier(current_dir(store_copy), None)
    assert not _Boom.marker.exists()


def test_loading_never_calls_pickle_or_torch_load(demo_store, monkeypatch):
    import torch

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling at serving time")
    for target, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                         (torch, "load")):
        monkeypatch.setattr(target, name, forbidden)
    classifier = load_classifier(current_dir(demo_store), None)
    assert len(classifier.manifest.labels) == 18


def test_concurrent_first_requests_load_once():
    calls = []
    sentinel = FakeClassifier()

    def slow_load(path, packages, backend):
        calls.append(threading.get_ident())
        time.sleep(0.3)
        return sentinel

    model = LazyModel(REPO, None, load=slow_load)
    results = []
    threads = [threading.Thread(target=lambda: results.append(model.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    assert model.status()["state"] == "loading"
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and results == [sentinel] * 8


def test_the_real_model_under_concurrent_first_requests(store_copy):
    with serving(store_copy) as client:
        statuses = []
        threads = [threading.Thread(target=lambda: statuses.append(post_png(client).status_code))
                   for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * 4


def test_a_failed_load_is_retried_by_the_first_request_after_the_backoff():
    attempts = []

    def flaky_load(path, packages, backend):
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("EFS not mounted yet")
        return classifier

    classifier = FakeClassifier()
    model = LazyModel(REPO, None, load=flaky_load)
    model.RETRY_FIRST_S = 0.3
    with pytest.raises(ModelUnavailable, match="EFS not mounted yet"):
        model.get()
    assert model.status()["state"] == "failed" and model.loaded_manifest() is None
    # within the backoff: the same answer at once, saying when the retry comes, and no reload
    with pytest.raises(ModelUnavailable, match=r"EFS not mounted yet \(the next attempt to "
                                               r"load it is in \d s\)") as raised:
        model.get()
    assert 0 < raised.value.retry_after_s <= 0.3 and len(attempts) == 1
    time.sleep(0.35)
    assert model.get() is classifier and model.status()["state"] == "ready"
    assert len(attempts) == 2 and "error" not in model.status()


def test_the_backoff_doubles_after_each_failure_up_to_its_cap():
    outcomes = [OSError("down")] * 4 + [None]
    classifier = FakeClassifier()

    def load(path, packages, backend):
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return classifier

    model = LazyModel(REPO, None, load=load)
    model.RETRY_FIRST_S, model.RETRY_MAX_S = 0.2, 0.5
    waits = []
    for _ in range(4):
        with pytest.raises(ModelUnavailable):
            model.get()
        waits.append(model.status()["retry_in_s"])
        time.sleep(waits[-1] + 0.05)
    assert waits == [0.2, 0.4, 0.5, 0.5]
    assert model.get() is classifier and model.status()["attempts"] == 5


def test_a_missing_packages_path_is_reported(tmp_path):
    with pytest.raises(RuntimeError, match="is EFS mounted"):
        import_torch(tmp_path / "not-mounted")


def test_a_runtime_built_for_another_python_is_named_with_what_to_do(tmp_path):
    # given a tree that vendor_efs.runtime built for python3.11, when 3.13 runs the function
    (tmp_path / RUNTIME_REPORT).write_text(json.dumps({"python": "3.11", "arch": "x86_64"}))
    with pytest.raises(TorchUnavailable, match=r"built for python3\.11; this function runs "
                                               r"python3\.\d+\. Rebuild it") as raised:
        import_torch(tmp_path)
    assert "vendor_efs.ship runtime" in str(raised.value)
    assert os.path.realpath(tmp_path) not in sys.path


def test_the_packages_path_is_put_first_on_sys_path_before_torch_is_imported(tmp_path):
    # A stand-in "torch" on the EFS path must win over the venv's real one.
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("FROM_EFS = True\n")
    out = run_isolated(
        "import sys; from pathlib import Path;"
        "from chalicelib.inference.torch_import import import_torch;"
        f"t = import_torch(Path({str(tmp_path)!r})); print(t.FROM_EFS, sys.path[0])")
    assert out.split() == ["True", os.path.realpath(tmp_path)]


def test_importing_the_app_loads_nothing_heavy_and_the_model_lazily():
    out = run_isolated(
        "import sys, app; m = app.get_model();"
        "print(m.status()['state'], [x for x in ('torch', 'numpy', 'PIL', 'pydicom') "
        "if x in sys.modules])")
    assert out.strip() == "not_loaded []"


def test_the_app_imports_where_torch_numpy_and_pillow_are_not_installed():
    # What `chalice deploy` does on a deploying machine that has only chalice.
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision', 'numpy', 'PIL', 'pydicom',"
        " 'safetensors'):\n"
        "            raise ImportError('not installed: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import app\n"
        "print(sorted(r for r in app.app.routes))\n")
    routes = set(eval(run_isolated(blocker)))
    assert {'/health', '/model', '/xray'} <= routes
