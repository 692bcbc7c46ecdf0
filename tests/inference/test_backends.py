"""The onnxruntime backend against the torch one: same answers, no torch needed to classify,
and its graph verified like the weights (it holds none of its own: they are read from the
model's safetensors file)."""
import json
import shutil

import numpy as np
import onnx
import pytest

from chalicelib.imaging.dispatch import decode
from chalicelib.imaging.image import Limits
from chalicelib.inference.classifier import load_classifier
from chalicelib.inference.store import ManifestError
from tests.support.fixtures import ALL_FIXTURES, CONTENT_TYPE, PNG_CARDIOMEGALY, fixture_id
from tests.support.serving import run_isolated

LIMITS = Limits(40_000_000, 32)


@pytest.fixture(scope="module")
def both(demo_store):
    current = demo_store / "models" / "current"
    return (load_classifier(current, None, backend="onnxruntime"),
            load_classifier(current, None, backend="torch"))


def test_auto_serves_onnxruntime_when_the_model_has_a_graph(demo_store):
    assert load_classifier(demo_store / "models" / "current", None).backend == "onnxruntime"


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_onnxruntime_answers_what_torch_answers(both, path):
    ort, torch_ = both
    batch = ort.preprocess(decode(path.read_bytes(), CONTENT_TYPE[path.suffix], LIMITS).pixels)
    difference = np.abs(np.array(ort.inference(batch)) - np.array(torch_.inference(batch))).max()
    print(f"{path.name}: max |p_onnxruntime - p_torch| = {difference:.1e}")
    assert difference <= 1e-4


def test_the_graph_reads_its_weights_from_the_safetensors_file(demo_store):
    folder = (demo_store / "models" / "current").resolve()
    manifest = json.loads((folder / "manifest.json").read_text())
    graph = onnx.load(str(folder / manifest["onnx"]["file"]), load_external_data=False)
    assert (folder / manifest["onnx"]["file"]).stat().st_size < 1_000_000  # no weights inside
    locations = {entry.value for tensor in graph.graph.initializer
                 for entry in tensor.external_data if entry.key == "location"}
    assert locations == {"model.safetensors"} and len(graph.graph.initializer) > 300
    assert manifest["onnx"]["checked_max_abs_difference"] <= 1e-4


@pytest.fixture
def store_copy(demo_store, tmp_path):
    shutil.copytree(demo_store, tmp_path / "efs", symlinks=True)
    return tmp_path / "efs" / "models" / "current"


def test_a_tampered_graph_is_refused(store_copy):
    graph = store_copy / "model.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(ManifestError, match="model.onnx has sha256"):
        load_classifier(store_copy, None)


def test_without_a_graph_auto_falls_back_to_torch_and_onnxruntime_says_why(store_copy):
    manifest_path = store_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["onnx"]
    manifest_path.write_text(json.dumps(manifest))
    assert load_classifier(store_copy, None).backend == "torch"
    with pytest.raises(ManifestError, match="has no ONNX graph"):
        load_classifier(store_copy, None, backend="onnxruntime")


def test_classification_needs_no_torch_at_all(demo_store):
    """What a function without torch on EFS does: classify (and refuse a heatmap clearly)."""
    code = (
        "import sys, json\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
        "            raise ImportError('no torch here: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import os; os.environ['XRAY_EFS_ROOT'] = sys.argv[1]\n"
        "import app\n"
        "from chalice.test import Client\n"
        "with Client(app.app) as c:\n"
        "    body = open(sys.argv[2], 'rb').read()\n"
        "    plain = c.http.post('/xray', headers={'Content-Type': 'image/png'}, body=body)\n"
        "    heat = c.http.post('/xray?heatmap=top', headers={'Content-Type': 'image/png'},"
        " body=body)\n"
        "    print(json.dumps([plain.status_code, json.loads(plain.body)['model'],"
        " app.get_model().status()['backend'], heat.status_code, json.loads(heat.body)]))\n")
    out = run_isolated(code, str(demo_store), str(PNG_CARDIOMEGALY))
    status, model, backend, heat_status, heat = json.loads(out.strip().splitlines()[-1])
    assert (status, backend) == (200, "onnxruntime") and model["trained"] is False
    assert heat_status == 503 and "torch" in heat["Message"]


def test_no_batchnorm_breaks_onnxruntimes_blocked_layout(demo_store, tmp_path):
    """DenseNet's pre-activation batch-norms are exported as depthwise convolutions computed
    from their own parameters: once onnxruntime has optimised the graph, no BatchNormalization
    is left, and (on x86, where it uses the blocked NCHWc layout) no conversion out of it
    before the end."""
    import platform

    import onnxruntime

    folder = (demo_store / "models" / "current").resolve()
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    assert {tensor.data_location for tensor in graph.graph.initializer} == {
        onnx.TensorProto.EXTERNAL}  # the rewrite added no weights of its own
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                 providers=["CPUExecutionProvider"])
    optimised = onnx.load(str(tmp_path / "optimised.onnx"), load_external_data=False)
    operators = [node.op_type for node in optimised.graph.node]
    assert "BatchNormalization" not in operators and operators.count("Conv") == 182
    if platform.machine() == "x86_64":
        assert operators.count("ReorderOutput") == 1
