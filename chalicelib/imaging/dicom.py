"""DICOM Part 10 bytes -> one grayscale image in [0, 1], following the DICOM display pipeline:
stored values (BitsStored respected) -> modality LUT (rescale slope/intercept) -> VOI LUT or
window -> MONOCHROME1 inverted so that bright means dense, as in every other format we serve.

No patient field is logged or returned: only the image-describing attributes are. The header
(without its pixels) travels with the decoded image, for the reports that join the input's study.
"""
import io
import math
import warnings
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from chalicelib.errors import InvalidImage, UnclassifiableImage, UnsupportedImageType
from chalicelib.imaging.formats import DICOM
from chalicelib.imaging.image import (
    EXACT,
    DecodedImage,
    Grid,
    Limits,
    Resolution,
    check_pixel_count,
)

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
NATIVE_LITTLE_ENDIAN = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG2000_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
PIXEL_DATA = 0x7FE00010
# Top-level elements read before giving up: a radiograph has a few hundred, while a 4.4 MB
# upload of empty elements holds over 500,000, seconds of pydicom parsing.
MAX_ELEMENTS = 10_000
# pydicom's warnings and log lines may quote element values, patient fields among them: the
# function's logging (chalicelib/observability/logging.py) withholds their text.
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT")


def decode_dicom(body: bytes, limits: Limits, resolution: Resolution = EXACT) -> DecodedImage:
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
    samples_per_pixel = int(ds.get("SamplesPerPixel", 1))
    if samples_per_pixel != (1 if photometric in _GRAY else 3):
        raise UnclassifiableImage(f"DICOM SamplesPerPixel {samples_per_pixel} does not fit "
                                  f"PhotometricInterpretation {photometric} (1 for MONOCHROME1 "
                                  f"and MONOCHROME2, 3 for RGB and YBR): correct the header.")
    check_pixel_count(int(ds.Columns), int(ds.Rows), limits)
    if syntax in JPEG2000_SYNTAXES:  # whichever decodes it, pydicom or codestreams.py
        from chalicelib.imaging.codestreams import use_every_cpu_for_jpeg2000
        use_every_cpu_for_jpeg2000()

    # Overflow and NaN are not warned about but refused, by _finite.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if photometric in _COLOUR:
            # pydicom already converted YBR to RGB; 8-bit colour has no VOI to apply.
            stored = _keep_bits(_pydicom_pixels(ds), ds)
            pixels = stored.mean(axis=2, dtype=np.float32) / float(2 ** int(ds.BitsStored) - 1)
            pixels, windowed, level = _finite(pixels), False, 0
        else:
            samples, to_stored, level = _gray_samples(ds, syntax, resolution)
            pixels, windowed = _display(samples, to_stored, ds, photometric)
    details = {
        "photometric": photometric,
        "bits_stored": int(ds.BitsStored),
        "transfer_syntax": SUPPORTED_TRANSFER_SYNTAXES[syntax],
        "windowed": windowed,
        **acquisition(ds),
    }
    return DecodedImage(pixels, DICOM, details, header=_without_pixels(ds),
                        grid=_grid(syntax, level, (int(ds.Columns), int(ds.Rows))))


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


def _grid(syntax: str, level: int, full_size: Tuple[int, int]) -> Optional[Grid]:
    if not level:
        return None
    from chalicelib.imaging.codestreams import dct_grid, jpeg2000_grid
    return (jpeg2000_grid if syntax in JPEG2000_SYNTAXES else dct_grid)(level, full_size)


def _pydicom_pixels(ds) -> np.ndarray:
    arr = ds.pixel_array
    if arr.ndim != (3 if int(ds.get("SamplesPerPixel", 1)) > 1 else 2):
        raise UnclassifiableImage("The DICOM pixel data is not a single 2-D image.")
    return arr


def _keep_bits(arr: np.ndarray, ds) -> np.ndarray:
    """Pixel values with only BitsStored bits kept: bits above it may carry overlays or junk."""
    bits_allocated, bits_stored = int(ds.BitsAllocated), int(ds.BitsStored)
    if bits_stored < bits_allocated and arr.dtype.kind in "ui":
        shift = arr.dtype.itemsize * 8 - bits_stored
        arr = np.left_shift(arr, shift)
        arr = np.right_shift(arr, shift)  # arithmetic for signed: sign-extends BitsStored
    return arr


# Pixels per np.take: the indices it converts to intp stay a few hundred KB, not 8 bytes/pixel
LOOKUP_PIXELS = 1 << 16


def _display(samples: np.ndarray, to_stored: Callable[[np.ndarray], np.ndarray], ds,
             photometric: str) -> Tuple[np.ndarray, bool]:
    """The display pipeline on gray samples: (pixels in [0, 1], float32, finite; windowed).
    to_stored maps samples to the values pydicom's pixel_array holds. Samples of 8 or 16 bits
    take every step once, on each of their 256 or 65,536 possible values, and the image is one
    lookup in that table: the same float32 operations on the same values give the same pixels
    as the steps on the whole image, in one pass instead of one per step."""
    if samples.dtype.kind not in "ui" or samples.dtype.itemsize > 2:
        pixels, windowed = _gray_pipeline(to_stored(samples), ds, photometric)
        return _finite(pixels), windowed
    index = samples.view(f"u{samples.dtype.itemsize}")
    codes = np.arange(1 << (8 * samples.dtype.itemsize), dtype=index.dtype).view(samples.dtype)
    table, windowed = _gray_pipeline(to_stored(codes), ds, photometric)
    table = np.ascontiguousarray(table, dtype=np.float32)
    pixels = np.empty(index.shape, dtype=np.float32)
    rows = max(1, LOOKUP_PIXELS // max(1, index.shape[1]))
    for start in range(0, index.shape[0], rows):
        np.take(table, index[start:start + rows], out=pixels[start:start + rows], mode="clip")
    if not np.isfinite(table).all():  # only then can a pixel be: check the pixels themselves
        _finite(pixels)
    return pixels, windowed


def _gray_pipeline(values: np.ndarray, ds, photometric: str) -> Tuple[np.ndarray, bool]:
    values, low, high = _modality(_keep_bits(values, ds), ds)
    pixels, windowed = _voi(values, low, high, ds)
    if photometric == "MONOCHROME1":
        pixels = 1.0 - pixels
    return pixels, windowed


def _same(values: np.ndarray) -> np.ndarray:
    return values


def _gray_samples(ds, syntax: str,
                  resolution: Resolution) -> Tuple[np.ndarray, Callable[[np.ndarray], np.ndarray],
                                                   int]:
    """(samples, height x width; the map from samples to what pydicom's pixel_array holds; the
    resolution level decoded). JPEG 2000, JPEG Baseline and little-endian native pixels of the
    usual kinds are read here without pydicom's copies (and, for the first two, at the level
    resolution allows); anything else is pydicom's pixel_array, exactly."""
    allocated = int(ds.BitsAllocated)
    unsigned = int(ds.get("PixelRepresentation", 0)) == 0
    size = (int(ds.Columns), int(ds.Rows))
    if syntax in NATIVE_LITTLE_ENDIAN and allocated in (8, 16):
        samples = _native(ds, allocated, unsigned)
        if samples is not None:
            return samples, _same, 0
    elif syntax in JPEG2000_SYNTAXES and unsigned and allocated in (8, 16):
        decoded = _jpeg2000(ds, size, allocated, resolution)
        if decoded is not None:
            return decoded
    elif syntax == JPEG_BASELINE and unsigned and allocated == 8:
        decoded = _jpeg(ds, size, resolution)
        if decoded is not None:
            return decoded
    return _pydicom_pixels(ds), _same, 0


def _native(ds, allocated: int, unsigned: bool) -> Optional[np.ndarray]:
    """A view of the file's own Pixel Data (no copy), or None when pydicom should read it."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    data = ds.PixelData
    count = rows * columns
    if len(data) < count * allocated // 8:
        return None  # pydicom says what is wrong with it
    dtype = np.dtype(f"<{'u' if unsigned else 'i'}{allocated // 8}")
    return np.frombuffer(data, dtype=dtype, count=count).reshape(rows, columns)


def _single_frame(ds) -> bytes:
    from pydicom.encaps import generate_frames
    return next(generate_frames(ds.PixelData, number_of_frames=1))


def _jpeg2000(ds, size: Tuple[int, int], allocated: int, resolution: Resolution):
    """Pillow's samples of the JPEG 2000 frame, shifted back to the codestream's precision as
    pydicom does, or None (a signed codestream, JP2 boxes, ...: pydicom reads it)."""
    from pydicom.pixels.utils import get_j2k_parameters

    from chalicelib.imaging.codestreams import decode_jpeg2000

    frame = _single_frame(ds)
    parameters = get_j2k_parameters(frame)
    precision = parameters.get("precision")
    if (parameters.get("jp2") or parameters.get("is_signed", True) or precision is None
            or not 0 < precision <= 16 or (allocated == 8 and precision > 8)):
        return None
    image, level = decode_jpeg2000(frame, size, resolution)
    samples = np.asarray(image)
    container = 8 if precision <= 8 else 16
    if samples.dtype != np.dtype(f"<u{container // 8}") or samples.ndim != 2:
        return None
    stored_dtype = np.dtype(f"u{allocated // 8}")

    def to_stored(values: np.ndarray) -> np.ndarray:
        return np.right_shift(values, container - precision).astype(stored_dtype)
    return samples, to_stored, level


def _jpeg(ds, size: Tuple[int, int], resolution: Resolution):
    """Pillow's 8-bit gray samples of the JPEG Baseline frame (DCT-scaled where resolution
    allows), or None when it is not one (pydicom reads it)."""
    from PIL import Image

    from chalicelib.imaging.codestreams import draft_jpeg

    frame = _single_frame(ds)
    if not frame.startswith(b"\xff\xd8\xff"):
        return None
    image = Image.open(io.BytesIO(frame), formats=["JPEG"])
    if image.mode != "L":
        return None
    if image.size != size:
        raise InvalidImage(f"The JPEG image is {image.size[0]}x{image.size[1]} pixels but the "
                           f"DICOM header says {size[0]}x{size[1]}: correct Rows and Columns.")
    level = draft_jpeg(image, resolution)
    return np.asarray(image), _same, level


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
