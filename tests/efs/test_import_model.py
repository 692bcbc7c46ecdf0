"""vendor_efs.models.importer: files built here from torchxrayvision's and torchvision's own
architectures (random weights, batch-norm statistics set so outputs are not saturated) are
imported, then served through our loader, and must answer what the original model answers."""
import json
import pickle

import numpy as np
import pytest
import torch

xrv = pytest.importorskip("torchxrayvision")
torchvision = pytest.importorskip("torchvision")

from chalicelib.imaging.dispatch import decode  # noqa: E402
from chalicelib.imaging.image import Limits  # noqa: E402
from chalicelib.inference.classifier import load_classifier  # noqa: E402
from chalicelib.inference.preprocessing import imagenet  # noqa: E402
from chalicelib.inference.store import read_manifest  # noqa: E402
from tests.support.fixtures import (  # noqa: E402
    ALL_FIXTURES,
    CONTENT_TYPE,
    DCM_J2K,
    PNG_CARDIOMEGALY,
    PNG_TINY_RGB,
)
from vendor_efs.models.importer import NIH14_LABELS, main  # noqa: E402

LIMITS = Limits(40_000_000, 32)


def calibrated(model: torch.nn.Module, channels: int, scale: float) -> torch.nn.Module:
    """Random weights whose batch-norm statistics come from noise: moderate outputs."""
    torch.manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(4, channels, 224, 224) * scale)
    return model.eval()


def served_vs_original(target, original, apply_sigmoid: bool, fixtures) -> float:
    classifier = load_classifier(target, None)
    worst = 0.0
    for path in fixtures:
        batch = classifier.preprocess(decode(path.read_bytes(), CONTENT_TYPE[path.suffix],
                                             LIMITS).pixels)
        served = np.array(classifier.inference(batch))
        with torch.inference_mode():
            reference = original(torch.from_numpy(batch))
            reference = (torch.sigmoid(reference) if apply_sigmoid else reference)[0].numpy()
        worst = max(worst, float(np.abs(served - reference).max()))
    return worst


@pytest.fixture
def store(tmp_path):
    return tmp_path / "models"


def test_a_torchxrayvision_release_style_pickle(tmp_path, store):
    original = calibrated(xrv.models.DenseNet(weights=None), 1, 500)
    original.op_threshs = torch.tensor([0.1 + 0.02 * i for i in range(18)])
    path = tmp_path / "densenet121-res224-test.pt"
    torch.save(original, path)  # a whole pickled model, as torchxrayvision's releases are
    with pytest.warns(UserWarning, match="runs code from the file"):
        main(["xrv", str(path), "--name", "xrv-test", "--version", "1", "--store", str(store),
              "--use"])
    manifest = read_manifest(store / "current")
    assert manifest.labels == list(original.targets) and manifest.trained is True
    assert manifest.thresholds["Atelectasis"] == pytest.approx(0.1)
    assert manifest.preprocessing["recipe"] == "xrv" and manifest.input_size == 224
    original.op_threshs, original.apply_sigmoid = None, True
    difference = served_vs_original(store / "current", original, False, ALL_FIXTURES)
    print(f"torchxrayvision pickle: served vs original max difference {difference:.2e}")
    assert difference <= 1e-5


def test_untrained_outputs_of_a_release_are_not_reported(tmp_path, store):
    original = calibrated(xrv.models.DenseNet(weights=None), 1, 500)
    original.targets = list(original.targets[:14]) + ["", "", "", ""]  # like the NIH release
    original.op_threshs = torch.tensor([0.3] * 14 + [float("nan")] * 4)
    path = tmp_path / "nih.pt"
    torch.save(original, path)
    with pytest.warns(UserWarning):
        main(["xrv", str(path), "--name", "nih", "--version", "1", "--store", str(store)])
    classifier = load_classifier(store / "nih" / "1", None)
    result = classifier.postprocess(classifier.inference(classifier.preprocess(
        decode(PNG_CARDIOMEGALY.read_bytes(), "image/png", LIMITS).pixels)))
    assert len(result["findings"]) == 14 and "" not in {f["label"] for f in result["findings"]}


def chexnet_checkpoint(model: torch.nn.Module) -> dict:
    """How CheXNet (arnoweng) saved it: DataParallel `module.`, a `densenet121.` wrapper, the
    pre-0.4 torchvision names (`norm.1`), and a Sequential(Linear, Sigmoid) head."""
    state = {}
    for key, value in model.state_dict().items():
        key = key.replace("classifier.", "classifier.0.")
        for part in ("norm1", "norm2", "relu1", "relu2", "conv1", "conv2"):
            key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        state[f"module.densenet121.{key}"] = value
    return {"epoch": 7, "state_dict": state, "best_loss": 0.1}


def test_a_chexnet_style_torchvision_densenet_checkpoint(tmp_path, store):
    original = calibrated(torchvision.models.densenet121(num_classes=14), 3, 1)
    path = tmp_path / "chexnet.pth.tar"
    torch.save(chexnet_checkpoint(original), path)
    main(["torchvision", str(path), "--arch", "densenet121", "--labels", "nih14",
          "--name", "chexnet", "--version", "1", "--store", str(store)])
    manifest = read_manifest(store / "chexnet" / "1")
    assert manifest.labels == NIH14_LABELS and manifest.preprocessing["recipe"] == "imagenet"
    difference = served_vs_original(store / "chexnet" / "1", original, True, ALL_FIXTURES)
    print(f"CheXNet-style checkpoint: served vs original max difference {difference:.2e}")
    assert difference <= 1e-5


def test_a_torchvision_resnet_state_dict_with_module_prefix(tmp_path, store):
    original = calibrated(torchvision.models.resnet50(num_classes=14), 3, 1)
    path = tmp_path / "resnet50.pth"
    torch.save({f"module.{k}": v for k, v in original.state_dict().items()}, path)
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"Cardiomegaly": 0.42}))
    main(["torchvision", str(path), "--arch", "resnet50", "--labels", "nih14", "--name", "r50",
          "--version", "2", "--thresholds", str(thresholds), "--store", str(store)])
    manifest = read_manifest(store / "r50" / "2")
    assert manifest.thresholds["Cardiomegaly"] == 0.42 and manifest.thresholds["Mass"] == 0.5
    difference = served_vs_original(store / "r50" / "2", original, True,
                                    [PNG_CARDIOMEGALY, DCM_J2K])
    print(f"ResNet-50 state_dict: served vs original max difference {difference:.2e}")
    assert difference <= 1e-5


def test_a_state_dict_import_refuses_pickled_code(tmp_path, store):
    class Payload:
        def __reduce__(self):
            return (print, ("pickle executed",))
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"features.conv0.weight": Payload()}))
    with pytest.raises(SystemExit, match="weights_only"):
        main(["torchvision", str(path), "--name", "evil", "--version", "1",
              "--store", str(store)])
    assert not store.exists() or not any(store.iterdir())


def test_mismatched_weights_are_refused_with_the_keys_named(tmp_path, store):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=14).state_dict(), path)
    with pytest.raises(SystemExit, match="not a densenet121"):
        main(["torchvision", str(path), "--arch", "densenet121", "--name", "x", "--version",
              "1", "--store", str(store)])


@pytest.mark.parametrize("path", [PNG_CARDIOMEGALY, PNG_TINY_RGB])
def test_the_imagenet_recipe_matches_torchvision_transforms_to_within_rounding(path):
    import torchvision.transforms as T
    from PIL import Image
    image = Image.open(path).convert("L")
    theirs = T.Compose([T.CenterCrop(min(image.size)), T.Resize((224, 224)), T.Grayscale(3),
                        T.ToTensor(), T.Normalize([0.485, 0.456, 0.406],
                                                  [0.229, 0.224, 0.225])])(image).numpy()
    ours = imagenet(decode(path.read_bytes(), "image/png", LIMITS).pixels, 224)[0]
    # torchvision resizes 8-bit pixels and rounds to whole levels (a mean error of 1/4 level
    # for uniform rounding); we resize floats: at most ~1 level apart.
    levels = np.abs(ours - theirs) * 0.229 * 255
    print(f"{path.name}: max {levels.max():.2f}, mean {levels.mean():.3f} 8-bit levels")
    assert levels.max() <= 1.5 and levels.mean() <= 0.35
