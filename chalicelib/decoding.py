"""Bytes in, one grayscale image out: a float32 array in [0, 1] where 1 is the brightest
(densest) value the file can express. Scaling is by what the format can hold (255 for 8-bit,
65535 for 16-bit, 2**BitsStored - 1 or the VOI window for DICOM), never by the image's own
min/max, so an under-exposed film stays under-exposed, as it does in torchxrayvision.

Uploads are untrusted: Pillow parses every PNG and JPEG header and only its PNG and JPEG decoders
may run, sizes are checked from the header before any pixel is decoded, and every failure is a
client error with a message the uploader can act on. The pixel data of plain grayscale PNGs is
inflated by libdeflate instead, twice as fast (chalicelib/png.py); what that path does not take,
Pillow decodes. Nothing here logs pixel data or DICOM fields.
"""
import io
import logging
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Tuple

import numpy as np

from chalicelib.errors import (InvalidImage, PayloadTooLarge, UnclassifiableImage,
                               UnsupportedImageType)
from chalicelib.formats import (CONTENT_TYPE_OF_FORMAT, DICOM, FORMAT_OF_CONTENT_TYPE,
                                MISTAKEN_CONTENT_TYPES, PNG, media_type, sniff)
from chalicelib.png import gray_png_samples

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Limits:
    max_pixels: int
    min_side: int


@dataclass
class DecodedImage:
    pixels: np.ndarray  # float32, shape (height, width), values in [0, 1]
    format: str
    details: Dict[str, Any] = field(default_factory=dict)  # safe to return and to log

    def describe(self) -> Dict[str, Any]:
        height, width = self.pixels.shape
        return {"format": self.format, "width": width, "height": height, **self.details}


def decode(body: bytes, content_type: str, limits: Limits) -> DecodedImage:
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
        from chalicelib.dicom import decode_dicom
        image = _guarded("DICOM", decode_dicom, body, limits)
    else:
        image = _guarded(found.upper(), _decode_pillow, body, found, limits)
    _check_min_side(image, limits)
    return image


def _guarded(what: str, decoder: Callable[..., DecodedImage], *args: Any) -> DecodedImage:
    """Runs a decoder; any exception that is not already a client error means a broken file.
    Log the traceback but not the message: a parser's message may quote header fields."""
    try:
        return decoder(*args)
    except (InvalidImage, PayloadTooLarge, UnsupportedImageType, UnclassifiableImage):
        raise
    except Exception as error:  # decoders raise many types on malformed input
        log.warning("%s decode failed with %s\n%s", what, type(error).__name__,
                    "".join(traceback.format_tb(error.__traceback__)))
        raise InvalidImage(f"The {what} file could not be decoded: it is truncated or "
                           f"corrupt.") from None


def import_decoders() -> None:
    """Imports what decoding a PNG or JPEG runs (Pillow's core and the plugins Image.open loads
    first, about 20 ms); a DICOM upload also imports pydicom, on its first use."""
    from PIL import Image, ImageOps  # noqa: F401
    Image.preinit()


def check_pixel_count(width: int, height: int, limits: Limits) -> None:
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(
            f"The image is {width}x{height} pixels; the limit is {limits.max_pixels:,} pixels. "
            f"Downscale it before sending (the model sees 224x224).")


def _check_min_side(image: DecodedImage, limits: Limits) -> None:
    height, width = image.pixels.shape
    if min(height, width) < limits.min_side:
        raise UnclassifiableImage(
            f"The image is {width}x{height} pixels; both sides must be at least "
            f"{limits.min_side} pixels to classify it.")


def _decode_pillow(body: bytes, fmt: str, limits: Limits) -> DecodedImage:
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we check our own limit.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(body), formats=[fmt.upper()])
        except Image.DecompressionBombError:
            raise PayloadTooLarge(f"The image declares more than {limits.max_pixels:,} pixels "
                                  f"(a decompression bomb?).") from None
    check_pixel_count(img.width, img.height, limits)
    mode = img.mode
    fast = gray_png_samples(body, img) if fmt == PNG else None
    if fast is not None:
        pixels, bits = _unit(*fast)
    else:
        ImageOps.exif_transpose(img, in_place=True)  # decodes; turns it only if EXIF says so
        pixels, bits = _gray_unit(img)
    return DecodedImage(pixels, fmt, {"mode": mode, "bits": bits})


def _gray_unit(img: Any) -> Tuple[np.ndarray, int]:
    """One channel in [0, 1]. Colour becomes the mean of R, G and B (what torchxrayvision's
    examples do); alpha is ignored, as an X-ray has no meaningful transparency."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit PNG: scale the whole 16-bit range to [0, 1]; converting to "L" would clip.
        return _unit(np.asarray(img), 16)
    if mode in ("1", "LA", "La"):
        img = img.convert("L")
    elif mode != "L":  # P, PA, RGB, RGBA, CMYK, YCbCr, LAB...
        rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
        return rgb.mean(axis=2) / 255.0, 8
    return _unit(np.asarray(img), 8)


def _unit(samples: np.ndarray, bits: int) -> Tuple[np.ndarray, int]:
    """Integer samples as float32 in [0, 1], scaled by the full range of `bits`, in one pass
    (the same values as converting, then dividing); and `bits`."""
    return np.divide(samples, np.float32(2 ** bits - 1), dtype=np.float32), bits
