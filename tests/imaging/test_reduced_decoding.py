"""Opt-in reduced decoding (image.Resolution): which level a request gets (never coarser than
the manifest allows, than the file holds, or below the model's input side), the sizes decoded
(Pillow's JPEG 2000 rounding fixed), what the answer's image member then says, and the exact
default untouched."""
import io

import numpy as np
import pytest
from PIL import Image

from benchmarks.samples import png_j2k_dicom, rg1_j2k_lossless
from chalicelib.imaging.codestreams import decode_jpeg2000, jpeg2000_sizes
from chalicelib.imaging.dispatch import decode
from chalicelib.imaging.image import EXACT, Limits, Resolution, reduced_size
from tests.support.fixtures import (
    DCM_J2K,
    DCM_JPEG_MONO1,
    DCM_MONO2,
    FIXTURES,
    PNG_CARDIOMEGALY,
    jpeg_of,
)

LIMITS = Limits(max_pixels=40_000_000, min_side=32)
DICOM = "application/dicom"
RG1_SIZES = [(1841, 1955), (921, 978), (461, 489), (231, 245), (116, 123), (58, 62)]


@pytest.fixture(scope="module")
def j2k_lossless() -> bytes:
    return rg1_j2k_lossless(FIXTURES)


def frame_of(body: bytes) -> bytes:
    import pydicom
    from pydicom.encaps import generate_frames
    return next(generate_frames(pydicom.dcmread(io.BytesIO(body)).PixelData,
                                number_of_frames=1))


# --- which level ---------------------------------------------------------------------------

def test_given_the_exact_default_then_no_level_is_ever_chosen():
    assert EXACT.exact and EXACT.level(RG1_SIZES) == 0


@pytest.mark.parametrize("coarsest, side, expected", [
    (1, 224, 1),   # the manifest's cap
    (2, 224, 2),
    (9, 224, 3),   # level 4 (116 wide) would fall below the input side
    (9, 462, 1),   # level 2 is 461 wide: one pixel short
    (9, 461, 2),   # exactly the input side is enough
    (9, 1, 5),     # the file's coarsest level (5 decompositions)
    (0, 1, 0),     # a manifest without reduced_decoding: never
])
def test_the_level_is_the_coarsest_the_manifest_the_file_and_the_min_side_allow(
        coarsest, side, expected):
    assert Resolution(coarsest_level=coarsest, min_side=side).level(RG1_SIZES) == expected


def test_a_file_without_levels_is_decoded_whole():
    assert Resolution(coarsest_level=3, min_side=1).level([(512, 512)]) == 0


def test_reduced_sizes_round_up_as_openjpeg_and_libjpeg_do():
    assert [reduced_size(1841, 1955, level) for level in range(6)] == RG1_SIZES


def test_the_jpeg_2000_levels_are_read_from_the_main_header(j2k_lossless):
    assert jpeg2000_sizes(frame_of(j2k_lossless)) == RG1_SIZES
    # the shared lossy file has as many: 5 decompositions, the full image and 5 coarser levels
    assert jpeg2000_sizes(frame_of(DCM_J2K.read_bytes())) == RG1_SIZES


# --- Pillow's rounding ---------------------------------------------------------------------

def odd_j2k() -> bytes:
    """A 509x509 codestream: 509 / 4 rounds to 127 but OpenJPEG makes 128."""
    out = io.BytesIO()
    Image.open(PNG_CARDIOMEGALY).convert("L").crop((0, 0, 509, 509)).save(
        out, "JPEG2000", no_jp2=True, num_resolutions=4)
    return out.getvalue()


def test_pillows_own_reduce_still_fails_on_odd_sizes_so_the_fix_is_needed():
    """If this starts passing, Pillow computes the ceiling itself and codestreams._reduce can
    go."""
    image = Image.open(io.BytesIO(odd_j2k()))
    image.reduce = 2
    with pytest.raises(OSError, match="broken data stream"):
        image.load()


@pytest.mark.parametrize("level, size", [(1, (255, 255)), (2, (128, 128)), (3, (64, 64))])
def test_given_an_odd_size_when_reduced_then_the_level_decodes_at_openjpegs_size(level, size):
    image, decoded = decode_jpeg2000(odd_j2k(), (509, 509),
                                     Resolution(coarsest_level=level, min_side=1))
    assert decoded == level and image.size == size
    whole = np.asarray(Image.open(io.BytesIO(odd_j2k())), dtype=np.float32)
    coarse = np.asarray(image, dtype=np.float32)
    block = 1 << level  # a coarser level shows what the blocks of the full image show
    corner = 256 // block
    assert abs(coarse[:corner, :corner].mean() - whole[:256, :256].mean()) < 3


# --- through decode() ----------------------------------------------------------------------

def test_given_reduced_decoding_when_the_rg1_lossless_is_decoded_then_the_answer_says_both_sizes(
        j2k_lossless):
    image = decode(j2k_lossless, DICOM, LIMITS, Resolution(coarsest_level=2, min_side=224))
    assert image.pixels.shape == (489, 461) and image.pixels.dtype == np.float32
    described = image.describe()
    assert (described["width"], described["height"]) == (1841, 1955)
    assert described["decoded"] == {"level": 2, "width": 461, "height": 489}
    exact = decode(j2k_lossless, DICOM, LIMITS)
    assert "decoded" not in exact.describe() and exact.pixels.shape == (1955, 1841)
    assert {k: v for k, v in described.items() if k != "decoded"} == exact.describe()


def test_given_a_reduced_level_then_the_pixels_keep_the_display_pipeline(j2k_lossless):
    """Window and MONOCHROME1 inversion apply to the coarser level as to the whole image."""
    reduced = decode(j2k_lossless, DICOM, LIMITS, Resolution(coarsest_level=1, min_side=224))
    exact = decode(j2k_lossless, DICOM, LIMITS).pixels
    blocks = exact[:1954, :1840].reshape(977, 2, 920, 2).mean(axis=(1, 3))
    assert np.abs(reduced.pixels[:977, :920] - blocks).mean() < 0.01


def test_given_the_shared_lossy_j2k_and_a_generous_manifest_then_the_min_side_stops_it():
    image = decode(DCM_J2K.read_bytes(), DICOM, LIMITS, Resolution(coarsest_level=9,
                                                                   min_side=224))
    assert image.describe()["decoded"] == {"level": 3, "width": 231, "height": 245}


@pytest.mark.parametrize("rate", [None, 20])
def test_given_a_png_stored_jpeg_2000_then_it_reduces_too(rate):
    body = png_j2k_dicom(PNG_CARDIOMEGALY, rate=rate)
    image = decode(body, DICOM, LIMITS, Resolution(coarsest_level=2, min_side=224))
    assert image.describe()["decoded"] == {"level": 1, "width": 256, "height": 256}


def test_given_a_jpeg_upload_then_dct_scaling_gives_the_level():
    image = decode(jpeg_of(PNG_CARDIOMEGALY), "image/jpeg", LIMITS,
                   Resolution(coarsest_level=3, min_side=224))
    assert image.pixels.shape == (256, 256)
    assert image.describe()["decoded"] == {"level": 1, "width": 256, "height": 256}
    assert (image.describe()["width"], image.describe()["height"]) == (512, 512)


def test_given_a_jpeg_that_exif_turns_then_it_is_decoded_whole():
    """Its DCT blocks would not start at the first pixel of the upright image (image.Grid)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    out = io.BytesIO()
    Image.open(PNG_CARDIOMEGALY).convert("L").crop((0, 0, 512, 480)).save(out, "JPEG",
                                                                            exif=exif)
    image = decode(out.getvalue(), "image/jpeg", LIMITS, Resolution(3, 224))
    assert image.pixels.shape == (512, 480) and "decoded" not in image.describe()


def test_given_a_jpeg_baseline_dicom_then_dct_scaling_applies_to_it():
    image = decode(DCM_JPEG_MONO1.read_bytes(), DICOM, LIMITS, Resolution(2, 224))
    assert image.describe()["decoded"] == {"level": 1, "width": 256, "height": 256}


@pytest.mark.parametrize("path", [DCM_MONO2, PNG_CARDIOMEGALY], ids=["uncompressed", "png"])
def test_formats_without_levels_are_decoded_whole_whatever_the_resolution(path):
    content_type = "image/png" if path.suffix == ".png" else DICOM
    reduced = decode(path.read_bytes(), content_type, LIMITS, Resolution(3, 1))
    exact = decode(path.read_bytes(), content_type, LIMITS)
    assert reduced.describe() == exact.describe() and "decoded" not in exact.describe()
    assert np.array_equal(reduced.pixels, exact.pixels)


# --- the model input from a level ----------------------------------------------------------

@pytest.mark.parametrize("level", [1, 2])
def test_a_level_aligned_on_the_full_images_grid_gives_nearly_the_full_images_model_input(
        j2k_lossless, level):
    """The RG1 chest at levels 1 and 2 (921 and 461 wide for a 224 input): resampled onto the
    output grid the full image's resize uses, far closer to it than resized as if it were a
    full image (the fidelity benchmark has the figures)."""
    from chalicelib.inference.preprocessing import xrv
    exact = xrv(decode(j2k_lossless, DICOM, LIMITS).pixels, 224)[0, 0, 4:-4, 4:-4]
    reduced = decode(j2k_lossless, DICOM, LIMITS, Resolution(level, 224))
    aligned = np.abs(xrv(reduced.pixels, 224, reduced.grid)[0, 0, 4:-4, 4:-4] - exact)
    unaligned = np.abs(xrv(reduced.pixels, 224)[0, 0, 4:-4, 4:-4] - exact)
    assert aligned.max() < unaligned.max() / 4 and aligned.mean() < unaligned.mean() / 4
    assert aligned.max() < 0.025 * 2048  # 2.5% of the [-1024, 1024] range



def test_given_a_level_openjpeg_cannot_decode_then_every_pixel_is_decoded(monkeypatch):
    """E.g. a tile header declaring fewer levels than the main header: the answer is exact."""
    from chalicelib.imaging import codestreams

    def broken(image, size, level):
        raise OSError("broken data stream")
    monkeypatch.setattr(codestreams, "_reduce", broken)
    image, level = decode_jpeg2000(odd_j2k(), (509, 509), Resolution(2, 1))
    assert level == 0 and image.size == (509, 509)
