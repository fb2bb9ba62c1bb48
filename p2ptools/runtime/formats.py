"""The image formats p2ptools writes tiles and pairs in: one registry, from which the CLI's
``--format`` choices, the config's validation and the encoder all read.

A new format is one :class:`ImageFormat` entry: its extension, whether it keeps pixels exactly, and
its encoder (``(image, quality, bgr) → bytes``; ``image`` is ``(H, W, 3)`` uint8 RGB, or BGR when
``bgr``, or ``(H, W)`` gray; ``quality`` is used by lossy formats only).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from p2ptools.errors import OutputError
from p2ptools.runtime.png import encode_png

Encoder = Callable[[np.ndarray, int, bool], bytes]


@dataclass(frozen=True)
class ImageFormat:
    """One image format.

    Args:
        name: the ``--format`` value (``png``).
        extension: the file suffix, with its dot (``.png``).
        lossless: whether decoding gives back exactly the pixels encoded.
        encode: the encoder.
        help: a few words for the CLI's help.
    """

    name: str
    extension: str
    lossless: bool
    encode: Encoder
    help: str


def _to_bgr(img: np.ndarray, bgr: bool) -> np.ndarray:
    """OpenCV's channel order (gray images pass unchanged)."""
    return img if bgr or img.ndim != 3 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)


def _opencv(ext: str, params: Callable[[int], list[int]]) -> Encoder:
    """An encoder through ``cv2.imencode`` with ``params(quality)``."""

    def encode(img: np.ndarray, quality: int, bgr: bool) -> bytes:
        ok, buf = cv2.imencode(ext, _to_bgr(img, bgr), params(int(quality)))
        if not ok:  # pragma: no cover - OpenCV fails only on invalid arrays
            raise OutputError(f"OpenCV could not encode a {img.shape} image as {ext}")
        return buf.tobytes()

    return encode


def _png(img: np.ndarray, quality: int, bgr: bool) -> bytes:
    """numpy's "up" filter + ISA-L deflate: ~2.6× OpenCV's fastest PNG setting (:mod:`runtime.png`)."""
    return encode_png(img, bgr=bgr)


def _webp_lossless(img: np.ndarray, quality: int, bgr: bool) -> bytes:
    """Lossless WebP through Pillow at libwebp's fastest effort (method 0): on aerial and facades
    A|B tiles 0.66-0.67x PNG's bytes for 4-6x its encode time (``benchmarks/formats.py``);
    OpenCV's lossless WebP (quality 101) runs at the highest effort, over 100x PNG's time."""
    from PIL import Image

    rgb = img[..., ::-1] if bgr and img.ndim == 3 else img
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="WEBP", lossless=True, quality=0, method=0)
    return buf.getvalue()


FORMATS: dict[str, ImageFormat] = {
    f.name: f
    for f in (
        ImageFormat("png", ".png", True, _png, "lossless, the default"),
        ImageFormat("jpg", ".jpg", False, _opencv(".jpg", lambda q: [cv2.IMWRITE_JPEG_QUALITY, q]),
                    "lossy, at --jpeg-quality"),
        ImageFormat("webp", ".webp", True, _webp_lossless,
                    "lossless WebP: the same pixels as png, about 0.66x the bytes, 4-6x slower to write"),
    )
}

#: name → extension of every registered format (what configs validate ``format`` against)
IMAGE_FORMATS: dict[str, str] = {name: f.extension for name, f in FORMATS.items()}


def encode(img: np.ndarray, fmt: str = "png", quality: int = 95, bgr: bool = False) -> bytes:
    """Encode ``img`` in the registered format ``fmt``.

    Raises:
        OutputError: for a format that is not registered.
    """
    try:
        spec = FORMATS[fmt]
    except KeyError:
        raise OutputError(f"unknown image format {fmt!r}; choose one of {', '.join(FORMATS)}") from None
    return spec.encode(img, quality, bgr)
