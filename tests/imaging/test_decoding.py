"""The decoder: every shared radiograph decodes, formats and modes are scaled (never clipped),
and every kind of bad input becomes the right 4xx error. No torch needed here."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless

from chalicelib.errors import (
    InvalidImage,
    PayloadTooLarge,
    UnclassifiableImage,
    UnsupportedImageType,
)
from chalicelib.imaging.dispatch import decode
from chalicelib.imaging.image import Limits
from chalicelib.inference.preprocessing import xrv
from tests.support.dicom_factory import make_dicom
from tests.support.fixtures import (
    ALL_FIXTURES,
    CONTENT_TYPE,
    DCM_J2K,
    DCM_JPEG_MONO1,
    DCM_MONO2,
    DCM_QUARTER,
    PNG_CARDIOMEGALY,
    PNG_TINY_RGB,
    fixture_id,
    jpeg_of,
)

LIMITS = Limits(max_pixels=40_000_000, min_side=32)
OCTET = "application/octet-stream"


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def reference_gray() -> np.ndarray:
    return np.asarray(Image.open(PNG_CARDIOMEGALY), dtype=np.float32) / 255.0


@pytest.mark.parametrize("path", ALL_FIXTURES, ids=fixture_id)
def test_every_shared_radiograph_decodes_to_one_unit_range_channel(path):
    image = decode(path.read_bytes(), CONTENT_TYPE[path.suffix], LIMITS)
    assert image.pixels.dtype == np.float32 and image.pixels.ndim == 2
    assert 0.0 <= image.pixels.min() < image.pixels.max() <= 1.0
    assert decode(path.read_bytes(), OCTET, LIMITS).describe() == image.describe()


@pytest.mark.parametrize("twin", [DCM_MONO2, DCM_JPEG_MONO1], ids=fixture_id)
def test_the_png_and_its_dicom_twins_give_almost_the_same_model_input(twin):
    png = xrv(decode(PNG_CARDIOMEGALY.read_bytes(), "image/png", LIMITS).pixels, 224)
    dcm = xrv(decode(twin.read_bytes(), "application/dicom", LIMITS).pixels, 224)
    difference = np.abs(png - dcm)
    print(f"{twin.name}: max |PNG - DICOM| = {difference.max():.2f} of 2048")
    # The MONOCHROME1 twin is JPEG-compressed: allow its loss, nothing more (1% of the range).
    assert difference.max() < 20.48 and difference.mean() < 4.1
    if twin == DCM_MONO2:
        assert difference.max() == 0.0


def spine_and_lungs(pixels: np.ndarray) -> tuple:
    h, w = pixels.shape
    band = slice(h // 3, 2 * h // 3)
    strip = max(w // 20, 1)
    spine = pixels[band, w // 2 - strip:w // 2 + strip].mean()
    lungs = (pixels[band, w // 4 - strip:w // 4 + strip].mean()
             + pixels[band, 3 * w // 4 - strip:3 * w // 4 + strip].mean()) / 2
    return spine, lungs


@pytest.mark.parametrize("path", [DCM_J2K, DCM_QUARTER, DCM_JPEG_MONO1], ids=fixture_id)
def test_monochrome1_is_inverted_so_bone_is_bright_and_lungs_dark(path):
    spine, lungs = spine_and_lungs(decode(path.read_bytes(), OCTET, LIMITS).pixels)
    assert spine > lungs + 0.1


def test_the_rg1_windowing_is_applied():
    image = decode(DCM_QUARTER.read_bytes(), OCTET, LIMITS)
    assert image.details["windowed"] is True and image.details["bits_stored"] == 15


def test_16_bit_png_is_scaled_not_clipped():
    gray8 = np.asarray(Image.open(PNG_CARDIOMEGALY))
    body = png_bytes(Image.fromarray(gray8.astype(np.uint16) * 257))  # same picture, 16 bits
    image = decode(body, "image/png", LIMITS)
    assert image.details == {"mode": "I;16", "bits": 16}
    np.testing.assert_allclose(image.pixels, reference_gray(), atol=1e-6)


def test_16_bit_png_keeps_values_above_8_bits_apart():
    ramp = np.tile(np.arange(0, 65536, 256, dtype=np.uint16), (64, 1))  # 256 levels
    ramp[:, -1] = 65535
    pixels = decode(png_bytes(Image.fromarray(ramp)), "image/png", LIMITS).pixels
    assert pixels.max() == 1.0 and len(np.unique(pixels)) == 256


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "1"])
def test_colour_alpha_palette_and_bilevel_pngs_become_gray(mode):
    source = Image.open(PNG_CARDIOMEGALY).convert("L")
    converted = source.convert(mode)
    image = decode(png_bytes(converted), "image/png", LIMITS)
    assert image.details["mode"] == mode and image.pixels.shape == (512, 512)
    expected = np.asarray(converted.convert("L"), dtype=np.float32) / 255.0
    np.testing.assert_allclose(image.pixels, expected, atol=1 / 255 + 1e-6)


def test_rgb_becomes_the_mean_of_its_channels():
    rgb = np.zeros((40, 40, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 30, 60, 240
    pixels = decode(png_bytes(Image.fromarray(rgb)), "image/png", LIMITS).pixels
    np.testing.assert_allclose(pixels, 110 / 255, rtol=1e-6)


def test_cmyk_jpeg_is_converted():
    cmyk = Image.open(PNG_CARDIOMEGALY).convert("RGB").convert("CMYK")
    out = io.BytesIO()
    cmyk.save(out, "JPEG", quality=95)
    image = decode(out.getvalue(), "image/jpeg", LIMITS)
    assert image.details["mode"] == "CMYK"
    assert np.abs(image.pixels - reference_gray()).mean() < 0.02


def test_exif_orientation_is_applied():
    source = Image.open(PNG_CARDIOMEGALY).convert("L").crop((0, 0, 512, 256))  # landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = io.BytesIO()
    source.save(out, "JPEG", quality=95, exif=exif)
    pixels = decode(out.getvalue(), "image/jpeg", LIMITS).pixels
    assert pixels.shape == (512, 256)
    upright = np.asarray(source.transpose(Image.Transpose.ROTATE_270), dtype=np.float32) / 255
    assert np.abs(pixels - upright).mean() < 0.02


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/jpg", "IMAGE/JPEG; q=1", OCTET])
def test_jpeg_under_every_accepted_content_type(content_type):
    image = decode(jpeg_of(PNG_CARDIOMEGALY), content_type, LIMITS)
    assert image.format == "jpeg" and np.abs(image.pixels - reference_gray()).mean() < 0.02


# --- bad input -----------------------------------------------------------------------------

def test_empty_body_is_400():
    with pytest.raises(InvalidImage, match="empty"):
        decode(b"", "image/png", LIMITS)


@pytest.mark.parametrize("body", [b"hello world", b"GIF89a" + b"\0" * 200,
                                  b"II*\0" + b"\0" * 200, b"\0" * 300],
                         ids=["text", "gif", "tiff", "zeros"])
def test_unrecognised_bytes_are_415(body):
    with pytest.raises(UnsupportedImageType, match="not a PNG, JPEG or DICOM"):
        decode(body, OCTET, LIMITS)


def test_bytes_that_contradict_the_content_type_are_415_with_the_right_type_named():
    with pytest.raises(UnsupportedImageType, match="PNG file but Content-Type says image/jpeg"
                                                   ".*send Content-Type: image/png"):
        decode(PNG_CARDIOMEGALY.read_bytes(), "image/jpeg", LIMITS)


@pytest.mark.parametrize("path", [PNG_CARDIOMEGALY, DCM_MONO2, DCM_J2K, DCM_JPEG_MONO1],
                         ids=fixture_id)
def test_truncated_files_are_400(path):
    body = path.read_bytes()
    with pytest.raises(InvalidImage, match="truncated or corrupt"):
        decode(body[:len(body) * 2 // 3], OCTET, LIMITS)


def test_truncated_jpeg_is_400():
    body = jpeg_of(PNG_CARDIOMEGALY)
    with pytest.raises(InvalidImage, match="JPEG file could not be decoded"):
        decode(body[:len(body) // 2], "image/jpeg", LIMITS)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, with one tiny compressed row of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 100_000], ids=["over-our-limit", "over-pillows"])
def test_decompression_bomb_is_413_before_decoding(side):
    with pytest.raises(PayloadTooLarge, match="pixels"):
        decode(png_header_only(side, side), "image/png", LIMITS)


def test_pixel_limit_applies_to_dicom_too():
    body = DCM_QUARTER.read_bytes()
    with pytest.raises(PayloadTooLarge, match="488x460|460x488"):
        decode(body, OCTET, Limits(max_pixels=100_000, min_side=32))


def test_an_image_too_small_to_classify_is_422():
    tiny = Image.open(PNG_TINY_RGB).resize((20, 64))
    with pytest.raises(UnclassifiableImage, match="at least 32 pixels"):
        decode(png_bytes(tiny), "image/png", LIMITS)


# --- DICOM specifics --------------------------------------------------------------------------

def gradient(bits: int = 12, shape=(64, 64)) -> np.ndarray:
    return np.linspace(0, 2 ** bits - 1, shape[0] * shape[1]).reshape(shape).astype(np.uint16)


def test_dicom_without_a_window_uses_the_bits_stored_range():
    pixels = decode(make_dicom(gradient(12), bits_stored=12), OCTET, LIMITS).pixels
    np.testing.assert_allclose(pixels, gradient(12) / 4095.0, atol=1e-6)


def test_bits_above_bits_stored_are_ignored():
    clean = gradient(12)
    dirty = clean | np.uint16(0xA000)  # overlay bits above bit 11
    a = decode(make_dicom(clean, bits_stored=12), OCTET, LIMITS).pixels
    b = decode(make_dicom(dirty, bits_stored=12), OCTET, LIMITS).pixels
    np.testing.assert_array_equal(a, b)


def test_signed_pixels_with_rescale_and_window_follow_the_dicom_pipeline():
    # CT-like: stored -1024..1023 (signed 12 bit), slope 2, intercept 100, window [-500, 1500].
    stored = np.linspace(-1024, 1023, 64 * 64).reshape(64, 64).astype(np.int16)
    body = make_dicom(stored, bits_stored=12, signed=True, RescaleSlope=2, RescaleIntercept=100,
                      WindowCenter=500, WindowWidth=2000, VOILUTFunction="LINEAR_EXACT")
    pixels = decode(body, OCTET, LIMITS).pixels
    expected = np.clip((stored * 2.0 + 100 - 500) / 2000 + 0.5, 0, 1)
    np.testing.assert_allclose(pixels, expected, atol=1e-5)


def test_linear_window_matches_the_standard_formula():
    stored = gradient(12)
    body = make_dicom(stored, bits_stored=12, WindowCenter=[2048, 100], WindowWidth=[1024, 10])
    pixels = decode(body, OCTET, LIMITS).pixels  # the first window is used
    expected = np.clip((stored - 2047.5) / 1023 + 0.5, 0, 1)
    np.testing.assert_allclose(pixels, expected, atol=1e-5)


def test_sigmoid_window():
    stored = gradient(12)
    body = make_dicom(stored, bits_stored=12, WindowCenter=2048, WindowWidth=1000,
                      VOILUTFunction="SIGMOID")
    pixels = decode(body, OCTET, LIMITS).pixels
    np.testing.assert_allclose(pixels, 1 / (1 + np.exp(-4 * (stored - 2048.0) / 1000)),
                               atol=1e-5)


def test_monochrome1_synthetic_is_inverted():
    mono1 = decode(make_dicom(gradient(12), "MONOCHROME1", bits_stored=12), OCTET, LIMITS)
    mono2 = decode(make_dicom(gradient(12), "MONOCHROME2", bits_stored=12), OCTET, LIMITS)
    np.testing.assert_allclose(mono1.pixels, 1 - mono2.pixels, atol=1e-6)


def test_rgb_dicom_becomes_gray():
    rgb = np.stack([np.full((48, 48), v, np.uint8) for v in (30, 60, 240)], axis=2)
    pixels = decode(make_dicom(rgb, "RGB"), OCTET, LIMITS).pixels
    np.testing.assert_allclose(pixels, 110 / 255, rtol=1e-6)


def test_implicit_vr_dicom_decodes():
    body = make_dicom(gradient(12), bits_stored=12, transfer_syntax=ImplicitVRLittleEndian)
    assert decode(body, OCTET, LIMITS).details["transfer_syntax"] == "Implicit VR Little Endian"


def test_multi_frame_dicom_is_422():
    frames = np.stack([gradient(12)] * 2)
    body = make_dicom(None, NumberOfFrames=2, Rows=64, Columns=64, SamplesPerPixel=1,
                      PhotometricInterpretation="MONOCHROME2", BitsAllocated=16, BitsStored=12,
                      HighBit=11, PixelRepresentation=0, PixelData=frames.tobytes())
    with pytest.raises(UnclassifiableImage, match="2 frames"):
        decode(body, "application/dicom", LIMITS)


def test_dicom_without_pixel_data_is_422():
    with pytest.raises(UnclassifiableImage, match="no image"):
        decode(make_dicom(None), "application/dicom", LIMITS)


@pytest.mark.parametrize("syntax", [JPEGLSLossless, DeflatedExplicitVRLittleEndian])
def test_unsupported_transfer_syntaxes_are_415_and_name_what_works(syntax):
    body = make_dicom(None, transfer_syntax=syntax)
    with pytest.raises(UnsupportedImageType, match=f"{syntax}.*JPEG Baseline"):
        decode(body, "application/dicom", LIMITS)


def test_dicom_without_preamble_is_415():
    body = DCM_MONO2.read_bytes()[132:]
    with pytest.raises(UnsupportedImageType, match="preamble"):
        decode(body, "application/dicom", LIMITS)


def test_errors_never_quote_dicom_patient_fields(caplog):
    body = DCM_MONO2.read_bytes()
    with pytest.raises(InvalidImage) as raised:
        decode(body[:len(body) // 2], "application/dicom", LIMITS)
    assert "NIH00000001" not in str(raised.value) and "NIH00000001" not in caplog.text


# Found by the fuzzer (scripts/fuzz; the inputs are in tests/data/fuzz-corpus/lambda)

@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")  # pydicom, writing the test file
@pytest.mark.parametrize("attributes", [{"RescaleSlope": "NaN"}, {"RescaleSlope": "1e308"},
                                        {"RescaleIntercept": "-inf"}, {"RescaleSlope": "1e-300"}],
                         ids=["nan-slope", "overflowing-slope", "infinite-intercept",
                              "vanishing-slope"])
def test_given_a_non_finite_rescale_when_decoded_then_400_instead_of_nan_pixels(attributes):
    stored = (np.arange(48 * 48, dtype=np.uint16) % 4096).reshape(48, 48)
    with pytest.raises(InvalidImage, match="Rescale"):
        decode(make_dicom(stored, bits_stored=12, **attributes), "application/dicom", LIMITS)


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")
@pytest.mark.parametrize("center, width", [("NaN", "100"), ("2048", "inf")])
def test_given_a_non_finite_window_when_decoded_then_it_is_ignored_like_any_invalid_one(
        center, width):
    stored = (np.arange(48 * 48, dtype=np.uint16) % 4096).reshape(48, 48)
    image = decode(make_dicom(stored, bits_stored=12, WindowCenter=center, WindowWidth=width),
                   "application/dicom", LIMITS)
    assert image.details["windowed"] is False and np.isfinite(image.pixels).all()
    assert image.pixels.max() == pytest.approx((48 * 48 - 1) % 4096 / 4095)


def test_given_megabytes_of_empty_elements_after_the_pixels_when_decoded_then_fast_and_the_same():
    import time
    body = DCM_QUARTER.read_bytes()
    padded = body + b"\0" * 4_000_000  # ~500,000 empty elements: seconds for pydicom to parse
    started = time.perf_counter()
    image = decode(padded, "application/dicom", LIMITS)
    assert time.perf_counter() - started < 1.0
    np.testing.assert_array_equal(image.pixels, decode(body, "application/dicom", LIMITS).pixels)


def test_given_megabytes_of_empty_elements_before_the_pixels_when_decoded_then_400():
    from chalicelib.imaging.dicom import MAX_ELEMENTS
    body = DCM_QUARTER.read_bytes()
    at = body.rfind(b"\xe0\x7f\x10\x00")  # Pixel Data
    with pytest.raises(InvalidImage, match=f"more than {MAX_ELEMENTS:,} elements"):
        decode(body[:at] + b"\0" * 8 * (MAX_ELEMENTS + 1) + body[at:], "application/dicom",
               LIMITS)


@pytest.mark.parametrize("photometric, samples", [("MONOCHROME2", 3), ("MONOCHROME1", 3),
                                                  ("RGB", 1)])
def test_given_samples_per_pixel_that_contradict_the_photometric_when_decoded_then_422(
        photometric, samples):
    pixels = np.zeros((48, 48, 3) if samples == 3 else (48, 48), dtype=np.uint8)
    body = make_dicom(pixels, photometric="RGB" if samples == 3 else "MONOCHROME2",
                      PhotometricInterpretation=photometric)
    with pytest.raises(UnclassifiableImage, match=f"SamplesPerPixel {samples}"):
        decode(body, "application/dicom", LIMITS)
