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
    coarsest_level (what the model's manifest accepts) nor one whose short side falls below
    input_side (the model's input side). Not exact: the README says what it costs."""
    coarsest_level: int = 0
    input_side: int = 0

    @property
    def exact(self) -> bool:
        return self.coarsest_level == 0

    def level(self, sizes: Sequence[Tuple[int, int]]) -> int:
        """The level to decode, given the (width, height) of each level the file offers
        (sizes[0] is the full image): the coarsest allowed one that keeps the short side."""
        chosen = 0
        for level in range(1, min(self.coarsest_level, len(sizes) - 1) + 1):
            if min(sizes[level]) < self.input_side:
                break
            chosen = level
        return chosen


EXACT = Resolution()


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
    # When a coarser level was decoded (Resolution): the level, and the file's own (width,
    # height), as upright as the pixels. None = the pixels are the whole image.
    level: int = 0
    full_size: Optional[Tuple[int, int]] = None

    def describe(self) -> Dict[str, Any]:
        height, width = self.pixels.shape
        described: Dict[str, Any] = {"format": self.format, "width": width, "height": height,
                                     **self.details}
        if self.full_size is not None and self.level:
            described["width"], described["height"] = self.full_size
            described["decoded"] = {"level": self.level, "width": width, "height": height}
        return described


def check_pixel_count(width: int, height: int, limits: Limits) -> None:
    """Refuses an image by the size its header declares, before any pixel is decoded."""
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(
            f"The image is {width}x{height} pixels; the limit is {limits.max_pixels:,} pixels. "
            f"Downscale it before sending (the model sees 224x224).")
