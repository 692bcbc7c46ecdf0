"""The types every decoder shares: what a decoded image is, the limits it must respect, and how
finely to decode it. Kept apart from the dispatcher so that each decoder imports them without
importing the others."""
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple

from chalicelib.errors import PayloadTooLarge

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset


@dataclass(frozen=True)
class Limits:
    max_pixels: int
    min_side: int


@dataclass(frozen=True)
class Resolution:
    """How finely to decode. Exact (the default) decodes every pixel the file holds. A reduced
    resolution lets a format that stores coarser levels (JPEG 2000's resolution levels, JPEG's
    DCT scaling: level r is 1/2^r of each side) decode one of them instead, never coarser than
    coarsest_level nor one whose short side falls below min_side (both the model manifest's).
    Not exact: the README says what it costs."""
    coarsest_level: int = 0
    min_side: int = 0

    @property
    def exact(self) -> bool:
        return self.coarsest_level == 0

    def level(self, sizes: Sequence[Tuple[int, int]]) -> int:
        """The level to decode, given the (width, height) of each level the file offers
        (sizes[0] is the full image): the coarsest allowed one that keeps the short side."""
        chosen = 0
        for level in range(1, min(self.coarsest_level, len(sizes) - 1) + 1):
            if min(sizes[level]) < self.min_side:
                break
            chosen = level
        return chosen


EXACT = Resolution()


@dataclass(frozen=True)
class Grid:
    """Where the samples of a coarser level sit on the full image: sample k of level `level`
    (each axis) is centred on full-image pixel origin + k * 2^level, and the codec has already
    low-passed it about as much as a Gaussian of sigma `blur` full-image pixels would. What
    lets the preprocessing resample a level as if it resampled the full image."""
    level: int
    full_size: Tuple[int, int]  # the file's own (width, height)
    origin: float
    blur: float


def reduced_size(width: int, height: int, level: int) -> Tuple[int, int]:
    """The size of level `level` of a width x height image: each side divided by 2^level,
    rounded up (JPEG 2000 and libjpeg's DCT scaling both round up)."""
    power = 1 << level
    return -(-width // power), -(-height // power)


@dataclass
class DecodedImage:
    pixels: "np.ndarray"  # float32, shape (height, width), values in [0, 1]
    format: str
    details: Dict[str, Any] = field(default_factory=dict)  # safe to return and to log
    # A DICOM's header without its pixels, for the reports that join its study (chalicelib/
    # reports/). It holds patient fields: never described, logged, or shown in a repr.
    header: Optional["Dataset"] = field(default=None, repr=False, compare=False)
    # When a coarser level was decoded (Resolution): how it sits on the full image. None = the
    # pixels are the whole image.
    grid: Optional[Grid] = None

    @property
    def level(self) -> int:
        return self.grid.level if self.grid is not None else 0

    @property
    def size(self) -> Tuple[int, int]:
        """The file's own (width, height), even where a coarser level was decoded."""
        if self.grid is not None:
            return self.grid.full_size
        height, width = self.pixels.shape
        return width, height

    def describe(self) -> Dict[str, Any]:
        width, height = self.size
        described: Dict[str, Any] = {"format": self.format, "width": width, "height": height,
                                     **self.details}
        if self.grid is not None:
            decoded_height, decoded_width = self.pixels.shape
            described["decoded"] = {"level": self.grid.level, "width": decoded_width,
                                    "height": decoded_height}
        return described


def check_pixel_count(width: int, height: int, limits: Limits) -> None:
    """Refuses an image by the size its header declares, before any pixel is decoded."""
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(
            f"The image is {width}x{height} pixels; the limit is {limits.max_pixels:,} pixels. "
            f"Downscale it before sending (the model sees 224x224).")
