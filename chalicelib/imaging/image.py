"""The types every decoder shares: what a decoded image is, and the limits it must respect.
Kept apart from the dispatcher so that each decoder imports them without importing the others."""
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, Optional

from chalicelib.errors import PayloadTooLarge

if TYPE_CHECKING:
    import numpy as np
    from pydicom.dataset import Dataset


@dataclass(frozen=True)
class Limits:
    max_pixels: int
    min_side: int


@dataclass
class DecodedImage:
    pixels: "np.ndarray"  # float32, shape (height, width), values in [0, 1]
    format: str
    details: Dict[str, Any] = field(default_factory=dict)  # safe to return and to log
    # A DICOM's header without its pixels, for the reports that join its study (chalicelib/
    # reports/). It holds patient fields: never described, logged, or shown in a repr.
    header: Optional["Dataset"] = field(default=None, repr=False, compare=False)

    def describe(self) -> Dict[str, Any]:
        height, width = self.pixels.shape
        return {"format": self.format, "width": width, "height": height, **self.details}


def check_pixel_count(width: int, height: int, limits: Limits) -> None:
    """Refuses an image by the size its header declares, before any pixel is decoded."""
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(
            f"The image is {width}x{height} pixels; the limit is {limits.max_pixels:,} pixels. "
            f"Downscale it before sending (the model sees 224x224).")
