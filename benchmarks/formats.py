"""Tile formats against PNG, in the same run: bytes per tile and encode time per tile, on real A|B
tiles (256×512 pairs cut from the shipped NAIP scene: its pan band | its colour photo; and the pix2pix
facades train pairs from ../shared/data when present). Every format of the registry
(:mod:`p2ptools.runtime.formats`) is timed, interleaved with PNG round by round (the fastest round
counts), and lossless ones are checked to decode to exactly the PNG tile's pixels.

    python3 benchmarks/formats.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import rasterio

from p2ptools.recipe import sample_root
from p2ptools.runtime.formats import FORMATS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def naip_tiles(size: int = 256) -> list[np.ndarray]:
    """pan | colour A|B tiles of the shipped NAIP 2018 scene (BGR, as the tiler encodes them)."""
    with rasterio.open(sample_root() / "naip" / "rgb" / "naip.tif") as ds:
        rgb = ds.read().transpose(1, 2, 0)
    pan = np.repeat(np.round(rgb.mean(axis=2, keepdims=True)).astype(np.uint8), 3, axis=2)
    tiles = []
    for y in range(0, rgb.shape[0] - size + 1, size):
        for x in range(0, rgb.shape[1] - size + 1, size):
            ab = np.concatenate([pan[y:y + size, x:x + size], rgb[y:y + size, x:x + size]], axis=1)
            tiles.append(np.ascontiguousarray(ab[..., ::-1]))
    return tiles


def facades_tiles(limit: int = 64) -> list[np.ndarray]:
    files = sorted((SHARED / "facades" / "train").glob("*.jpg"))[:limit]
    return [cv2.imread(str(f)) for f in files]


def measure(tiles: list[np.ndarray], rounds: int) -> dict[str, tuple[float, float]]:
    """format → (bytes per tile, fastest seconds per tile)."""
    best = {name: float("inf") for name in FORMATS}
    size: dict[str, float] = {}
    for _ in range(rounds):
        for name, fmt in FORMATS.items():  # interleaved: every round times every format
            t0 = time.perf_counter()
            blobs = [fmt.encode(t, 95, True) for t in tiles]
            best[name] = min(best[name], (time.perf_counter() - t0) / len(tiles))
            size[name] = sum(map(len, blobs)) / len(tiles)
            if fmt.lossless:
                for t, b in zip(tiles, blobs, strict=True):
                    assert np.array_equal(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED), t), name
    return {n: (size[n], best[n]) for n in FORMATS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"CPU: {platform.processor() or platform.machine()}; cv2 threads {cv2.getNumThreads()}")
    sets = {"NAIP pan|colour 256×512": naip_tiles()}
    if (SHARED / "facades").is_dir():
        sets["facades train 256×512"] = facades_tiles()
    for label, tiles in sets.items():
        res = measure(tiles, args.rounds)
        png_size, png_time = res["png"]
        print(f"\n{label}: {len(tiles)} tiles")
        print(f"{'format':8} {'KB/tile':>9} {'size vs png':>12} {'ms/tile':>9} {'time vs png':>12}  lossless")
        for name, (size, secs) in res.items():
            print(f"{name:8} {size / 1024:9.1f} {size / png_size:12.2f} {secs * 1e3:9.2f} {secs / png_time:12.2f}  "
                  f"{FORMATS[name].lossless}")


if __name__ == "__main__":
    main()
