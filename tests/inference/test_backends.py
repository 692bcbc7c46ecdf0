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


def rewrite_graph(folder, edit, keep_feature_map=True) -> None:
    """Edits the model's ONNX graph (its external data left where it is) and the manifest to
    match it: its sha256, and onnx.feature_map kept or removed."""
    import hashlib
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    path = folder / manifest["onnx"]["file"]
    graph = onnx.load(str(path), load_external_data=False)
    edit(graph.graph)
    data = graph.SerializeToString()
    path.write_bytes(data)
    manifest["onnx"]["sha256"] = hashlib.sha256(data).hexdigest()
    if not keep_feature_map:
        del manifest["onnx"]["feature_map"]
    manifest_path.write_text(json.dumps(manifest))


def without_feature_output(graph) -> None:
    """The graph as exported before the feature map output existed: logits only."""
    kept = [output for output in graph.output if output.name == "logits"]
    del graph.output[:]
    graph.output.extend(kept)


def test_a_graph_from_before_the_feature_map_gets_its_heatmaps_through_torch(
        store_copy, demo_store):
    """Models imported before the feature map output need no re-import: their heatmap comes
    from torch's autograd, as before, and is the same map."""
    rewrite_graph(store_copy.resolve(), without_feature_output, keep_feature_map=False)
    old = load_classifier(store_copy, None, backend="onnxruntime")
    new = load_classifier(demo_store / "models" / "current", None, backend="onnxruntime")
    assert (old.backend, old.closed_form_heatmaps, new.closed_form_heatmaps) == (
        "onnxruntime", False, True)
    batch = old.preprocess(decode(PNG_CARDIOMEGALY.read_bytes(), "image/png", LIMITS).pixels)
    assert old._torch_backend is None
    through_torch = old.explain(batch, old.label_index("Cardiomegaly"))
    assert old._torch_backend is not None  # built for the heatmap, from the checked bytes
    closed_form = new.explain(batch, new.label_index("Cardiomegaly"))
    assert through_torch.probabilities == closed_form.probabilities == old.inference(batch)
    assert through_torch.heatmap["label"] == closed_form.heatmap["label"] == "Cardiomegaly"
    difference = np.abs(np.array(through_torch.heatmap["cam"])
                        - np.array(closed_form.heatmap["cam"])).max()
    assert difference <= 1e-4


def test_a_feature_map_the_graph_does_not_have_is_refused_at_load(store_copy):
    rewrite_graph(store_copy.resolve(), without_feature_output, keep_feature_map=True)
    with pytest.raises(ManifestError, match="has no output 'features'"):
        load_classifier(store_copy, None, backend="onnxruntime")


def test_a_feature_map_output_that_is_not_what_the_head_reads_is_refused_at_load(store_copy):
    """The self-test applies the head (pool, linear) to the feature map in numpy and compares
    with the graph's logits: a graph whose "features" is another tensor of the same shape (here
    norm5's input) would explain the wrong thing, so it does not load."""
    def features_from_norm5s_input(graph) -> None:
        producer = next(node for node in graph.node if "features" in node.output)
        for node in graph.node:
            for names in (node.input, node.output):
                for i, name in enumerate(names):
                    if name == "features":
                        names[i] = "norm5_output"
        graph.node.append(onnx.helper.make_node("Identity", [producer.input[0]], ["features"]))
    rewrite_graph(store_copy.resolve(), features_from_norm5s_input)
    with pytest.raises(ManifestError, match="is not what its head reads"):
        load_classifier(store_copy, None, backend="onnxruntime")


NO_TORCH = (
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


def test_classification_needs_no_torch_at_all(demo_store):
    """What a function without torch on EFS does: classify, and draw heatmaps (the graph's
    feature map and numpy)."""
    out = run_isolated(NO_TORCH, str(demo_store), str(PNG_CARDIOMEGALY))
    status, model, backend, heat_status, heat = json.loads(out.strip().splitlines()[-1])
    assert (status, backend) == (200, "onnxruntime") and model["trained"] is False
    assert heat_status == 200 and heat["heatmap"]["png"].startswith("data:image/png;base64,")


def test_without_torch_an_older_graphs_heatmap_is_a_503_that_says_to_re_import(store_copy):
    """A model exported before the feature map output, on a function without torch: it
    classifies, and its heatmap is refused clearly (torch, or a re-import, would draw it)."""
    rewrite_graph(store_copy.resolve(), without_feature_output, keep_feature_map=False)
    out = run_isolated(NO_TORCH, str(store_copy.parent.parent), str(PNG_CARDIOMEGALY))
    status, _, backend, heat_status, heat = json.loads(out.strip().splitlines()[-1])
    assert (status, backend, heat_status) == (200, "onnxruntime", 503)
    assert "torch" in heat["Message"] and "re-importing the model" in heat["Message"]


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
    if platform.machine() == "x86_64":  # one before the head, one for the feature map output
        assert operators.count("ReorderOutput") == 2
