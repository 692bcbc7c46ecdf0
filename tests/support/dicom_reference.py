"""The DICOM display pipeline as the decoder computed it before it was made faster (issue 16):
pydicom's pixel_array, then one numpy step after another on the whole image. The decoder's
pixels must stay bit-identical to these."""
import io
import math
import warnings
from typing import Tuple

import numpy as np
import pydicom


def reference_pixels(body: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(body))
    photometric = str(ds.PhotometricInterpretation)
    stored = _stored_values(ds)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            pixels = stored.mean(axis=2, dtype=np.float32) / float(2 ** int(ds.BitsStored) - 1)
        else:
            values, low, high = _modality(stored, ds)
            pixels, _ = _voi(values, low, high, ds)
            if photometric == "MONOCHROME1":
                pixels = 1.0 - pixels
    return np.ascontiguousarray(pixels, dtype=np.float32)


def _stored_values(ds) -> np.ndarray:
    """Pixel values with only BitsStored bits kept: bits above it may carry overlays or junk."""
    arr = ds.pixel_array
    bits_allocated, bits_stored = int(ds.BitsAllocated), int(ds.BitsStored)
    assert arr.ndim == (3 if int(ds.get("SamplesPerPixel", 1)) > 1 else 2)
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
