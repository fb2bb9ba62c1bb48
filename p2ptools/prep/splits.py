"""Train/val/test splits: by whole item (scene, photo) so nearby tiles never leak across splits."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from p2ptools.errors import ConfigError, InputError

SPLITS: tuple[str, str, str] = ("train", "val", "test")


def parse_fractions(text: str) -> tuple[float, float, float]:
    """Parse ``"0.8,0.1,0.1"`` into three fractions that sum to 1.

    Raises:
        ConfigError: if there are not three non-negative numbers summing to 1 (±1e-6).
    """
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError as exc:
        raise ConfigError(f"--split {text!r}: expected three numbers like 0.8,0.1,0.1") from exc
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise ConfigError(f"--split {text!r}: expected three non-negative fractions that sum to 1")
    return parts  # type: ignore[return-value]


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """How many of ``n`` items go to each split: largest-remainder rounding of ``n * fraction``.

    Train gets at least one item whenever ``n >= 1`` and its fraction is positive.
    """
    raw = [n * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    if n >= 1 and fractions[0] > 0 and counts[0] == 0:
        donor = max(range(1, len(counts)), key=lambda i: counts[i])
        counts[donor] -= 1
        counts[0] += 1
    return counts


def assign_splits(items: Sequence[str], fractions: Sequence[float], seed: int) -> dict[str, str]:
    """Assign each item to ``train``/``val``/``test`` after a seeded shuffle.

    The result depends only on the set of items, the fractions and the seed (items are sorted
    before shuffling), so a rerun gives the same splits.

    Returns:
        Mapping item → split name.
    """
    ordered = sorted(items)
    random.Random(seed).shuffle(ordered)
    counts = split_counts(len(ordered), fractions)
    out: dict[str, str] = {}
    start = 0
    for name, count in zip(SPLITS, counts, strict=True):
        for item in ordered[start : start + count]:
            out[item] = name
        start += count
    return out


def read_split_lists(root: Path) -> dict[str, str] | None:
    """Read official ``train.txt`` / ``val.txt`` / ``test.txt`` lists when present.

    Each line names a scene or a tile (``<scene>_<k>`` as LandCover.ai's ``split.py`` names its
    512×512 tiles); blank lines are ignored and extensions are stripped.

    Returns:
        Mapping entry → split, or None when no list file exists.

    Raises:
        InputError: if one entry is listed in two splits.
    """
    found = [s for s in SPLITS if (root / f"{s}.txt").is_file()]
    if not found:
        return None
    out: dict[str, str] = {}
    for split in found:
        path = root / f"{split}.txt"
        for line in path.read_text(encoding="utf-8").splitlines():
            entry = Path(line.strip()).stem if line.strip() else ""
            if not entry:
                continue
            if entry in out and out[entry] != split:
                raise InputError(f"{path}: {entry!r} is listed in both {out[entry]}.txt and {split}.txt")
            out[entry] = split
    return out


def official_tile_split(
    lists: dict[str, str], scene: str, cy: int, cx: int, height: int, width: int, official_size: int = 512
) -> str | None:
    """The split of a tile under official per-tile lists (LandCover.ai).

    LandCover.ai's ``split.py`` cuts each scene into complete ``512×512`` tiles, numbered
    ``k = row * (width // 512) + col`` row-major, and lists ``<scene>_<k>``. A tile of ours goes to
    the split of the official tile that contains its centre ``(cy, cx)`` (clamped to the official
    grid for centres in the unused edge strip), so with ``--size 512 --stride 512 --edge drop``
    every tile lands exactly where the official list puts it.

    Returns:
        The split, or None when the scene or the official tile is not listed. A scene listed by
        its own name puts all its tiles in that split.
    """
    if scene in lists:
        return lists[scene]
    ncols = max(width // official_size, 1)
    nrows = max(height // official_size, 1)
    r = min(max(cy, 0) // official_size, nrows - 1)
    c = min(max(cx, 0) // official_size, ncols - 1)
    return lists.get(f"{scene}_{r * ncols + c}")



#: The split value of a tile dropped because it lies in the buffer between blocks of two splits.
BUFFER = "buffer"


@dataclass(frozen=True)
class BlockGrid:
    """A scene cut into ``rows × cols`` blocks of about ``block_size`` pixels: ``rows = max(1,
    round(height / block_size))``, block ``r`` spanning rows ``[r·height/rows, (r+1)·height/rows)``
    (no sliver of a block at the scene's edge)."""

    height: int
    width: int
    block_size: int

    @property
    def rows(self) -> int:
        return max(1, round(self.height / self.block_size))

    @property
    def cols(self) -> int:
        return max(1, round(self.width / self.block_size))

    def index(self, y: int, x: int) -> tuple[int, int]:
        """The ``(row, col)`` of the block holding pixel ``(y, x)`` (clamped to the scene)."""
        y = min(max(y, 0), self.height - 1)
        x = min(max(x, 0), self.width - 1)
        return y * self.rows // self.height, x * self.cols // self.width


def assign_blocks(scenes: dict[str, tuple[int, int]], block_size: int, fractions: Sequence[float],
                  seed: int) -> dict[tuple[str, int, int], str]:
    """Cut every scene into blocks (:class:`BlockGrid`) and draw each block's split.

    Args:
        scenes: scene name → ``(height, width)`` in pixels.
        block_size: the blocks' approximate side in pixels.
        fractions: train/val/test fractions of blocks.
        seed: the draw's seed (as :func:`assign_splits`: the same blocks and seed give the same splits).

    Returns:
        ``(scene, block_row, block_col)`` → split.
    """
    names = {}
    for scene, (h, w) in scenes.items():
        grid = BlockGrid(h, w, block_size)
        for r in range(grid.rows):
            for c in range(grid.cols):
                names[f"{scene}\x00{r}\x00{c}"] = (scene, r, c)
    return {names[k]: split for k, split in assign_splits(list(names), fractions, seed).items()}


def block_tile_split(blocks: dict[tuple[str, int, int], str], scene: str, grid: BlockGrid, y: int, x: int,
                     size: int, buffer: int) -> str:
    """The split of a tile under a block split, or :data:`BUFFER` when it must be dropped.

    A tile belongs to the block holding its centre. It is dropped when its window, grown by
    ``buffer`` pixels on every side, reaches a block of another split: kept tiles of two splits
    then never overlap and lie at least ``buffer`` pixels apart.
    """
    own = blocks[(scene, *grid.index(y + size // 2, x + size // 2))]
    r0, c0 = grid.index(y - buffer, x - buffer)
    r1, c1 = grid.index(y + size - 1 + buffer, x + size - 1 + buffer)
    for r in range(r0, r1 + 1):
        for c in range(c0, c1 + 1):
            if blocks[(scene, r, c)] != own:
                return BUFFER
    return own


def empty_splits(n: int, fractions: Sequence[float]) -> list[str]:
    """The splits with a positive fraction that ``n`` items leave empty."""
    counts = split_counts(n, fractions)
    return [s for s, f, c in zip(SPLITS, fractions, counts, strict=True) if f > 0 and c == 0]
