"""The one limit on how large an image p2ptools decodes whole, checked from the file's header before
any pixel is decoded (:func:`check_pixels`): a 1 MB PNG can hold 20000 × 20000 pixels. Every reader
(:mod:`p2ptools.prep.images`, :mod:`p2ptools.prep.raster`, :mod:`p2ptools.prep.bands`) asks it."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from p2ptools.errors import ConfigError, InputError

#: the most pixels (width × height) of an image p2ptools decodes whole: 16384² = 268,435,456
DEFAULT_MAX_PIXELS = 16384 * 16384
#: the environment variable that sets another limit (``--max-pixels`` sets it for a command and its workers)
MAX_PIXELS_ENV = "P2PTOOLS_MAX_PIXELS"

Image.MAX_IMAGE_PIXELS = None  # every image p2ptools reads is checked by check_pixels, from its header


class ImageTooLargeError(InputError):
    """An image has more pixels than the limit (:func:`max_pixels`); it is not decoded."""


def max_pixels() -> int:
    """The most pixels (width × height) an image may have to be read: ``$P2PTOOLS_MAX_PIXELS`` when set,
    else ``DEFAULT_MAX_PIXELS`` = 16384² = 268,435,456.

    Raises:
        ConfigError: if the environment variable is not a positive whole number.
    """
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}={raw!r}: expected a positive whole number of pixels "
                          f"(width × height), e.g. {DEFAULT_MAX_PIXELS}")
    return value


def check_pixels(path: Path | str, width: int, height: int, hint: str = "") -> None:
    """Refuse an image of ``width × height`` pixels over :func:`max_pixels`, before it is decoded.

    Args:
        path: the file, named in the message.
        width: its width from the header.
        height: its height from the header.
        hint: appended to the message (what else can read the file).

    Raises:
        ImageTooLargeError: one line naming the file, its size and the limit.
    """
    limit = max_pixels()
    if width * height > limit:
        raise ImageTooLargeError(f"{path}: {width}×{height} = {width * height:,} pixels, more than the limit of "
                                 f"{limit:,} (--max-pixels or {MAX_PIXELS_ENV} raise it){hint}")
