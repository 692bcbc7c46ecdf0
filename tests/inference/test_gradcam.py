"""Grad-CAM: computed from the served network's own gradients, for the label asked (default: the
top finding), drawn over the 224x224 model input, and never computed unless asked for."""
import base64
import io
import json

import numpy as np
import pytest
import torch

from chalicelib.inference import gradcam
from chalicelib.inference.architectures.densenet import gradcam_split as DENSENET_SPLIT
from tests.support.fixtures import DCM_J2K, PNG_CARDIOMEGALY, PNG_NOFINDING
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
    heat = gradcam.upsample(gradcam.normalised(cam), 224, torch)
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
