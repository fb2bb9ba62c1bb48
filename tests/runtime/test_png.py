"""The PNG encoder: any reader decodes the same pixels; smaller than OpenCV's fastest setting."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from p2ptools.runtime.png import encode_png
from tests.conftest import shared_path


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 3), (64, 128, 3), (33, 17), (1, 300)])
def test_decoders_read_the_same_pixels(shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(img)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), img)  # Pillow: RGB or L
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded, img[..., ::-1] if img.ndim == 3 else img)  # OpenCV: BGR
    Image.open(io.BytesIO(data)).verify()  # chunk CRCs and structure


def test_bgr_input_and_wrapping_differences():
    img = np.zeros((4, 4, 3), np.uint8)
    img[1::2] = 255  # row differences of +255 and -255 wrap modulo 256
    img[..., 0] = 7
    data = encode_png(img, bgr=True)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), img[..., ::-1])


def test_real_aerial_tile_is_not_larger_than_opencv_fastest():
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(shared_path("rasterio", "cogeo.tif")) as ds:
        img = np.moveaxis(ds.read((1, 2, 3), window=Window(0, 0, 512, 256)), 0, -1)
    ours = len(encode_png(img))
    opencv = len(cv2.imencode(".png", img[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])[1])
    assert ours <= opencv, (ours, opencv)


def test_bad_arrays_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 4), np.uint8))
