"""JPEG 2000 and JPEG codestreams through Pillow, decoded as fast as the format allows: OpenJPEG
on every vCPU, and, where a Resolution allows it, a coarser level instead of every pixel (JPEG
2000's resolution levels, JPEG's DCT scaling). The DICOM decoder hands its frames here; the JPEG
upload path uses the JPEG part.

Pillow computes a reduced JPEG 2000 size by rounding where OpenJPEG takes the ceiling, so an
odd size (1841 wide, two levels down) fails as a "broken data stream": the ceiling size is set
on the image and its tile here, and Pillow's own reduction is left off.
"""
import io
import logging
import os
import struct
from typing import Any, List, Optional, Tuple

from chalicelib.errors import InvalidImage
from chalicelib.imaging.image import Grid, Resolution, reduced_size
from chalicelib.settings import OPJ_NUM_THREADS

log = logging.getLogger(__name__)

ORIENTATION = 0x0112  # EXIF
SOC, SIZ, COD, COC, SOT = 0xFF4F, 0xFF51, 0xFF52, 0xFF53, 0xFF90
DCT_LEVELS = 3  # libjpeg scales by 1/2, 1/4 and 1/8
# How each codec's coarser levels sit on the full image (image.Grid), per level: the wavelet's
# low-pass sample k is centred on full pixel k * 2^level; a scaled IDCT's pixel k on the centre
# of its 2^level block. Their own blur, in full pixels per 2^level, is what brought the model
# input closest to the one made from every pixel on the RG1 chest (the README's fidelity table).
JPEG2000_BLUR, DCT_BLUR = 0.5, 0.4


def jpeg2000_grid(level: int, full_size: Tuple[int, int]) -> Grid:
    return Grid(level, full_size, origin=0.0, blur=JPEG2000_BLUR * (1 << level))


def dct_grid(level: int, full_size: Tuple[int, int]) -> Grid:
    power = 1 << level
    return Grid(level, full_size, origin=(power - 1) / 2, blur=DCT_BLUR * power)


def use_every_cpu_for_jpeg2000() -> None:
    """OpenJPEG reads OPJ_NUM_THREADS each time a decoder is created: unless the operator set it
    (to 1, say, for a function that shares its vCPUs), JPEG 2000 decodes on all the function's
    vCPUs."""
    if OPJ_NUM_THREADS not in os.environ:
        from chalicelib.inference.backends import cpu_threads
        os.environ[OPJ_NUM_THREADS] = str(cpu_threads())


def decode_jpeg2000(codestream: bytes, size: Tuple[int, int],
                    resolution: Resolution) -> Tuple[Any, int]:
    """(the loaded Pillow image, the level decoded) of a raw JPEG 2000 codestream that must hold
    a size = (width, height) image. Refused before any pixel is decoded when it holds another."""
    from PIL import Image

    image = Image.open(io.BytesIO(codestream), formats=["JPEG2000"])
    if image.size != size:
        raise InvalidImage(f"The JPEG 2000 image is {image.size[0]}x{image.size[1]} pixels but "
                           f"the DICOM header says {size[0]}x{size[1]}: correct Rows and "
                           f"Columns.")
    sizes = [] if resolution.exact else jpeg2000_sizes(codestream)
    level = resolution.level(sizes) if sizes else 0
    use_every_cpu_for_jpeg2000()
    if level:
        try:
            _reduce(image, sizes[level], level)
            image.load()
            return image, level
        except OSError as error:  # a tile header with fewer levels than the main one says
            log.warning("JPEG 2000 level %d failed with %s; decoding every pixel", level,
                        type(error).__name__)
            image = Image.open(io.BytesIO(codestream), formats=["JPEG2000"])
    image.load()
    return image, 0


def jpeg2000_sizes(codestream: bytes) -> List[Tuple[int, int]]:
    """The (width, height) of each resolution level the codestream's main header declares,
    the full image first (as OpenJPEG computes them: image-grid corners divided, rounded up);
    [] for an image not at the grid's origin (its levels would not start on its first pixel)."""
    header = _main_header(codestream)
    if header is None or header[0][2:] != (0, 0):
        return []
    (x1, y1, x0, y0), decompositions = header
    sizes = []
    for level in range(decompositions + 1):
        power = 1 << level
        sizes.append((-(-x1 // power) - -(-x0 // power), -(-y1 // power) - -(-y0 // power)))
    return sizes


def _main_header(codestream: bytes) -> Optional[Tuple[Tuple[int, int, int, int], int]]:
    """((Xsiz, Ysiz, XOsiz, YOsiz), decomposition levels) from the SIZ, COD and COC markers of
    the main header, or None when it is not a codestream with both."""
    if len(codestream) < 4 or struct.unpack_from(">H", codestream)[0] != SOC:
        return None
    grid, levels, position = None, None, 2
    while position + 4 <= len(codestream):
        marker, length = struct.unpack_from(">HH", codestream, position)
        if marker == SOT or marker >> 8 != 0xFF:
            break
        if marker == SIZ and position + 22 <= len(codestream):
            grid = struct.unpack_from(">IIII", codestream, position + 6)
        elif marker == COD and position + 10 <= len(codestream):
            levels = min(levels if levels is not None else 32, codestream[position + 9])
        elif marker == COC and position + 7 <= len(codestream):  # one component: Ccoc is 1 byte
            levels = min(levels if levels is not None else 32, codestream[position + 6])
        position += 2 + length
    return (grid, levels) if grid is not None and levels is not None else None


def _reduce(image: Any, size: Tuple[int, int], level: int) -> None:
    """Makes image decode resolution level `level`, of that size: the tile asks OpenJPEG for the
    level at the size OpenJPEG gives it; the plugin's own (rounded) reduction stays off."""
    from PIL import ImageFile

    image._size = size
    tile = image.tile[0]
    codec, _, layers, fd, length = tile.args
    image.tile = [ImageFile._Tile(tile.codec_name, (0, 0, *image.size), tile.offset,
                                  (codec, level, layers, fd, length))]


def draft_jpeg(image: Any, resolution: Resolution) -> int:
    """Sets libjpeg's DCT scaling on an opened, not yet loaded, JPEG for the level resolution
    allows (grayscale and RGB: the mode is kept; not one that EXIF turns, whose blocks would
    not start at its first pixel); the level that will be decoded."""
    if (resolution.exact or image.mode not in ("L", "RGB")
            or image.getexif().get(ORIENTATION, 1) != 1):
        return 0
    width, height = image.size
    level = resolution.level([reduced_size(width, height, r) for r in range(DCT_LEVELS + 1)])
    # Pillow picks the scale from the size asked for: ask for one that gives exactly 1/2^level
    while level and (min(width, height) >> level == 0 or
                     min(width // (width >> level), height // (height >> level)) >= 2 << level):
        level -= 1
    if level and image.draft(image.mode, (width >> level, height >> level)) is None:
        return 0
    return level
