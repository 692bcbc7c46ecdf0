"""The model-store fault table (benchmarks/faults.py names its rows): every broken store gives
a JSON 503 saying what is wrong and what to do, /health live-but-not-ready with the reason, no
half-loaded model, and a fixed store is served without a restart. A slow store answers before
the Lambda deadline; the bytes that run are the bytes that were hashed."""
import hashlib
import json
import os
import shutil
import threading
import time

import numpy as np
import pytest

from benchmarks.faults import FAULTS, invoke, slow_weights, version_dir
from chalicelib.errors import ModelStillLoading
from chalicelib.imaging.dispatch import decode
from chalicelib.imaging.image import Limits
from chalicelib.inference import classifier as classifier_module
from chalicelib.inference.classifier import load_classifier
from chalicelib.inference.lazy import ANSWER_MARGIN_S, LazyModel
from chalicelib.inference.store import ManifestError
from tests.support.fixtures import PNG_CARDIOMEGALY, REPO
from tests.support.model_store import FakeClassifier, copy_store, post_png
from tests.support.serving import serving
from vendor_efs.models.onnx_export import safetensors_layout

UNREADABLE = "Is a directory" if os.geteuid() == 0 else "Permission denied"
# fault -> what its message must say: what is wrong, and what to do
EXPECTED = {
    "missing store": ["no model at", "(manifest.json not found)", "Install a model version",
                      "point XRAY_EFS_ROOT or XRAY_MODEL_PATH at a model store"],
    "missing weights": ["cannot read", "model.safetensors: No such file or directory",
                        "re-install the model version"],
    "truncated weights": ["model.safetensors has sha256", "(14,141,448 bytes)",
                          "incomplete or altered copy", "Re-install the model version"],
    "sha256 mismatch (one bit)": ["model.safetensors has sha256", "(28,282,896 bytes)",
                                  "the manifest says", "Re-install the model version"],
    "manifest lies: label count": ["the manifest lists 17 labels but the model has 18 outputs",
                                   "Fix manifest.json or re-import the model"],
    "manifest lies: input shape": ["model.onnx takes input [1, 224, 224]",
                                   "the manifest says [1, 512, 512]", 'Fix "input"'],
    "unreadable weights": ["cannot read", f"model.safetensors: {UNREADABLE}"],
    "missing ONNX graph": ["cannot read", "model.onnx: No such file or directory"],
    "corrupt ONNX graph": ["onnxruntime cannot load model.onnx", "Re-export the model"],
}
BROKEN = [fault for fault in FAULTS if fault.name in EXPECTED]


@pytest.fixture
def store_copy(demo_store, tmp_path):
    return copy_store(demo_store, tmp_path)


def test_every_row_of_the_fault_table_has_its_test():
    assert {fault.name for fault in FAULTS} == set(EXPECTED) | {"slow store (EFS under load)"}


@pytest.mark.parametrize("fault", BROKEN, ids=lambda fault: fault.name)
def test_given_a_store_with_the_fault_when_post_xray_then_503_saying_why_and_fixed_recovers(
        store_copy, fault, monkeypatch):
    import app as app_module
    monkeypatch.setattr(LazyModel, "RETRY_FIRST_S", 0.2)  # the schedule is tested on its own
    with fault.inject(store_copy) as fix, serving(store_copy) as client:
        # when POST /xray
        response = post_png(client)
        # then a JSON 503 that says what is wrong and what to do
        assert response.status_code == 503, response.body
        assert response.headers["Content-Type"] == "application/json"
        body = json.loads(response.body)
        assert body["Code"] == "ModelUnavailable" and "Traceback" not in body["Message"]
        for fragment in EXPECTED[fault.name]:
            assert fragment in body["Message"], (fragment, body["Message"])
        # and /health: live, not ready, failed, with the reason; no model half-loaded
        health = json.loads(client.http.get("/health").body)
        assert health["live"] is True and health["ready"] is False
        assert health["model"]["state"] == "failed"
        assert EXPECTED[fault.name][-1] in health["model"]["error"]
        assert app_module.get_model().loaded_manifest() is None
        # when the operator fixes the store (no restart) and the backoff has passed
        fix()
        time.sleep(health["model"]["retry_in_s"] + 0.05)
        # then the next request loads it and is served
        response = post_png(client)
        assert response.status_code == 200, response.body
        health = json.loads(client.http.get("/health").body)
        assert health["ready"] is True and "error" not in health["model"]
        assert health["model"]["attempts"] == 2


def test_given_a_broken_store_when_requests_keep_coming_then_one_load_per_backoff(
        store_copy):
    with FAULTS[2].inject(store_copy), serving(store_copy) as client:  # truncated weights
        import app as app_module
        first = post_png(client)
        again = [post_png(client) for _ in range(5)]
        assert first.status_code == 503 and all(r.status_code == 503 for r in again)
        assert {r.headers["Retry-After"] for r in again} == {"1"}  # RETRY_FIRST_S
        assert app_module.get_model().status()["attempts"] == 1  # not 6 reads of 28 MB
        assert "the next attempt to load it is in" in json.loads(again[0].body)["Message"]


def test_an_unreadable_weights_file_says_the_access_point_user_must_read_it(
        store_copy, monkeypatch):
    # EACCES as the function's EFS access point user meets it (the tests may run as root,
    # who reads any file): the one read of the weights is refused
    weights = version_dir(store_copy) / "model.safetensors"
    real = type(weights).read_bytes

    def read_bytes(path):
        if path == weights:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)
    monkeypatch.setattr(type(weights), "read_bytes", read_bytes)
    with pytest.raises(ManifestError, match=r"cannot read .*model.safetensors: Permission "
                                            r"denied \(the function's EFS access point user "
                                            r"must be able to read the model folder\)"):
        load_classifier(store_copy / "models" / "current", None)


# --- a slow store ------------------------------------------------------------------------

def test_given_a_slow_load_when_the_deadline_comes_first_then_still_loading_in_time():
    release = threading.Event()
    classifier = FakeClassifier()

    def slow_load(path, packages, backend):
        release.wait(10)
        return classifier

    model = LazyModel(REPO, None, load=slow_load)
    started = time.monotonic()
    with pytest.raises(ModelStillLoading, match=r"still loading \(0 s so far") as raised:
        model.get(deadline=started + 0.3)
    assert 0.3 <= time.monotonic() - started < 1.0  # at the deadline, not at the load's end
    assert raised.value.retry_after_s >= 1 and model.status()["state"] == "loading"
    release.set()  # the load goes on without any request, and the next one is served
    assert model.get(deadline=time.monotonic() + 5) is classifier
    assert model.status()["attempts"] == 1


def test_requests_waiting_for_one_slow_load_all_proceed_when_it_finishes():
    calls = []
    classifier = FakeClassifier()

    def slow_load(path, packages, backend):
        calls.append(1)
        time.sleep(0.5)
        return classifier

    model = LazyModel(REPO, None, load=slow_load)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        model.get(deadline=time.monotonic() + 5))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [classifier] * 6 and len(calls) == 1


def test_given_a_slow_store_when_the_lambda_deadline_is_short_then_a_json_503_in_time_and_then_200(
        store_copy):
    # given weights that take ~4 s to read (a named pipe fed slowly: real, slow reads)
    with slow_weights(store_copy, seconds=4.0), serving(store_copy):
        import app as app_module
        png = PNG_CARDIOMEGALY.read_bytes()
        # when a request arrives with 3 s left before its function's timeout
        started = time.monotonic()
        status, headers, body = invoke(app_module, "POST", "/xray", png, "image/png",
                                       timeout_s=3)
        took = time.monotonic() - started
        # then a JSON 503 before the deadline (never the gateway's bare 504), with Retry-After
        assert status == 503 and body["Code"] == "ModelStillLoading", body
        assert headers["Content-Type"] == "application/json" and int(headers["Retry-After"]) >= 1
        assert "still loading" in body["Message"] and "retry" in body["Message"]
        # (it waited until its deadline less the margin, and answered within the timeout)
        assert 3 - ANSWER_MARGIN_S - 0.1 <= took < 3
        health = invoke(app_module, "GET", "/health")[2]
        assert health["ready"] is False and health["model"]["state"] == "loading"
        # when more requests come during the same load, with enough time left
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(invoke(
            app_module, "POST", "/xray", png, "image/png", timeout_s=28)[0]))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # then they wait for that load and are served: one load for all of them
        assert answers == [200] * 3
        assert app_module.get_model().status()["attempts"] == 1


# --- the bytes that run are the bytes that were hashed -----------------------------------

def _bias_shifted(weights: bytes, by: float) -> bytes:
    """The same safetensors file (same header, same layout) with classifier.bias + by."""
    _, shape, offset, length = safetensors_layout(weights)["classifier.bias"]
    bias = np.frombuffer(weights, np.float32, count=length // 4, offset=offset) + by
    return weights[:offset] + bias.astype(np.float32).tobytes() + weights[offset + length:]


def _probabilities(classifier):
    pixels = decode(PNG_CARDIOMEGALY.read_bytes(), "image/png", Limits(40_000_000, 32)).pixels
    return np.array(classifier.inference(classifier.preprocess(pixels)))


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_given_files_swapped_right_after_their_check_when_loaded_then_the_checked_ones_serve(
        demo_store, store_copy, backend, monkeypatch):
    folder = version_dir(store_copy)
    original = (folder / "model.safetensors").read_bytes()
    swapped = _bias_shifted(original, 3.0)
    checked = []

    def verified_then_swapped(path, sha256):
        data = real_verified(path, sha256)
        checked.append(path.name)
        if path.name == "model.safetensors":  # a valid file of the same layout, other values
            path.write_bytes(swapped)
        else:                                 # the graph: gone, so nothing can re-read it
            path.unlink()
        return data
    real_verified = classifier_module._verified
    monkeypatch.setattr(classifier_module, "_verified", verified_then_swapped)
    served = load_classifier(folder, None, backend=backend)
    monkeypatch.undo()
    assert checked == (["model.safetensors", "model.onnx"] if backend == "onnxruntime"
                       else ["model.safetensors"])
    # then it answers what the checked (original) model answers
    reference = load_classifier(demo_store / "models" / "current", None, backend=backend)
    assert np.abs(_probabilities(served) - _probabilities(reference)).max() <= 1e-6
    # and the swapped file would have answered differently: the swap was there to be seen
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["weights"]["sha256"] = hashlib.sha256(swapped).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    if backend == "onnxruntime":
        shutil.copy(version_dir(demo_store) / "model.onnx", folder / "model.onnx")
    other = load_classifier(folder, None, backend=backend)
    assert np.abs(_probabilities(other) - _probabilities(reference)).max() > 0.1
    # the heatmap's torch network is built from the same checked bytes, not from the disk
    bias = served.torch_backend().network.classifier.bias.detach().numpy()
    original_bias = np.frombuffer(original, np.float32, count=18,
                                  offset=safetensors_layout(original)["classifier.bias"][2])
    assert np.array_equal(bias, original_bias)


def test_a_graph_naming_a_file_it_was_not_given_is_refused_never_read_from_disk(
        demo_store, tmp_path, monkeypatch):
    import onnx

    from chalicelib.inference.backends import OnnxBackend
    folder = version_dir(demo_store)
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for tensor in graph.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "other.safetensors"
    weights = (folder / "model.safetensors").read_bytes()
    (tmp_path / "other.safetensors").write_bytes(weights)  # there, to be found if looked for
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="other.safetensors not found from the table"):
        OnnxBackend(graph.SerializeToString(), {"model.safetensors": weights})
