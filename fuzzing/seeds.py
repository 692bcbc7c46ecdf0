"""The inputs the mutations start from: the shared radiographs, read in place (never copied into
the repository), JPEGs made from them, and small images derived from them in each variant the
decoders branch on (bit depth, colour, interlace, every DICOM transfer syntax we serve). The
small ones keep atheris fast, as libFuzzer mutates short inputs best; all are made in memory,
deterministically, on each run."""
import io
from functools import lru_cache
from typing import Callable, Dict, Tuple

from chalicelib.imaging.formats import CONTENT_TYPE_OF_FORMAT, DICOM, JPEG, PNG, sniff
from tests.support.fixtures import ALL_FIXTURES, PNG_CARDIOMEGALY, jpeg_of

SMALL_SIDE = 48  # above the minimum side (32) so that small seeds reach the whole decode path


def _small(mode: str = "L", side: int = SMALL_SIDE):
    from PIL import Image
    return Image.open(PNG_CARDIOMEGALY).convert("L").resize((side, side)).convert(mode)


def _png(image, **save_args) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", **save_args)
    return out.getvalue()


def _jpeg(image, **save_args) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", **save_args)
    return out.getvalue()


def _gray16():
    import numpy as np
    from PIL import Image
    return Image.fromarray(np.asarray(_small(), dtype=np.uint16) * 257)


def _exif_rotated() -> bytes:
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return _jpeg(_small(), exif=exif.tobytes())


def _dicom(syntax: str, bits: int = 8, photometric: str = "MONOCHROME2", **attrs) -> bytes:
    import numpy as np
    from pydicom import uid
    from pydicom.encaps import encapsulate

    from tests.support.dicom_factory import make_dicom
    gray = np.asarray(_small(), dtype=np.uint8)
    if photometric == "RGB":
        pixels = np.repeat(gray[:, :, None], 3, axis=2)
    elif bits == 16:
        pixels = gray.astype(np.uint16) << 4  # 12 bits stored in 16
        attrs.setdefault("bits_stored", 12)
    else:
        pixels = gray
    if syntax == uid.JPEGBaseline8Bit:
        frame = _jpeg(_small())
    elif syntax == uid.JPEG2000:
        from PIL import Image
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, "JPEG2000", no_jp2=True, irreversible=True,
                                     quality_mode="rates", quality_layers=[20])
        frame = out.getvalue()
    elif syntax == uid.RLELossless:
        from pydicom.pixels.encoders.base import RLELosslessEncoder
        frame = RLELosslessEncoder.encode(pixels, encoding_plugin="pydicom", rows=SMALL_SIDE,
                                          columns=SMALL_SIDE, samples_per_pixel=1,
                                          bits_allocated=pixels.dtype.itemsize * 8,
                                          bits_stored=pixels.dtype.itemsize * 8,
                                          pixel_representation=0, number_of_frames=1,
                                          photometric_interpretation=photometric)
    else:
        return make_dicom(pixels, photometric=photometric, transfer_syntax=syntax, **attrs)
    return make_dicom(pixels, photometric=photometric, transfer_syntax=syntax,
                      PixelData=encapsulate([frame]), **attrs)


def _small_bases() -> Dict[str, Callable[[], bytes]]:
    from pydicom import uid
    return {
        "small-gray8.png": lambda: _png(_small()),
        "small-gray16.png": lambda: _png(_gray16()),
        "small-rgb.png": lambda: _png(_small("RGB")),
        "small-palette.png": lambda: _png(_small("P")),
        "small-gray-alpha.png": lambda: _png(_small("LA")),
        "small-gray.jpg": lambda: _jpeg(_small()),
        "small-progressive.jpg": lambda: _jpeg(_small(), progressive=True),
        "small-cmyk.jpg": lambda: _jpeg(_small("CMYK")),
        "small-exif-rotated.jpg": _exif_rotated,
        "small-explicit-12bit.dcm": lambda: _dicom(uid.ExplicitVRLittleEndian, 16,
                                                   RescaleSlope=2, RescaleIntercept=-1024,
                                                   WindowCenter=1000, WindowWidth=3000),
        "small-implicit-mono1.dcm": lambda: _dicom(uid.ImplicitVRLittleEndian, 8,
                                                   photometric="MONOCHROME1"),
        "small-rgb.dcm": lambda: _dicom(uid.ExplicitVRLittleEndian, photometric="RGB",
                                        PlanarConfiguration=0),
        "small-rle.dcm": lambda: _dicom(uid.RLELossless),
        "small-jpeg-baseline.dcm": lambda: _dicom(uid.JPEGBaseline8Bit),
        "small-j2k.dcm": lambda: _dicom(uid.JPEG2000),
    }


def _fixture_bases() -> Dict[str, Callable[[], bytes]]:
    bases: Dict[str, Callable[[], bytes]] = {p.name: p.read_bytes for p in ALL_FIXTURES}
    bases[PNG_CARDIOMEGALY.stem + ".jpg"] = lambda: jpeg_of(PNG_CARDIOMEGALY)
    bases[PNG_CARDIOMEGALY.stem + "_progressive.jpg"] = lambda: jpeg_of(PNG_CARDIOMEGALY,
                                                                        progressive=True)
    return bases


@lru_cache(maxsize=None)
def names(kind: str = "all") -> Tuple[str, ...]:
    """Base names: "fixtures" (the shared radiographs and JPEGs of one), "small", or "all"."""
    chosen = {"fixtures": _fixture_bases, "small": _small_bases}
    makers = [chosen[kind]] if kind in chosen else list(chosen.values())
    return tuple(name for maker in makers for name in maker())


@lru_cache(maxsize=None)
def load(name: str) -> bytes:
    """The bytes of a base, by name (what a corpus recipe names)."""
    makers = {**_fixture_bases(), **_small_bases()}
    if name not in makers:
        raise KeyError(f"no seed named {name!r}; known: {', '.join(makers)}")
    return makers[name]()


def content_type_of(body: bytes) -> str:
    """The Content-Type a correct client sends for these bytes."""
    found = sniff(body)
    return CONTENT_TYPE_OF_FORMAT[found] if found else "application/octet-stream"


FORMATS = (PNG, JPEG, DICOM)
