"""Image bombs for tests, made cheaply: files whose header promises far more pixels than their size.

* :func:`png_bomb` writes a valid 1-bit PNG of ``width × height`` black pixels, its zero rows
  deflated as a stream (20000 × 20000 → about 50 KB, in a fraction of a second, without holding the
  image in memory);
* :func:`sparse_tif` writes a tiled GeoTIFF of ``side × side`` pixels with no tile written
  (``sparse_ok``): 60000² is a few hundred KB on disk and would be 10 GB decoded.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid black 1-bit grayscale PNG of ``width × height`` pixels at ``path``."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte 0, then the packed bits
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grayscale, deflate, no interlace
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))
    return path


def sparse_tif(path: Path, side: int = 60000, bands: int = 3) -> Path:
    """A tiled ``side × side`` uint8 GeoTIFF of ``bands`` bands with no tile written (all zeros when read)."""
    import rasterio
    from rasterio.transform import from_origin

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=bands, dtype="uint8", tiled=True,
                       blockxsize=512, blockysize=512, sparse_ok=True, BIGTIFF="YES", crs="EPSG:32631",
                       transform=from_origin(500000.0, 4000000.0, 0.5, 0.5)):
        pass
    return path
