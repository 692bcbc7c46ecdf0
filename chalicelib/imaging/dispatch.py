"""Bytes in, one grayscale image out: a float32 array in [0, 1] where 1 is the brightest
(densest) value the file can express. Scaling is by what the format can hold (255 for 8-bit,
65535 for 16-bit, 2**BitsStored - 1 or the VOI window for DICOM), never by the image's own
min/max, so an under-exposed film stays under-exposed, as it does in torchxrayvision.

Uploads are untrusted: the declared type must agree with the bytes, each format goes to its own
decoder (pillow.py for PNG and JPEG, dicom.py), sizes are checked from the header before any
pixel is decoded, and every failure is a client error with a message the uploader can act on.
Nothing here logs pixel data or DICOM fields.
"""
import logging
import traceback
from typing import Any, Callable

from chalicelib.errors import ClientError, InvalidImage, UnclassifiableImage, UnsupportedImageType
from chalicelib.imaging.formats import (
    CONTENT_TYPE_OF_FORMAT,
    DICOM,
    FORMAT_OF_CONTENT_TYPE,
    MISTAKEN_CONTENT_TYPES,
    media_type,
    sniff,
)
from chalicelib.imaging.image import EXACT, DecodedImage, Limits, Resolution
from chalicelib.imaging.pillow import decode_pillow

log = logging.getLogger(__name__)


def decode(body: bytes, content_type: str, limits: Limits,
           resolution: Resolution = EXACT) -> DecodedImage:
    """resolution: how finely JPEG 2000 and JPEG may be decoded (image.Resolution); the default
    decodes every pixel."""
    advice = MISTAKEN_CONTENT_TYPES.get(media_type(content_type))
    if advice:
        raise UnsupportedImageType(advice)
    if not body:
        raise InvalidImage("The request body is empty: send the image bytes, "
                           "e.g. curl --data-binary @xray.png")
    declared = FORMAT_OF_CONTENT_TYPE.get(media_type(content_type))
    found = sniff(body)
    if found is None:
        raise UnsupportedImageType("The body is not a PNG, JPEG or DICOM file (DICOM needs its "
                                   "128-byte preamble and 'DICM' prefix).")
    if declared is not None and declared != found:
        raise UnsupportedImageType(
            f"The body is a {found.upper()} file but Content-Type says {content_type}: send "
            f"Content-Type: {CONTENT_TYPE_OF_FORMAT[found]} or application/octet-stream.")
    if found == DICOM:
        from chalicelib.imaging.dicom import decode_dicom
        image = _guarded("DICOM", decode_dicom, body, limits, resolution)
    else:
        image = _guarded(found.upper(), decode_pillow, body, found, limits, resolution)
    _check_min_side(image, limits)
    return image


def _guarded(what: str, decoder: Callable[..., DecodedImage], *args: Any) -> DecodedImage:
    """Runs a decoder; any exception that is not already a client error means a broken file.
    Log the traceback but not the message: a parser's message may quote header fields."""
    try:
        return decoder(*args)
    except ClientError:
        raise
    except Exception as error:  # decoders raise many types on malformed input
        log.warning("%s decode failed with %s\n%s", what, type(error).__name__,
                    "".join(traceback.format_tb(error.__traceback__)))
        raise InvalidImage(f"The {what} file could not be decoded: it is truncated or "
                           f"corrupt.") from None


def _check_min_side(image: DecodedImage, limits: Limits) -> None:
    width, height = image.size  # the file's own, even where a coarser level was decoded
    if min(height, width) < limits.min_side:
        raise UnclassifiableImage(
            f"The image is {width}x{height} pixels; both sides must be at least "
            f"{limits.min_side} pixels to classify it.")
