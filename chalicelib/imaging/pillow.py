"""PNG and JPEG through Pillow, restricted to those two decoders (untrusted bytes), with the
pixel count checked from the header before any pixel is decoded. Plain grayscale PNGs are
inflated by libdeflate instead (png.py); what that path does not take, Pillow decodes. A JPEG is
DCT-scaled where the Resolution allows it (codestreams.py)."""
import io
import warnings
from typing import Any, Tuple

import numpy as np

from chalicelib.errors import PayloadTooLarge
from chalicelib.imaging.codestreams import dct_grid, draft_jpeg
from chalicelib.imaging.formats import JPEG, PNG
from chalicelib.imaging.image import EXACT, DecodedImage, Limits, Resolution, check_pixel_count
from chalicelib.imaging.png import gray_png_samples


def decode_pillow(body: bytes, fmt: str, limits: Limits,
                  resolution: Resolution = EXACT) -> DecodedImage:
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
    mode, full_size = img.mode, img.size
    fast = gray_png_samples(body, img) if fmt == PNG else None
    level = 0
    if fast is not None:
        pixels, bits = unit(*fast)
    else:
        if fmt == JPEG:
            level = draft_jpeg(img, resolution)
        ImageOps.exif_transpose(img, in_place=True)  # decodes; turns it only if EXIF says so
        pixels, bits = gray_unit(img)
    return DecodedImage(pixels, fmt, {"mode": mode, "bits": bits},
                        grid=dct_grid(level, full_size) if level else None)


def gray_unit(img: Any) -> Tuple[np.ndarray, int]:
    """One channel in [0, 1]. Colour becomes the mean of R, G and B (what torchxrayvision's
    examples do); alpha is ignored, as an X-ray has no meaningful transparency."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit PNG: scale the whole 16-bit range to [0, 1]; converting to "L" would clip.
        return unit(np.asarray(img), 16)
    if mode in ("1", "LA", "La"):
        img = img.convert("L")
    elif mode != "L":  # P, PA, RGB, RGBA, CMYK, YCbCr, LAB...
        rgb = np.asarray(img.convert("RGB"), dtype=np.float32)
        return rgb.mean(axis=2) / 255.0, 8
    return unit(np.asarray(img), 8)


def unit(samples: np.ndarray, bits: int) -> Tuple[np.ndarray, int]:
    """Integer samples as float32 in [0, 1], scaled by the full range of `bits`, in one pass
    (the same values as converting, then dividing); and `bits`."""
    return np.divide(samples, np.float32(2 ** bits - 1), dtype=np.float32), bits
