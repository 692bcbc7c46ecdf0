"""The xrv recipe computes M @ (a x + b) @ M.T on M's band only, with the normalisation moved
after the resize. Given images of many shapes, it must equal the plain dense product (float64)
to float32 rounding; agreement with torchxrayvision itself is in
test_torchxrayvision_agreement.py."""
import numpy as np
import pytest

from chalicelib.inference.preprocessing import (
    XRV_RANGE,
    center_crop,
    resize_band,
    resize_matrix,
    xrv,
)

SHAPES = [(512, 512), (2048, 2500), (2500, 2048), (1955, 1841), (300, 200), (64, 64),
          (225, 224), (224, 224), (33, 40)]


def dense_reference(image: np.ndarray, size: int) -> np.ndarray:
    square = center_crop(image.astype(np.float64) * 2 * XRV_RANGE - XRV_RANGE)
    matrix = resize_matrix(square.shape[0], size).astype(np.float64)
    return matrix @ square @ matrix.T


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: f"{shape[0]}x{shape[1]}")
def test_banded_resize_equals_the_dense_product(shape):
    # given a random image in [0, 1] (a worst case for rounding: no smooth regions)
    image = np.random.default_rng(sum(shape)).random(shape, dtype=np.float32)
    # when it is preprocessed
    batch = xrv(image, 224)
    # then it is the dense M (a x + b) M.T to float32 rounding on the [-1024, 1024] scale
    assert batch.shape == (1, 1, 224, 224) and batch.dtype == np.float32
    assert batch.flags.c_contiguous  # onnxruntime copies strided input
    difference = np.abs(batch[0, 0] - dense_reference(image, 224)).max()
    assert difference < 2e-3, difference


@pytest.mark.parametrize("source", [16, 224, 512, 1841, 3000])
def test_the_band_holds_every_nonzero_weight(source):
    # given the dense operator and its band
    matrix = resize_matrix(source, 224)
    rebuilt = np.zeros_like(matrix)
    # when the band's blocks are put back in place
    for rows, columns, block in resize_band(source, 224):
        rebuilt[rows, columns] = block
    # then nothing was dropped, and the band is much smaller than the matrix when downscaling
    np.testing.assert_array_equal(rebuilt, matrix)
    stored = sum(block.size for _, _, block in resize_band(source, 224))
    if source >= 512:
        assert stored < matrix.size / 4


def test_a_constant_image_keeps_its_value_away_from_the_edges():
    # given a uniform mid-grey image
    image = np.full((1000, 800), 0.75, dtype=np.float32)
    # when it is preprocessed
    batch = xrv(image, 224)[0, 0]
    # then the interior is 0.75 on the [-1024, 1024] scale, as normalize + resize give
    assert np.allclose(batch[8:-8, 8:-8], 0.75 * 2 * XRV_RANGE - XRV_RANGE, atol=1e-2)
