"""Grad-CAM: the served network's own gradients, for the label asked (default: the top finding),
drawn over the 224x224 model input, and never computed unless asked for. With onnxruntime the
gradient is the head's closed form on the graph's feature map (numpy, no torch): it must be
torch's autograd Grad-CAM (gradcam.explain, the reference) for every fixture and label."""
import base64
import io
import json

import numpy as np
import pytest
import torch

from chalicelib.inference import gradcam
from chalicelib.inference.architectures.densenet import gradcam_split as DENSENET_SPLIT
from tests.support.fixtures import (
    ALL_FIXTURES,
    CONTENT_TYPE,
    DCM_J2K,
    PNG_CARDIOMEGALY,
    PNG_NOFINDING,
    fixture_id,
)
from tests.support.serving import run_isolated, serving


def post(client, body: bytes, content_type: str = "image/png", query: str = ""):
    response = client.http.post("/xray" + query, headers={"Content-Type": content_type},
                                body=body)
    return response.status_code, json.loads(response.body), len(response.body)


def png_of(data_url: str):
    from PIL import Image
    assert data_url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1])))


@pytest.fixture(scope="module")
def classifier(demo_store):
    from chalicelib.inference.classifier import load_classifier
    return load_classifier(demo_store / "models" / "current", None, backend="torch")


@pytest.fixture(scope="module")
def batch(classifier):
    from chalicelib.imaging.dispatch import decode
    from chalicelib.imaging.image import Limits
    image = decode(PNG_CARDIOMEGALY.read_bytes(), "image/png", Limits(40_000_000, 32))
    return classifier.preprocess(image.pixels)


def reference_cam(network, module_name: str, x: torch.Tensor, index: int) -> np.ndarray:
    """Grad-CAM the textbook way: the network's own forward (in-place ReLUs and all) with a
    full autograd graph from the parameters on, the target layer's output caught by a hook."""
    caught = {}

    def hook(module, inputs, output):
        caught["a"] = output
        return output.clone()  # so an in-place op after the layer cannot rewrite what we caught

    handle = network.get_submodule(module_name).register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = network(x)
            (grads,) = torch.autograd.grad(logits[0, index], caught["a"])
    finally:
        handle.remove()
    a = caught["a"].detach()
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * a).sum(dim=1))[0].numpy()


def test_the_trunk_head_split_is_the_network_for_every_architecture():
    from chalicelib.inference.architectures.registry import NAMES, spec
    torch.manual_seed(0)
    for name in NAMES:
        network = spec(name).build(num_classes=5, in_channels=1).eval()
        x = torch.randn(1, 1, 224, 224)
        trunk, head, target = spec(name).gradcam_split(network)
        with torch.no_grad():
            assert torch.equal(head(trunk(x)), network(x)), name
        assert network.get_submodule(target) is not None


def test_the_heatmap_is_the_models_own_grad_cam(classifier, batch):
    network = classifier.torch_backend().network
    for index in (10, 7):  # Cardiomegaly, Effusion
        ours = gradcam.explain(network, DENSENET_SPLIT, torch, batch, lambda probabilities: index)
        assert ours.target_layer == "features.norm5" and ours.cam.shape == (7, 7)
        expected = reference_cam(network, "features.norm5", torch.from_numpy(batch), index)
        assert expected.max() > 0
        np.testing.assert_allclose(ours.cam, expected, rtol=1e-4, atol=1e-6 * expected.max())


def test_a_resnet_gets_its_grad_cam_at_layer4():
    from chalicelib.inference.architectures.registry import spec
    torch.manual_seed(1)
    resnet = spec("resnet18")
    network = resnet.build(num_classes=3, in_channels=3).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    ours = gradcam.explain(network, resnet.gradcam_split, torch, x, lambda probabilities: 2)
    assert ours.target_layer == "layer4"
    np.testing.assert_allclose(ours.cam, reference_cam(network, "layer4", torch.from_numpy(x), 2),
                               rtol=1e-4, atol=1e-7)


def test_the_probabilities_are_those_of_plain_inference(classifier, batch):
    plain = classifier.inference(batch)
    explained = gradcam.explain(classifier.torch_backend().network, DENSENET_SPLIT, torch, batch,
                                lambda p: 0).probabilities
    assert explained == plain


def test_the_heatmap_changes_with_the_chosen_label(classifier, batch):
    cardiomegaly = classifier.explain(batch, classifier.label_index("Cardiomegaly")).heatmap
    effusion = classifier.explain(batch, classifier.label_index("effusion")).heatmap
    assert (cardiomegaly["label"], effusion["label"]) == ("Cardiomegaly", "Effusion")
    assert cardiomegaly["cam"] != effusion["cam"] and cardiomegaly["png"] != effusion["png"]


def test_the_overlay_puts_the_heat_where_the_map_is_hot():
    cam = np.zeros((7, 7), dtype=np.float32)
    cam[1, 5] = 3.0  # top right
    heat = gradcam.upsample(gradcam.normalised(cam), 224)
    assert heat.shape == (224, 224) and heat.min() >= 0 and heat.max() <= 1
    radiograph = np.full((224, 224), 0.5, dtype=np.float32)
    rgb = gradcam.overlay(radiograph, heat).astype(int)
    redness = rgb[..., 0] - rgb[..., 2]
    row, col = np.unravel_index(redness.argmax(), redness.shape)
    assert (row // 32, col // 32) == (1, 5)
    assert (rgb[200, 20] == 128).all()  # no heat there: the radiograph untouched
    assert gradcam.jet(np.array([0.0]))[0].tolist() == [0.0, 0.0, 0.5]  # cold: dark blue
    assert gradcam.jet(np.array([1.0]))[0].tolist() == [0.5, 0.0, 0.0]  # hot: dark red


def test_an_all_zero_map_stays_zero():
    assert not gradcam.normalised(np.zeros((7, 7), dtype=np.float32)).any()


def test_heatmap_top_explains_the_top_finding(client):
    status, plain, plain_size = post(client, PNG_CARDIOMEGALY.read_bytes())
    status, answer, size = post(client, PNG_CARDIOMEGALY.read_bytes(), query="?heatmap=top")
    assert status == 200
    heatmap = answer["heatmap"]
    top = answer["findings"][0]
    assert (heatmap["label"], heatmap["probability"], heatmap["threshold"]) == (
        top["label"], top["probability"], top["threshold"])
    assert answer["findings"] == plain["findings"] and "heatmap" not in plain
    assert heatmap["method"] == "Grad-CAM" and heatmap["target_layer"] == "features.norm5"
    assert heatmap["size"] == [224, 224]
    cam = np.array(heatmap["cam"])
    assert cam.shape == (7, 7) and cam.min() >= 0 and cam.max() == 1.0 and heatmap["peak"] > 0
    image = png_of(heatmap["png"])
    assert (image.size, image.mode) == ((224, 224), "RGB")
    assert set(answer["timings_ms"]) == {"decode", "preprocess", "inference", "model_load",
                                         "heatmap"}
    assert "heatmap" not in plain["timings_ms"]
    # far inside Lambda's 6 MB response limit
    assert size - plain_size < 300_000 and size < 1_000_000


@pytest.mark.parametrize("query", ["?heatmap=Cardiomegaly", "?heatmap=cardiomegaly"])
def test_heatmap_for_a_named_label(client, query):
    status, answer, _ = post(client, PNG_NOFINDING.read_bytes(), query=query)
    assert status == 200 and answer["heatmap"]["label"] == "Cardiomegaly"
    cardio = next(f for f in answer["findings"] if f["label"] == "Cardiomegaly")
    assert answer["heatmap"]["probability"] == cardio["probability"]


def test_a_dicom_gets_a_heatmap_too(client):
    status, answer, _ = post(client, DCM_J2K.read_bytes(), "application/dicom", "?heatmap=1")
    assert status == 200 and png_of(answer["heatmap"]["png"]).size == (224, 224)


def test_an_unknown_label_is_a_400_that_lists_the_labels(client):
    status, answer, _ = post(client, PNG_CARDIOMEGALY.read_bytes(), query="?heatmap=Lupus")
    assert status == 400 and answer["Code"] == "InvalidParameter"
    assert "Lupus" in answer["Message"] and "Cardiomegaly" in answer["Message"]


def test_the_lambda_entry_passes_the_query_parameter(demo_store):
    import app as app_module
    from lambda_sim.context import LambdaContext
    from lambda_sim.events import proxy_event
    with serving(demo_store):
        event = proxy_event("POST", "/xray", PNG_CARDIOMEGALY.read_bytes(), "image/png",
                            query={"heatmap": "Effusion"})
        response = app_module.app(event, LambdaContext())
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["heatmap"]["label"] == "Effusion"


@pytest.fixture(scope="module")
def torch_client(demo_store):
    with serving(demo_store, XRAY_BACKEND="torch") as c:
        yield c


def test_a_plain_request_does_no_gradient_work(torch_client, monkeypatch):
    """Without ?heatmap no autograd call is made and the forward pass records no graph."""
    def forbidden(*args, **kwargs):
        raise AssertionError("gradient work on a plain request")
    monkeypatch.setattr(torch.autograd, "grad", forbidden)
    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    seen = []
    client = torch_client  # the torch backend: the one whose forward could record a graph
    network = json.loads(client.http.post(  # make sure the model is loaded, then hook it
        "/xray", headers={"Content-Type": "image/png"}, body=PNG_NOFINDING.read_bytes()).body)
    assert "heatmap" not in network
    import app as app_module
    net = app_module.get_model().get().torch_backend().network
    handle = net.register_forward_hook(
        lambda module, inputs, output: seen.append((torch.is_grad_enabled(), output.requires_grad)))
    try:
        status, answer, _ = post(client, PNG_CARDIOMEGALY.read_bytes())
    finally:
        handle.remove()
    assert status == 200 and seen == [(False, False)]


def test_a_plain_request_never_imports_the_gradcam_module(demo_store):
    code = (
        "import os, sys; os.environ['XRAY_EFS_ROOT'] = sys.argv[1]\n"
        "import app\n"
        "from chalice.test import Client\n"
        "with Client(app.app) as c:\n"
        "    png = {'headers': {'Content-Type': 'image/png'},\n"
        "           'body': open(sys.argv[2], 'rb').read()}\n"
        "    r = c.http.post('/xray', **png)\n"
        "    assert r.status_code == 200, r.body\n"
        "    print('IMPORTED', 'chalicelib.inference.gradcam' in sys.modules)\n"
        "    r = c.http.post('/xray?heatmap=top', **png)\n"
        "    print('IMPORTED', 'chalicelib.inference.gradcam' in sys.modules)\n")
    out = run_isolated(code, str(demo_store), str(PNG_CARDIOMEGALY))
    imported = [line.split()[1] for line in out.splitlines()
                if line.startswith("IMPORTED ")]
    assert imported == ["False", "True"]


# The closed form (numpy) against torch's autograd.

TOLERANCE = 1e-5  # on the map as it is drawn: normalised to its peak, upsampled to 224 x 224


def torch_heat(cam: np.ndarray, size: int = 224) -> np.ndarray:
    """The reference's drawing of a map: normalised, torch's bilinear interpolate."""
    tensor = torch.from_numpy(gradcam.normalised(cam))[None, None]
    up = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear",
                                         align_corners=False)
    return up[0, 0].numpy().clip(0.0, 1.0)


def numpy_heat(cam: np.ndarray, size: int = 224) -> np.ndarray:
    return gradcam.upsample(gradcam.normalised(cam), size)


@pytest.fixture(scope="module")
def served(demo_store):
    from chalicelib.inference.classifier import load_classifier
    return load_classifier(demo_store / "models" / "current", None, backend="onnxruntime")


@pytest.fixture(scope="module")
def batches(served):
    from chalicelib.imaging.dispatch import decode
    from chalicelib.imaging.image import Limits
    return {path: served.preprocess(decode(path.read_bytes(), CONTENT_TYPE[path.suffix],
                                           Limits(40_000_000, 32)).pixels)
            for path in ALL_FIXTURES}


def head_weight(classifier, name="classifier.weight"):
    from chalicelib.inference.classifier import safetensors_array
    return safetensors_array(classifier._weights, name)


def test_the_head_table_agrees_with_every_architectures_spec():
    """HEADS (no torch needed to read it) says what each network's gradcam_split and forward
    do: the same target layer, the head's linear layer, and whether the head applies a ReLU."""
    from chalicelib.inference.architectures.registry import HEADS, NAMES, spec
    assert set(HEADS) == set(NAMES)
    torch.manual_seed(0)
    for name in NAMES:
        architecture, head = spec(name), HEADS[name]
        network = architecture.build(num_classes=4, in_channels=1).eval()
        trunk, split_head, layer = architecture.gradcam_split(network)
        assert head.layer == layer and head.weight == architecture.head_weight, name
        state = network.state_dict()
        assert {head.weight, head.bias} <= set(state), name
        # a feature map with negative values: only a ReLU in the head tells them from zero
        a = torch.randn(2, state[head.weight].shape[1], 7, 7)
        pooled = (torch.relu(a) if head.relu else a).mean(dim=(2, 3))
        with torch.no_grad():
            linear = pooled @ state[head.weight].T + state[head.bias]
            assert torch.allclose(split_head(a), linear, atol=1e-6), name
            wrong = (a if head.relu else torch.relu(a)).mean(dim=(2, 3)) @ state[head.weight].T
            assert not torch.allclose(split_head(a), wrong + state[head.bias], atol=1e-3), name


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_the_closed_form_is_torchs_grad_cam_for_every_label(classifier, batches, path):
    """On the torch network's own feature map, the closed form (numpy) draws the map the
    reference (gradcam.explain: autograd, torch's interpolate) draws, for all 18 labels."""
    network, batch = classifier.torch_backend().network, batches[path]
    with torch.no_grad():
        features = network.features(torch.from_numpy(batch)).numpy()[0]
    weight = head_weight(classifier)
    for index in range(len(classifier.manifest.labels)):
        reference = gradcam.explain(network, DENSENET_SPLIT, torch, batch, lambda p: index).cam
        ours = gradcam.closed_form_cam(features, weight[index], relu=True)
        assert reference.max() > 0, index
        assert np.abs(numpy_heat(ours) - torch_heat(reference)).max() <= TOLERANCE, index


def on_features(features: np.ndarray):
    """A gradcam_split whose trunk gives these features: the reference's autograd through the
    real head, on a feature map computed once."""
    def split(network):
        _, head, layer = DENSENET_SPLIT(network)
        return (lambda x: torch.from_numpy(features)), head, layer
    return split


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_the_served_heatmap_is_torchs_grad_cam_of_the_served_feature_map(
        served, classifier, batches, path):
    """What onnxruntime serves (its graph's feature map, the closed form) is, for all 18
    labels, what torch's autograd gives for that same feature map through the head."""
    assert served.closed_form_heatmaps and served.backend == "onnxruntime"
    network, batch = classifier.torch_backend().network, batches[path]
    split = on_features(served._backend.logits_and_features(batch)[1])
    for index in range(len(served.manifest.labels)):
        ours = served._explain_closed_form(batch, lambda p: index)
        reference = gradcam.explain(network, split, torch, batch, lambda p: index).cam
        assert ours.target_layer == "features.norm5" and ours.index == index
        assert np.abs(numpy_heat(ours.cam) - torch_heat(reference)).max() <= TOLERANCE, index


END_TO_END = 1e-4  # measured worst without a feature across 0: 1.5e-5 (the README's table)


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_the_served_heatmap_is_the_torch_backends_but_for_the_trunks_rounding(
        served, classifier, batches, path):
    """End to end, onnxruntime's heatmap against the torch backend's autograd one. The two
    trunks differ in float rounding (features about 1e-6 of their range apart), which the map
    carries: up to END_TO_END. Where the rounding moves a feature across 0, the head's ReLU
    passes it in one and not the other and that channel's weight changes by 1/49 (Grad-CAM's
    gradient is a step there): only then may the maps differ by more, and only at features
    that torch itself puts within 1e-4 of 0."""
    network, batch = classifier.torch_backend().network, batches[path]
    with torch.no_grad():
        theirs = network.features(torch.from_numpy(batch)).numpy()
    mine = served._backend.logits_and_features(batch)[1]
    flipped = (theirs > 0) != (mine > 0)
    assert np.abs(theirs[flipped]).max(initial=0.0) < 1e-4
    worst = 0.0
    for index in range(len(served.manifest.labels)):
        ours = served._explain_closed_form(batch, lambda p: index).cam
        reference = gradcam.explain(network, on_features(theirs), torch, batch,
                                    lambda p: index).cam
        worst = max(worst, float(np.abs(numpy_heat(ours) - torch_heat(reference)).max()))
    print(f"{path.name}: {int(flipped.sum())} features across 0, worst map difference "
          f"{worst:.1e}")
    if not flipped.any():
        assert worst <= END_TO_END


def test_a_resnets_closed_form_is_its_grad_cam_at_layer4():
    """No ReLU in ResNet's head (layer4 ends in one): every position counts."""
    from chalicelib.inference.architectures.registry import HEADS, spec
    torch.manual_seed(1)
    resnet = spec("resnet18")
    network = resnet.build(num_classes=3, in_channels=3).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        features = network.trunk(torch.from_numpy(x)).numpy()[0]
    weight = network.fc.weight.detach().numpy()
    for index in range(3):
        reference = gradcam.explain(network, resnet.gradcam_split, torch, x, lambda p: index).cam
        ours = gradcam.closed_form_cam(features, weight[index], HEADS["resnet18"].relu)
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6 * reference.max())


@pytest.mark.parametrize("source,size", [(7, 224), (7, 512), (5, 13), (16, 224), (3, 3), (1, 4)])
def test_the_numpy_upsampling_is_torchs_bilinear_interpolate(source, size):
    cam = np.random.default_rng(source * size).random((source, source)).astype(np.float32)
    ours = gradcam.upsample(cam, size)
    theirs = torch.nn.functional.interpolate(torch.from_numpy(cam)[None, None], size=(size, size),
                                             mode="bilinear", align_corners=False)[0, 0].numpy()
    assert ours.shape == (size, size) and ours.dtype == np.float32
    # torch computes the sample positions in float32, numpy here in float64
    assert np.abs(ours - theirs.clip(0, 1)).max() <= 2e-6


def test_a_closed_form_heatmap_keeps_the_probabilities_of_plain_inference(served, batch):
    explained = served.explain(batch, served.label_index("Effusion"))
    assert explained.probabilities == served.inference(batch)  # to the last bit
    effusion = served.manifest.labels.index("Effusion")
    assert explained.heatmap["probability"] == round(explained.probabilities[effusion], 6)


def test_the_heatmap_answer_has_the_same_members_on_both_backends(served, classifier, batch):
    ours = served.explain(batch, None).heatmap
    theirs = classifier.explain(batch, None).heatmap
    assert list(ours) == list(theirs) == ["method", "target_layer", "label", "probability",
                                          "threshold", "size", "cam", "peak", "png"]
    assert {k: v for k, v in ours.items() if k not in ("cam", "png", "peak", "probability")} \
        == {k: v for k, v in theirs.items() if k not in ("cam", "png", "peak", "probability")}
    assert ours["peak"] == pytest.approx(theirs["peak"], rel=1e-4)
    assert np.abs(np.array(ours["cam"]) - np.array(theirs["cam"])).max() <= 1e-4
