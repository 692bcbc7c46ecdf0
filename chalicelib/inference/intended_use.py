"""What a model was made for, checked against what a DICOM's header says before it is classified:
a frontal chest radiograph (CR or DX) unless the model's manifest says otherwise ("accepts").
Findings on a CT slice, a hand or a lateral view would be confident nonsense, so such an image is
refused with a 422 naming the tag and its value; force=true classifies it anyway, and the answer
says it was forced. PNG and JPEG carry no such header: their answers say "not checked".
"""
from typing import Any, Dict, List, Mapping

from chalicelib.errors import ClientError, NotAChestRadiograph, UnsupportedView
from chalicelib.imaging.formats import DICOM

# The defaults of a manifest without "accepts": frontal chest radiographs.
DEFAULT_ACCEPTS: Dict[str, List[str]] = {
    "modalities": ["CR", "DX"],
    "body_parts": ["CHEST"],
    "views": ["PA", "AP"],
}
# accepts key -> (the image member's key, the tag's keyword and number, the refusal's class)
_CHECKS = (
    ("modalities", "modality", "Modality (0008,0060)", NotAChestRadiograph),
    ("body_parts", "body_part", "BodyPartExamined (0018,0015)", NotAChestRadiograph),
    ("views", "view", "ViewPosition (0018,5101)", UnsupportedView),
)
PASSED, NOT_CHECKED, FORCED = "passed", "not checked", "forced"
FORCE_HINT = ("classify it anyway with force=true (POST /xray?force=true, or \"force\": true in a "
              "job's request); the answer is then marked as forced")


def check(image: Mapping[str, Any], accepts: Mapping[str, List[str]],
          force: bool = False) -> Dict[str, Any]:
    """image: the answer's `image` member (DecodedImage.describe()). Returns the member's
    `intended_use`; raises NotAChestRadiograph or UnsupportedView unless force. A tag the file
    does not have is not held against it: only a value that says otherwise is."""
    if image.get("format") != DICOM:
        return {"result": NOT_CHECKED,
                "reason": f"a {str(image.get('format', '')).upper()} file carries no modality, "
                          f"body part or view"}
    try:
        for key, member, tag, refusal in _CHECKS:
            value = image.get(member)
            allowed = accepts.get(key, DEFAULT_ACCEPTS[key])
            if value is not None and value not in allowed:
                raise refusal(f"{tag} is {value}; this model accepts {', '.join(allowed)}. Send "
                              f"the image the model was made for, or {FORCE_HINT}.")
    except ClientError as error:
        if not force:
            raise
        return {"result": FORCED, "refusal": {"Code": type(error).__name__,
                                              "Message": str(error)}}
    return {"result": PASSED}


def validate_accepts(accepts: Any) -> str:
    """'' when a manifest's "accepts" is usable, else what is wrong with it."""
    if not isinstance(accepts, dict) or not set(accepts) <= set(DEFAULT_ACCEPTS):
        return f'"accepts" must be an object with any of {", ".join(DEFAULT_ACCEPTS)}'
    for key, values in accepts.items():
        if not (isinstance(values, list) and values
                and all(isinstance(v, str) and v == v.strip().upper() and v for v in values)):
            return f'"accepts.{key}" must be a non-empty list of DICOM codes (uppercase strings)'
    return ""
