"""The manifest's optional reduced_decoding key: the coarsest resolution level the model accepts
its input decoded at (absent = 0 = every pixel, always), refused unless a whole number >= 0."""
import json

import pytest

from chalicelib.inference.store import ManifestError, read_manifest, validate_manifest
from tests.support.model_store import current_dir


@pytest.fixture(scope="module")
def demo_manifest(demo_store):
    return json.loads((current_dir(demo_store) / "manifest.json").read_text())


def test_given_no_key_then_the_model_is_never_decoded_reduced(demo_store):
    assert read_manifest(current_dir(demo_store)).coarsest_level == 0


@pytest.mark.parametrize("level", [0, 1, 3])
def test_given_a_whole_number_then_it_is_the_coarsest_level(demo_manifest, tmp_path, level):
    raw = {**demo_manifest, "reduced_decoding": {"coarsest_level": level}}
    validate_manifest(raw, tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert read_manifest(tmp_path).coarsest_level == level


@pytest.mark.parametrize("value", [
    {"coarsest_level": -1}, {"coarsest_level": 1.5}, {"coarsest_level": "2"},
    {"coarsest_level": True}, {"coarsest_level": None}, {}, {"coarsest_level": 1, "extra": 2},
    2, [2], "2",
], ids=repr)
def test_given_anything_but_a_whole_number_then_the_manifest_is_refused_by_name(
        demo_manifest, tmp_path, value):
    with pytest.raises(ManifestError, match='"reduced_decoding" must be'):
        validate_manifest({**demo_manifest, "reduced_decoding": value}, tmp_path)
