"""The fast grayscale PNG path gives exactly Pillow's pixels, or steps aside for Pillow.

The PNGs here are written by a small encoder that chooses each row's filter, which Pillow's own
encoder cannot be told to do; Pillow's decoding of the same bytes is the reference."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from chalicelib.errors import InvalidImage
from chalicelib.imaging import png
from chalicelib.imaging.dispatch import decode
from chalicelib.imaging.image import Limits
from chalicelib.imaging.pillow import gray_unit, unit
from tests.support.fixtures import PNG_CARDIOMEGALY, PNG_NOFINDING

NONE, SUB, UP, AVERAGE, PAETH = range(5)
LIMITS = Limits(max_pixels=40_000_000, min_side=8)


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def filtered_rows(samples: np.ndarray, filters: list) -> bytes:
    """The PNG specification's filters, byte by byte (bpp = bytes per pixel)."""
    bpp = samples.dtype.itemsize
    raw = samples.astype(samples.dtype.newbyteorder(">")).view(np.uint8)
    raw = raw.reshape(samples.shape[0], -1).astype(int)
    out = bytearray()
    for y, kind in enumerate(filters):
        row = raw[y]
        above = raw[y - 1] if y else np.zeros_like(row)
        left = np.concatenate([np.zeros(bpp, int), row[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, int), above[:-bpp]])
        if kind == PAETH:
            guess = left + above - upper_left
            pa, pb, pc = abs(guess - left), abs(guess - above), abs(guess - upper_left)
            predictor = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above,
                                                                         upper_left))
        else:
            predictor = {NONE: 0, SUB: left, UP: above, AVERAGE: (left + above) // 2}[kind]
        out.append(kind)
        out += ((row - predictor) % 256).astype(np.uint8).tobytes()
    return bytes(out)


def encode(samples: np.ndarray, filters: list, idat_size: int = 1 << 20,
           stream: bytes = None, extra: bytes = b"", interlace: int = 0) -> bytes:
    height, width = samples.shape
    ihdr = struct.pack(">IIBBBBB", width, height, 8 * samples.dtype.itemsize, 0, 0, 0, interlace)
    stream = zlib.compress(filtered_rows(samples, filters)) if stream is None else stream
    idat = b"".join(chunk(b"IDAT", stream[i:i + idat_size])
                    for i in range(0, len(stream), idat_size))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + extra + chunk(b"IEND", b"")


def pillow_pixels(body: bytes) -> np.ndarray:
    return gray_unit(Image.open(io.BytesIO(body)))[0]


def fast_pixels(body: bytes):
    """(pixels in [0, 1], bits) as decoding scales the fast path's samples, or None."""
    fast = png.gray_png_samples(body, Image.open(io.BytesIO(body)))
    return None if fast is None else unit(*fast)


def sample_image(dtype=np.uint8, shape=(37, 41)) -> np.ndarray:
    rng = np.random.default_rng(7)
    top = np.iinfo(dtype).max
    gradient = np.linspace(0, top, shape[1])[None] * np.linspace(0.2, 1, shape[0])[:, None]
    return np.clip(gradient + rng.normal(0, top / 20, shape), 0, top).astype(dtype)


@pytest.mark.parametrize("path", [PNG_CARDIOMEGALY, PNG_NOFINDING],
                         ids=["cardiomegaly", "nofinding"])
def test_nih_pngs_take_the_fast_path_with_pillows_pixels(path):
    # given an NIH ChestX-ray14 PNG (8-bit gray, None on every row)
    body = path.read_bytes()
    # when it is decoded by the fast path
    pixels, bits = fast_pixels(body)
    # then it is exactly what Pillow gives
    assert bits == 8 and pixels.dtype == np.float32
    assert np.array_equal(pixels, pillow_pixels(body))


FILTER_PATTERNS = {"none": [NONE], "sub": [SUB], "up": [UP], "up first": [UP, SUB, NONE],
                   "mixed": [NONE, UP, UP, SUB, UP, NONE, SUB, SUB, UP]}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16], ids=["8-bit", "16-bit"])
@pytest.mark.parametrize("pattern", FILTER_PATTERNS.values(), ids=FILTER_PATTERNS.keys())
def test_none_sub_and_up_rows_are_unfiltered_as_pillow_does(pattern, dtype):
    # given a gray PNG whose rows cycle through None, Sub and Up, split over small IDAT chunks
    samples = sample_image(dtype)
    filters = [pattern[y % len(pattern)] for y in range(samples.shape[0])]
    body = encode(samples, filters, idat_size=100)
    # when the fast path decodes it
    pixels, bits = fast_pixels(body)
    # then its pixels are Pillow's, and the samples the encoder was given
    assert bits == 8 * samples.dtype.itemsize
    assert np.array_equal(pixels, pillow_pixels(body))
    assert np.array_equal(np.rint(pixels * np.iinfo(dtype).max), samples)


@pytest.mark.parametrize("row", [0, 20, 36], ids=["first row", "middle row", "last row"])
@pytest.mark.parametrize("kind", [AVERAGE, PAETH], ids=["average", "paeth"])
def test_average_or_paeth_rows_are_left_to_pillow(kind, row):
    # given a PNG with one Average or Paeth row among Up rows
    samples = sample_image()
    filters = [UP] * samples.shape[0]
    filters[row] = kind
    body = encode(samples, filters)
    # then the fast path steps aside, and decoding still gives Pillow's pixels
    assert fast_pixels(body) is None
    assert np.array_equal(decode(body, "image/png", LIMITS).pixels, pillow_pixels(body))


def test_a_paeth_first_row_is_left_to_pillow_before_the_whole_stream_is_inflated(monkeypatch):
    # given a large PNG whose first row is Paeth (what adaptive encoders write)
    body = encode(sample_image(shape=(1000, 2000)), [PAETH] + [NONE] * 999)
    whole_inflates = []
    monkeypatch.setattr(png.deflate, "zlib_decompress",
                        lambda *args: whole_inflates.append(args) or b"")
    # when the fast path tries it
    assert fast_pixels(body) is None
    # then it gave up after inflating the first rows only
    assert whole_inflates == []


def test_a_paeth_row_further_down_is_left_to_pillow_too():
    samples = sample_image(shape=(300, 100))
    body = encode(samples, [NONE] * 299 + [PAETH])
    assert fast_pixels(body) is None
    assert np.array_equal(decode(body, "image/png", LIMITS).pixels, pillow_pixels(body))


def corrupt_streams() -> dict:
    samples = sample_image()
    rows = filtered_rows(samples, [NONE] * samples.shape[0])
    good = zlib.compress(rows)
    return {"bad checksum": good[:-4] + (int.from_bytes(good[-4:], "big") ^ 1).to_bytes(4, "big"),
            "one row short": zlib.compress(rows[:-42]),
            "one byte long": zlib.compress(rows + b"\0"),
            "bomb": zlib.compress(rows + bytes(50_000_000)),
            "not zlib": b"\x00" * len(good),
            "filter type 7": zlib.compress(b"\x07" + rows[1:])}


@pytest.mark.parametrize("stream", corrupt_streams().values(), ids=corrupt_streams().keys())
def test_streams_that_do_not_match_the_header_are_left_to_pillow(stream):
    # given a PNG whose zlib stream is corrupt, or holds less or more than its header declares
    body = encode(sample_image(), [NONE] * 37, stream=stream)
    # then the fast path steps aside, and decoding answers what Pillow answers
    assert fast_pixels(body) is None
    try:
        expected = pillow_pixels(body)
    except Exception:
        with pytest.raises(InvalidImage):
            decode(body, "image/png", LIMITS)
    else:
        assert np.array_equal(decode(body, "image/png", LIMITS).pixels, expected)


def test_a_truncated_png_is_still_a_client_error():
    body = encode(sample_image(), [NONE] * 37)
    with pytest.raises(InvalidImage):
        decode(body[:len(body) // 2], "image/png", LIMITS)


def exif_orientation(rotation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = rotation
    return exif.tobytes()


@pytest.mark.parametrize("where", ["before", "after"])
def test_exif_is_left_to_pillow_which_turns_the_image(where):
    # given a PNG whose eXIf chunk says "rotate 90 CW", before or after the image data
    samples = sample_image()
    body = encode(samples, [NONE] * 37)
    exif = chunk(b"eXIf", exif_orientation(6))
    if where == "before":
        body = body[:33] + exif + body[33:]
    else:
        body = body[:-12] + exif + body[-12:]
    # then the fast path steps aside and the decoded image is turned
    assert fast_pixels(body) is None
    assert decode(body, "image/png", LIMITS).pixels.shape == samples.shape[::-1]


def test_exif_in_a_text_chunk_is_left_to_pillow():
    text = b"Raw profile type exif\0\nexif\n      10\n" + exif_orientation(6).hex().encode()
    body = encode(sample_image(), [NONE] * 37, extra=chunk(b"tEXt", text))
    assert fast_pixels(body) is None


def test_other_chunks_after_the_image_data_do_not_matter():
    body = encode(sample_image(), [NONE] * 37, extra=chunk(b"tEXt", b"Comment\0hello"))
    assert np.array_equal(fast_pixels(body)[0], pillow_pixels(body))


@pytest.mark.parametrize("mode", ["RGB", "P", "LA", "1"])
def test_other_modes_are_left_to_pillow(mode):
    out = io.BytesIO()
    Image.fromarray(sample_image()).convert(mode).save(out, "PNG")
    assert fast_pixels(out.getvalue()) is None


def test_interlaced_pngs_are_left_to_pillow():
    samples = sample_image()
    body = encode(samples, [NONE] * 37, interlace=1,
                  stream=zlib.compress(bytes(37 * 42)))  # any stream: never inflated
    assert fast_pixels(body) is None
