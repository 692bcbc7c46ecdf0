"""Our preprocessing and model against torchxrayvision's own pipeline and DenseNet: the same
image must give the same model input, and the same weights the same probabilities."""
import warnings

import numpy as np
import pytest
import torch

xrv = pytest.importorskip("torchxrayvision")

from chalicelib.imaging.dispatch import decode  # noqa: E402
from chalicelib.imaging.image import Limits  # noqa: E402
from chalicelib.inference.architectures.densenet import DenseNet  # noqa: E402
from chalicelib.inference.classifier import load_classifier  # noqa: E402
from chalicelib.inference.preprocessing import xrv as our_preprocessing  # noqa: E402
from tests.support.fixtures import ALL_FIXTURES, CONTENT_TYPE, fixture_id  # noqa: E402

RANGE = 2048.0  # torchxrayvision's [-1024, 1024]


def reference_input(path) -> np.ndarray:
    """torchxrayvision's documented pipeline: load + normalize, center crop, resize to 224.
    VOI LUT on: the RG1 files carry a window, which our decoder applies as DICOM says."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.suffix == ".dcm":
            image = xrv.utils.read_xray_dcm(str(path), voi_lut=True)[None]
        else:
            image = xrv.utils.load_image(str(path))
        image = xrv.datasets.XRayCenterCrop()(image)
        return xrv.datasets.XRayResizer(224)(image)[None]


def our_input(path) -> np.ndarray:
    image = decode(path.read_bytes(), CONTENT_TYPE[path.suffix], Limits(40_000_000, 32))
    return our_preprocessing(image.pixels, 224)


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_model_input_matches_torchxrayvision(path):
    ours, theirs = our_input(path), reference_input(path)
    assert ours.shape == theirs.shape == (1, 1, 224, 224)
    difference = float(np.abs(ours - theirs).max())
    print(f"{path.name}: max |ours - torchxrayvision| = {difference:.4f} "
          f"({100 * difference / RANGE:.4f}% of the [-1024, 1024] range)")
    assert difference < 0.01  # float32 rounding: measured 0.0004 of 2048


def test_a_torchxrayvision_state_dict_loads_key_for_key():
    theirs = xrv.models.DenseNet(weights=None)
    ours = DenseNet(num_classes=len(theirs.targets), in_channels=1)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert ours.state_dict()[key].shape == value.shape, key
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    batch = torch.randn(2, 1, 224, 224) * 500
    with torch.inference_mode():
        torch.testing.assert_close(ours(batch), theirs(batch), rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def both_models(demo_store):
    ours = load_classifier(demo_store / "models" / "current", None)
    theirs = xrv.models.DenseNet(weights=None)
    theirs.load_state_dict(ours.torch_backend().network.state_dict(), strict=True)
    return ours, theirs.eval()


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_same_weights_give_torchxrayvisions_probabilities_within_001(both_models, path):
    ours, theirs = both_models
    served = ours.inference(ours.preprocess(decode(
        path.read_bytes(), CONTENT_TYPE[path.suffix], Limits(40_000_000, 32)).pixels))
    with torch.inference_mode():
        reference = torch.sigmoid(theirs(torch.from_numpy(reference_input(path))))[0].numpy()
    difference = float(np.abs(np.array(served) - reference).max())
    print(f"{path.name}: max |p_ours - p_torchxrayvision| = {difference:.2e}")
    assert theirs.targets == ours.manifest.labels
    assert difference < 0.01
