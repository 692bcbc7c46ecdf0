"""The manifest's optional reduced_decoding key: the coarsest resolution level the model accepts
its input decoded at (absent = 0 = every pixel, always), refused unless a whole number >= 0, and
the short side no level may fall below (min_side, at least the input size; by default twice)."""
import json

import pytest

from chalicelib.inference.store import ManifestError, read_manifest, validate_manifest
from tests.support.model_store import current_dir


@pytest.fixture(scope="module")
def demo_manifest(demo_store):
    return json.loads((current_dir(demo_store) / "manifest.json").read_text())


def test_given_no_key_then_the_model_is_never_decoded_reduced(demo_store):
    assert read_manifest(current_dir(demo_store)).coarsest_level == 0


def write(tmp_path, raw):
    validate_manifest(raw, tmp_path / "manifest.json")
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    return read_manifest(tmp_path)


def test_given_no_min_side_then_no_level_falls_below_twice_the_input_side(demo_manifest,
                                                                        tmp_path):
    manifest = write(tmp_path, {**demo_manifest, "reduced_decoding": {"coarsest_level": 2}})
    assert manifest.reduced_min_side == 2 * manifest.input_size == 448


def test_given_a_min_side_then_it_is_the_floor(demo_manifest, tmp_path):
    manifest = write(tmp_path, {**demo_manifest,
                                "reduced_decoding": {"coarsest_level": 3, "min_side": 224}})
    assert (manifest.coarsest_level, manifest.reduced_min_side) == (3, 224)


@pytest.mark.parametrize("level", [0, 1, 3])
def test_given_a_whole_number_then_it_is_the_coarsest_level(demo_manifest, tmp_path, level):
    manifest = write(tmp_path, {**demo_manifest, "reduced_decoding": {"coarsest_level": level}})
    assert manifest.coarsest_level == level


@pytest.mark.parametrize("value", [
    {"coarsest_level": -1}, {"coarsest_level": 1.5}, {"coarsest_level": "2"},
    {"coarsest_level": True}, {"coarsest_level": None}, {}, {"coarsest_level": 1, "extra": 2},
    {"coarsest_level": 1, "min_side": 100}, {"coarsest_level": 1, "min_side": 300.0},
    {"min_side": 448}, 2, [2], "2",
], ids=repr)
def test_given_anything_but_a_whole_number_then_the_manifest_is_refused_by_name(
        demo_manifest, tmp_path, value):
    with pytest.raises(ManifestError, match='"reduced_decoding" must be'):
        validate_manifest({**demo_manifest, "reduced_decoding": value}, tmp_path)
