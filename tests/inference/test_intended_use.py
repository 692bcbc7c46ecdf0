"""Given what a DICOM header says of how the image was taken, when it is checked against the
model's intended use (inference/intended_use.py), then an image the model was not made for is
refused with the tag and its value, force classifies it anyway and says so, and PNG/JPEG are
"not checked"."""
import pytest

from chalicelib.errors import NotAChestRadiograph, UnsupportedView
from chalicelib.inference.intended_use import DEFAULT_ACCEPTS, check, validate_accepts

FRONTAL_CHEST = {"format": "dicom", "modality": "DX", "body_part": "CHEST", "view": "PA"}


@pytest.mark.parametrize("image", [
    FRONTAL_CHEST,
    {**FRONTAL_CHEST, "modality": "CR", "view": "AP"},
    {"format": "dicom"},  # no such tags: nothing says otherwise
    {"format": "dicom", "modality": "DX"},
], ids=["dx-pa", "cr-ap", "no-tags", "no-body-part-or-view"])
def test_given_a_frontal_chest_or_silent_header_then_it_passes(image):
    assert check(image, DEFAULT_ACCEPTS) == {"result": "passed"}


@pytest.mark.parametrize("change, refusal, words", [
    ({"modality": "CT"}, NotAChestRadiograph, "Modality (0008,0060) is CT"),
    ({"body_part": "HAND"}, NotAChestRadiograph, "BodyPartExamined (0018,0015) is HAND"),
    ({"view": "LL"}, UnsupportedView, "ViewPosition (0018,5101) is LL"),
    ({"view": "LATERAL"}, UnsupportedView, "this model accepts PA, AP"),
], ids=["ct", "hand", "left-lateral", "lateral"])
def test_given_a_header_outside_the_intended_use_then_422_naming_tag_and_value(change, refusal,
                                                                                words):
    with pytest.raises(refusal) as raised:
        check({**FRONTAL_CHEST, **change}, DEFAULT_ACCEPTS)
    assert raised.value.STATUS_CODE == 422
    assert words in str(raised.value) and "force=true" in str(raised.value)


def test_given_force_then_the_refusal_is_kept_in_the_answer_instead_of_raised():
    checked = check({**FRONTAL_CHEST, "view": "LL"}, DEFAULT_ACCEPTS, force=True)
    assert checked["result"] == "forced"
    assert checked["refusal"]["Code"] == "UnsupportedView"
    assert "ViewPosition (0018,5101) is LL" in checked["refusal"]["Message"]


def test_given_force_on_an_image_that_passes_then_it_simply_passes():
    assert check(FRONTAL_CHEST, DEFAULT_ACCEPTS, force=True) == {"result": "passed"}


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_given_png_or_jpeg_then_not_checked_with_the_reason(fmt):
    checked = check({"format": fmt}, DEFAULT_ACCEPTS)
    assert checked["result"] == "not checked" and fmt.upper() in checked["reason"]


def test_given_a_manifest_that_accepts_laterals_then_a_lateral_passes():
    accepts = {**DEFAULT_ACCEPTS, "views": ["PA", "AP", "LL", "RL"]}
    assert check({**FRONTAL_CHEST, "view": "LL"}, accepts) == {"result": "passed"}


@pytest.mark.parametrize("accepts, words", [
    ([], "must be an object"),
    ({"species": ["DOG"]}, "must be an object"),
    ({"views": []}, "accepts.views"),
    ({"views": ["pa"]}, "uppercase"),
    ({"modalities": "DX"}, "accepts.modalities"),
])
def test_given_a_malformed_accepts_then_it_says_what_is_wrong(accepts, words):
    assert words in validate_accepts(accepts)


def test_given_a_wellformed_accepts_then_nothing_is_wrong():
    assert validate_accepts({"views": ["PA", "AP", "LL"]}) == ""
