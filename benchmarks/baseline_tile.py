"""The hand-written baseline that ``benchmarks/tile.py`` compares against.

What LandCover.ai's ``split.py`` and most pix2pix tiling scripts do: read the whole scene and its
mask with OpenCV, loop over complete 256 tiles, skip tiles whose mask is empty, colorize the mask,
glue label | photo and write a PNG, one scene after the other.
Usage: ``python baseline_tile.py SRC OUT_DIR SIZE`` with ``SRC/images/*.tif`` and ``SRC/gt/*.tif``.
"""

import sys
from pathlib import Path

import cv2
import numpy as np


def tile_scene(image: Path, mask: Path, out: Path, size: int) -> int:
    img = cv2.imread(str(image), cv2.IMREAD_COLOR)  # whole scene in memory (BGR)
    msk = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
    out.mkdir(parents=True, exist_ok=True)
    lut = np.zeros((256, 3), np.uint8)
    lut[255] = (255, 255, 255)
    name = image.stem
    h, w = msk.shape
    n = 0
    for r, y in enumerate(range(0, h - size + 1, size)):
        for c, x in enumerate(range(0, w - size + 1, size)):
            m = msk[y : y + size, x : x + size]
            if not m.any():
                continue
            ab = np.concatenate([lut[m], img[y : y + size, x : x + size]], axis=1)
            cv2.imwrite(str(out / f"{name}_{r}_{c}.png"), ab)
            n += 1
    return n


def main(src: str, out_dir: str, size: int) -> None:
    total = 0
    for image in sorted(Path(src, "images").glob("*.tif")):
        total += tile_scene(image, Path(src, "gt", image.name), Path(out_dir), size)
    print(total)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
