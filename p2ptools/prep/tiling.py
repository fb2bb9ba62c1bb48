"""Tile geometry, tile filters and AB composition: small pure functions.

Window grid along one axis of ``extent`` pixels, tile ``size`` and ``stride``:

* ``drop``:  offsets ``0, stride, …`` while the tile fits; ``floor((extent - size) / stride) + 1``
  tiles (0 when the scene is smaller than a tile). The rest of the scene is not used.
* ``pad``:   ``ceil((extent - size) / stride) + 1`` tiles (1 when smaller); the last tile runs
  past the edge and is padded (photo pixels count as nodata, mask pixels as background).
* ``shift``: as many tiles as ``pad``, but the last one is moved back to ``extent - size`` so it
  ends exactly at the edge and overlaps its neighbour: every pixel is used, none is invented.
  A scene smaller than a tile gets one padded tile.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np

from p2ptools.config import EDGE_POLICIES

EdgePolicy = Literal["drop", "pad", "shift"]


def axis_offsets(extent: int, size: int, stride: int, edge: EdgePolicy) -> list[int]:
    """Return the tile offsets along one axis.

    Args:
        extent: the scene's size along the axis, in pixels.
        size: tile size in pixels.
        stride: step between tile origins (``size`` for no overlap).
        edge: what to do with the remainder: ``drop``, ``pad`` or ``shift`` (module docstring).

    Returns:
        Offsets of the tiles' first pixel, ascending.

    Raises:
        ValueError: for non-positive sizes or an unknown policy.
    """
    if size <= 0 or stride <= 0 or extent < 0:
        raise ValueError(f"size and stride must be positive (size={size}, stride={stride}, extent={extent})")
    if edge not in EDGE_POLICIES:
        raise ValueError(f"edge policy must be one of {EDGE_POLICIES}, got {edge!r}")
    if extent == 0:
        return []
    if edge == "drop":
        if extent < size:
            return []
        count = (extent - size) // stride + 1
        return [i * stride for i in range(count)]
    count = 1 if extent <= size else math.ceil((extent - size) / stride) + 1
    offsets = [i * stride for i in range(count)]
    if edge == "shift" and extent >= size:
        offsets[-1] = extent - size
    return offsets


def tile_count(extent: int, size: int, stride: int, edge: EdgePolicy) -> int:
    """Number of tiles along an axis (see the module docstring for the formulas)."""
    return len(axis_offsets(extent, size, stride, edge))


@dataclass(frozen=True)
class TileWindow:
    """One tile of a scene.

    Args:
        row: tile row index in the grid.
        col: tile column index in the grid.
        y: first pixel row of the tile in the scene (may run past the scene with ``pad``).
        x: first pixel column.
        size: tile height and width.
    """

    row: int
    col: int
    y: int
    x: int
    size: int


def tile_grid(height: int, width: int, size: int, stride: int, edge: EdgePolicy) -> list[TileWindow]:
    """All tiles of a ``height × width`` scene, row-major.

    Returns:
        ``tile_count(height) * tile_count(width)`` windows.
    """
    ys = axis_offsets(height, size, stride, edge)
    xs = axis_offsets(width, size, stride, edge)
    return [TileWindow(r, c, y, x, size) for r, y in enumerate(ys) for c, x in enumerate(xs)]


def keep_fraction_draw(seed: int, key: str) -> float:
    """A deterministic uniform number in [0, 1) for ``key``: independent of worker order.

    Used to keep a reproducible share of empty tiles (``--keep-empty``).
    """
    digest = hashlib.blake2b(os.fsencode(f"{seed}:{key}"), digest_size=8).digest()  # any file name
    return int.from_bytes(digest, "big") / 2.0**64


def decide_tile(
    fg_fraction: float,
    nodata_fraction: float,
    min_foreground: float,
    keep_empty: float,
    max_nodata: float,
    draw: float,
) -> str:
    """Decide whether a tile is kept.

    A tile is dropped when more than ``max_nodata`` of its photo is nodata; otherwise it is kept
    when it has foreground (``fg_fraction > 0``) of at least ``min_foreground``; otherwise it is
    kept when ``draw < keep_empty`` (a deterministic share of empty tiles).

    Returns:
        ``"kept"``, ``"kept_empty"``, ``"nodata"``, ``"empty"`` or ``"below_min_foreground"``.
    """
    if nodata_fraction > max_nodata:
        return "nodata"
    if fg_fraction > 0 and fg_fraction >= min_foreground:
        return "kept"
    if draw < keep_empty:
        return "kept_empty"
    return "empty" if fg_fraction == 0 else "below_min_foreground"


def compose_ab(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Glue two ``(H, W, 3)`` images side by side into one ``(H, 2W, 3)`` AB image.

    Raises:
        ValueError: if the two images differ in shape.
    """
    if a.shape != b.shape:
        raise ValueError(f"A and B differ in shape: {a.shape} vs {b.shape}")
    return np.concatenate([a, b], axis=1)


def split_ab(ab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split an ``(H, 2W, C)`` AB image into its A and B halves.

    Raises:
        ValueError: if the width is odd.
    """
    w = ab.shape[1]
    if w % 2:
        raise ValueError(f"AB image width {w} is odd; cannot split into two halves")
    return ab[:, : w // 2], ab[:, w // 2 :]
