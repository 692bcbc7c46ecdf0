"""Decoded image -> model input, and back. Each recipe, named in the model manifest, has a
forward function (image in [0, 1] -> batch), its inverse (batch -> the image the model saw, in
[0, 1], for the heatmap overlay), and the description the manifest stores with it.

The "imagenet" recipe is what torchvision-trained models (CheXNet and the like) expect: center
crop, PIL's bilinear resize (as torchvision.transforms.Resize does it on a PIL image, but on
float pixels, without rounding to 8 bits), the gray channel repeated three times, and ImageNet's
mean/std normalisation.

The "xrv" recipe reproduces torchxrayvision's pipeline: normalize to [-1024, 1024], center crop
to a square, then skimage.transform.resize(mode="constant") to 224x224, i.e. a Gaussian
anti-aliasing blur (sigma = (factor - 1) / 2, zero padding) followed by bilinear sampling at
pixel centers with zeros beyond the edge. Both steps are linear and act on rows and columns
separately, so the whole resize is one small matrix M applied as M @ image @ M.T, which is
exact and needs neither scipy nor torch. M is banded (each output reads a few neighbouring
inputs), so it is applied block by block, skipping the zeros: for a 512-pixel image that is ~10x
fewer multiply-adds than the dense product, and ~40x for a 2,048-pixel one.
"""
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

import numpy as np

if TYPE_CHECKING:
    from chalicelib.imaging.image import Grid

XRV_RANGE = 1024.0


def center_crop(image: np.ndarray) -> np.ndarray:
    """The largest centered square, with torchxrayvision's rounding."""
    height, width = image.shape
    side = min(height, width)
    top, left = height // 2 - side // 2, width // 2 - side // 2
    return image[top:top + side, left:left + side]


@lru_cache(maxsize=16)
def resize_matrix(source: int, target: int) -> np.ndarray:
    """The (target x source) operator of skimage's anti-aliased bilinear resize along one axis:
    each output sample is a bilinear mix of two blurred inputs, each a window of Gaussian taps."""
    factor = source / target
    offsets, taps = _gaussian((factor - 1) / 2 if factor > 1 else 0.0)
    coords = (np.arange(target) + 0.5) * factor - 0.5
    return _sampling_matrix(source, coords, offsets, taps, np.ones(source, dtype=bool))


def _gaussian(sigma: float) -> Tuple[np.ndarray, np.ndarray]:
    """(offsets, taps) of scipy.ndimage.gaussian_filter's kernel (truncate=4.0); one tap of 1
    for no blur."""
    offsets, taps = np.zeros(1, dtype=int), np.ones(1)
    radius = int(4.0 * sigma + 0.5)
    if sigma > 0 and radius > 0:
        offsets = np.arange(-radius, radius + 1)
        taps = np.exp(-0.5 * (offsets / sigma) ** 2)
        taps /= taps.sum()
    return offsets, taps


def _sampling_matrix(source: int, coords: np.ndarray, offsets: np.ndarray, taps: np.ndarray,
                     inside_crop: np.ndarray) -> np.ndarray:
    """Output sample i = bilinear mix, at input coordinate coords[i], of the blurred inputs;
    inputs outside inside_crop (and past the edge) read zeros (ndimage's "grid-constant")."""
    target = len(coords)
    below = np.floor(coords).astype(int)
    frac = coords - below
    matrix = np.zeros((target, source))
    rows = np.arange(target)
    for neighbour, weight in ((below, 1 - frac), (below + 1, frac)):
        valid = (neighbour >= 0) & (neighbour < source)
        for offset, tap in zip(offsets, taps):
            column = neighbour + offset
            inside = valid & (column >= 0) & (column < source)
            inside[inside] &= inside_crop[column[inside]]
            np.add.at(matrix, (rows[inside], column[inside]), weight[inside] * tap)
    return matrix.astype(np.float32)


@lru_cache(maxsize=32)
def level_resize_matrix(length: int, start: int, side: int, target: int, level: int,
                        origin: float, blur: float) -> np.ndarray:
    """The (target x length) operator that resamples one axis of a coarser level (image.Grid:
    sample k on full pixel origin + k * 2^level, already blurred by sigma `blur`) the way
    resize_matrix(side, target) resamples the full image's crop [start, start + side): the same
    output positions, mapped onto the level's samples, and the Gaussian that the codec's own
    low-pass leaves to do (sigmas add in squares); samples outside the crop read zeros, as the
    crop's surroundings do in the full-image resize."""
    power = 1 << level
    factor = side / target
    full_sigma = (factor - 1) / 2 if factor > 1 else 0.0
    offsets, taps = _gaussian(math.sqrt(max(full_sigma ** 2 - blur ** 2, 0.0)) / power)
    coords = (start + (np.arange(target) + 0.5) * factor - 0.5 - origin) / power
    centres = origin + np.arange(length) * power
    inside_crop = (centres > start - 0.5) & (centres < start + side - 0.5)
    return _sampling_matrix(length, coords, offsets, taps, inside_crop)


def _block_rows(source: int, target: int) -> int:
    """Output rows per block: smaller blocks skip more zeros, larger ones make fewer BLAS calls.
    Measured here: 16 for a light downscale (512 -> 224: 0.3 ms, 0.5 with 4), 4 for a strong one
    (2,048 -> 224: 2 ms, 4.6 with 8)."""
    return 16 if source < 4 * target else 4


# (output rows, input columns, the dense block of M there) for each block of output rows
Band = Tuple[Tuple[slice, slice, np.ndarray], ...]


def _band(matrix: np.ndarray, step: int) -> Band:
    blocks = []
    for start in range(0, matrix.shape[0], step):
        rows = slice(start, min(start + step, matrix.shape[0]))
        used = np.flatnonzero(matrix[rows].any(axis=0))
        columns = slice(int(used[0]), int(used[-1]) + 1) if used.size else slice(0, 0)
        blocks.append((rows, columns, np.ascontiguousarray(matrix[rows, columns])))
    return tuple(blocks)


@lru_cache(maxsize=16)
def resize_band(source: int, target: int) -> Band:
    return _band(resize_matrix(source, target), _block_rows(source, target))


def _resize(image: np.ndarray, row_band: Band, column_band: Band, size: int) -> np.ndarray:
    """R @ image @ C.T, computed on the bands only (a transposed view: Fortran order)."""
    half = np.empty((size, image.shape[1]), dtype=np.float32)  # every row block is written
    for rows, columns, block in row_band:
        np.matmul(block, image[columns], out=half[rows])
    resized_t = np.empty((size, size), dtype=np.float32)  # (C @ half.T), transposed at the end
    half_t = half.T
    for rows, columns, block in column_band:
        np.matmul(block, half_t[columns], out=resized_t[rows])
    return resized_t.T


def resize_square(square: np.ndarray, size: int) -> np.ndarray:
    """M @ square @ M.T, computed on M's band only."""
    band = resize_band(square.shape[0], size)
    return _resize(square, band, band, size)


@lru_cache(maxsize=16)
def _resized_ones(source: int, target: int) -> np.ndarray:
    """M @ ones @ M.T: what a constant image becomes (less than 1 near the zero-padded edges)."""
    row_sums = resize_matrix(source, target).sum(axis=1, dtype=np.float64)
    return np.outer(row_sums, row_sums).astype(np.float32)


def xrv(image: np.ndarray, size: int, grid: Optional["Grid"] = None) -> np.ndarray:
    """torchxrayvision's normalize + XRayCenterCrop + XRayResizer, shape (1, 1, size, size).
    The resize is linear, so the normalisation a * x + b is applied to the 224x224 result
    (a * M x M.T + b * M 1 M.T) instead of to every input pixel. A coarser level (grid) is
    resampled onto the output positions the full image's would have, cropped as it would be."""
    batch = np.empty((1, 1, size, size), dtype=np.float32)  # C order: what onnxruntime takes
    if grid is None:
        square = center_crop(image)
        np.multiply(resize_square(square, size), np.float32(2 * XRV_RANGE), out=batch[0, 0])
        batch[0, 0] -= np.float32(XRV_RANGE) * _resized_ones(square.shape[0], size)
        return batch
    width, height = grid.full_size
    side = min(height, width)
    matrices = [level_resize_matrix(length, start, side, size, grid.level, grid.origin,
                                    grid.blur)
                for length, start in ((image.shape[0], height // 2 - side // 2),
                                      (image.shape[1], width // 2 - side // 2))]
    bands = [_band(matrix, _block_rows(matrix.shape[1], size)) for matrix in matrices]
    np.multiply(_resize(image, bands[0], bands[1], size), np.float32(2 * XRV_RANGE),
                out=batch[0, 0])
    ones = np.outer(*(matrix.sum(axis=1, dtype=np.float64) for matrix in matrices))
    batch[0, 0] -= np.float32(XRV_RANGE) * ones.astype(np.float32)
    return batch


def xrv_inverse(batch: np.ndarray) -> np.ndarray:
    """[-1024, 1024] -> [0, 1]."""
    unit = (batch[0, 0].astype(np.float32) + XRV_RANGE) / (2 * XRV_RANGE)
    return unit.clip(0.0, 1.0)


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]


def imagenet(image: np.ndarray, size: int, grid: Optional["Grid"] = None) -> np.ndarray:
    """Shape (1, 3, size, size), for models trained with torchvision's ImageNet transforms. A
    coarser level (grid) is cropped and resized as it is: PIL's resize has no output grid to
    align."""
    from PIL import Image

    square = Image.fromarray(np.ascontiguousarray(center_crop(image)), mode="F")
    resized = np.asarray(square.resize((size, size), Image.Resampling.BILINEAR))
    return ((resized[None] - IMAGENET_MEAN) / IMAGENET_STD)[None].astype(np.float32)


def imagenet_inverse(batch: np.ndarray) -> np.ndarray:
    """(x - mean) / std -> x, from the first channel (the gray value is in every channel)."""
    unit = batch[0, 0].astype(np.float32) * IMAGENET_STD[0, 0, 0] + IMAGENET_MEAN[0, 0, 0]
    return unit.clip(0.0, 1.0)


@dataclass(frozen=True)
class Recipe:
    name: str
    # (image, size, the coarser level's image.Grid or None) -> (1, c, size, size)
    forward: Callable[[np.ndarray, int, Optional["Grid"]], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]       # batch -> (size, size) in [0, 1]
    description: Dict[str, Any]                       # the manifest's "preprocessing" entry


RECIPES: Dict[str, Recipe] = {recipe.name: recipe for recipe in (
    Recipe("xrv", xrv, xrv_inverse, {
        "recipe": "xrv", "range": [-int(XRV_RANGE), int(XRV_RANGE)],
        "steps": ["grayscale scaled by the format's full range to [-1024, 1024]",
                  "center crop to a square", "skimage anti-aliased bilinear resize to 224x224"],
    }),
    Recipe("imagenet", imagenet, imagenet_inverse, {
        "recipe": "imagenet",
        "steps": ["grayscale in [0, 1]", "center crop to a square",
                  "PIL bilinear resize (as torchvision.transforms.Resize)", "gray repeated to RGB",
                  "ImageNet mean/std normalisation"],
    }),
)}
