"""DICOM Part 10 bytes -> one grayscale image in [0, 1], following the DICOM display pipeline:
stored values (BitsStored respected) -> modality LUT (rescale slope/intercept) -> VOI LUT or
window -> MONOCHROME1 inverted so that bright means dense, as in every other format we serve.

No patient field is logged or returned: only the image-describing attributes are. The header
(without its pixels) travels with the decoded image, for the reports that join the input's study.
"""
import io
import math
import warnings
from typing import Any, Callable, Dict, Tuple

import numpy as np

from chalicelib.errors import InvalidImage, UnclassifiableImage, UnsupportedImageType
from chalicelib.imaging.formats import DICOM
from chalicelib.imaging.image import DecodedImage, Limits, check_pixel_count

# What pydicom decodes with numpy and Pillow alone. Deflated datasets are refused on purpose:
# a few KB of deflate can inflate to gigabytes before any size check could run.
SUPPORTED_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}
_GRAY = ("MONOCHROME1", "MONOCHROME2")
PIXEL_DATA = 0x7FE00010
# Top-level elements read before giving up: a radiograph has a few hundred, while a 4.4 MB
# upload of empty elements holds over 500,000, seconds of pydicom parsing.
MAX_ELEMENTS = 10_000
# pydicom's warnings and log lines may quote element values, patient fields among them: the
# function's logging (chalicelib/observability/logging.py) withholds their text.
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT")


def decode_dicom(body: bytes, limits: Limits) -> DecodedImage:
    import pydicom.filereader

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="pydicom")
        # ...except this one: pydicom reads a truncated file "successfully", minus its pixels.
        warnings.filterwarnings("error", message="End of file reached")
        ds = pydicom.filereader.read_partial(io.BytesIO(body), stop_when=_stop_after_pixels())
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        raise UnsupportedImageType(
            f"DICOM transfer syntax {syntax or '(missing)'} is not supported. Send one of: "
            f"{', '.join(SUPPORTED_TRANSFER_SYNTAXES.values())}.")
    if "PixelData" not in ds:
        raise UnclassifiableImage("The DICOM file holds no image (no Pixel Data): send the "
                                  "radiograph itself, not a report or other non-image object.")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames != 1:
        raise UnclassifiableImage(f"The DICOM file holds {frames} frames; send a single-frame "
                                  f"radiograph.")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in _GRAY + _COLOUR:
        raise UnsupportedImageType(f"DICOM PhotometricInterpretation {photometric or '(missing)'}"
                                   f" is not supported; send MONOCHROME1, MONOCHROME2 or RGB.")
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples != (1 if photometric in _GRAY else 3):
        raise UnclassifiableImage(f"DICOM SamplesPerPixel {samples} does not fit "
                                  f"PhotometricInterpretation {photometric} (1 for MONOCHROME1 "
                                  f"and MONOCHROME2, 3 for RGB and YBR): correct the header.")
    check_pixel_count(int(ds.Columns), int(ds.Rows), limits)

    stored = _stored_values(ds)
    # Overflow and NaN are not warned about but refused, by _finite.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if photometric in _COLOUR:
            # pydicom already converted YBR to RGB; 8-bit colour has no VOI to apply.
            pixels = stored.mean(axis=2, dtype=np.float32) / float(2 ** int(ds.BitsStored) - 1)
            windowed = False
        else:
            values, low, high = _modality(stored, ds)
            pixels, windowed = _voi(values, low, high, ds)
            if photometric == "MONOCHROME1":
                pixels = 1.0 - pixels
    details = {
        "photometric": photometric,
        "bits_stored": int(ds.BitsStored),
        "transfer_syntax": SUPPORTED_TRANSFER_SYNTAXES[syntax],
        "windowed": windowed,
        **acquisition(ds),
    }
    return DecodedImage(_finite(pixels), DICOM, details, header=_without_pixels(ds))


# What the header says of how the image was taken (the model's intended use is checked against
# these): the answer's `image` member keeps the names on the left, when the file has them.
ACQUISITION = {"modality": "Modality", "body_part": "BodyPartExamined", "view": "ViewPosition"}


def acquisition(ds) -> Dict[str, str]:
    """modality, body_part and view as the header codes them (CS values: uppercase, <= 16
    characters), for those present and not empty."""
    found = {}
    for name, keyword in ACQUISITION.items():
        value = ds.get(keyword)
        text = str(value).strip().upper()[:16] if value is not None else ""
        if text:
            found[name] = text
    return found


def _without_pixels(ds):
    """The header, sharing the read elements, without Pixel Data (nor anything after it)."""
    from pydicom.dataset import Dataset
    header = Dataset()
    header.file_meta = ds.file_meta
    for element in ds:
        if element.tag >= PIXEL_DATA:
            break
        header.add(element)
    return header


def _stop_after_pixels() -> Callable[[int, Any, int], bool]:
    """pydicom's stop_when: reading ends after Pixel Data (what follows is padding or junk that
    nothing here reads, and that could be hundreds of thousands of elements) and is refused
    past MAX_ELEMENTS."""
    seen = {"elements": 0, "pixels": False}

    def stop_when(tag: int, vr: Any, length: int) -> bool:
        if seen["pixels"]:
            return True
        seen["elements"] += 1
        if seen["elements"] > MAX_ELEMENTS:
            raise InvalidImage(f"The DICOM file holds more than {MAX_ELEMENTS:,} elements: "
                               f"send the radiograph's own file, not one padded with elements.")
        seen["pixels"] = tag == PIXEL_DATA
        return False
    return stop_when


def _finite(pixels: np.ndarray) -> np.ndarray:
    """The contract every decoder keeps: finite float32 values. Rescale values are the file's
    own: a NaN or infinite slope or intercept, or a range that rounds to nothing, gives NaN,
    which would reach the model and come back as NaN probabilities (not JSON)."""
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    if not np.isfinite(pixels).all():
        raise InvalidImage("The DICOM file's Rescale Slope or Rescale Intercept makes its pixel "
                           "values not finite numbers: correct them (or leave them out) and "
                           "send the file again.")
    return pixels


def _stored_values(ds) -> np.ndarray:
    """Pixel values with only BitsStored bits kept: bits above it may carry overlays or junk."""
    arr = ds.pixel_array
    bits_allocated, bits_stored = int(ds.BitsAllocated), int(ds.BitsStored)
    if arr.ndim != (3 if int(ds.get("SamplesPerPixel", 1)) > 1 else 2):
        raise UnclassifiableImage("The DICOM pixel data is not a single 2-D image.")
    if bits_stored < bits_allocated and arr.dtype.kind in "ui":
        shift = arr.dtype.itemsize * 8 - bits_stored
        arr = np.left_shift(arr, shift)
        arr = np.right_shift(arr, shift)  # arithmetic for signed: sign-extends BitsStored
    return arr


def _modality(stored: np.ndarray, ds) -> Tuple[np.ndarray, float, float]:
    """Modality LUT, and the range of values it can produce (what maps to [0, 1] if no window)."""
    bits = int(ds.BitsStored)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        low, high = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    else:
        low, high = 0.0, 2.0 ** bits - 1
    if "ModalityLUTSequence" in ds:
        from pydicom.pixels import apply_modality_lut
        lut_bits = int(ds.ModalityLUTSequence[0].LUTDescriptor[2])
        return apply_modality_lut(stored, ds).astype(np.float32), 0.0, 2.0 ** lut_bits - 1
    values = stored.astype(np.float32)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if (slope, intercept) != (1.0, 0.0):
        values = values * np.float32(slope) + np.float32(intercept)
        low, high = sorted((low * slope + intercept, high * slope + intercept))
    return values, low, high


def _voi(values: np.ndarray, low: float, high: float, ds) -> Tuple[np.ndarray, bool]:
    """VOI LUT or window (PS3.3 C.11.2) onto [0, 1]; without either, the full value range."""
    if "VOILUTSequence" in ds:
        from pydicom.pixels import apply_voi
        item = ds.VOILUTSequence[0]
        out_max = 2.0 ** int(item.LUTDescriptor[2]) - 1
        return apply_voi(values, ds, index=0).astype(np.float32) / np.float32(out_max), True
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and math.isfinite(center + width):
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if function == "SIGMOID" and width > 0:
            return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width)), True
        if function == "LINEAR_EXACT" and width > 0:
            return np.clip((values - center) / width + 0.5, 0.0, 1.0), True
        if function == "LINEAR" and width >= 1:
            if width == 1:  # a hard threshold at the center
                return (values > center - 0.5).astype(np.float32), True
            return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0), True
        # An invalid window (a NaN or infinite one too) is ignored, as viewers do, rather than
        # failing the upload.
    return np.clip((values - low) / np.float32(high - low), 0.0, 1.0), False


def _first(value):
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return float(value[0]) if len(value) else None
    return float(value)
