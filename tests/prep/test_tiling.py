import math

import numpy as np
import pytest

from p2ptools.prep.tiling import (
    axis_offsets,
    compose_ab,
    decide_tile,
    keep_fraction_draw,
    split_ab,
    tile_count,
    tile_grid,
)


def test_inria_scene_offsets_for_each_policy():
    # 5000 = 19 * 256 + 136
    assert axis_offsets(5000, 256, 256, "drop") == [i * 256 for i in range(19)]
    pad = axis_offsets(5000, 256, 256, "pad")
    assert len(pad) == 20 and pad[-1] == 19 * 256
    shift = axis_offsets(5000, 256, 256, "shift")
    assert len(shift) == 20 and shift[-1] == 5000 - 256 and shift[:-1] == pad[:-1]


@pytest.mark.parametrize("extent", [1, 100, 255, 256, 257, 511, 512, 900, 5000, 9500])
@pytest.mark.parametrize("size,stride", [(256, 256), (256, 128), (512, 512), (512, 384)])
def test_counts_follow_the_window_formulas(extent, size, stride):
    drop = 0 if extent < size else (extent - size) // stride + 1
    cover = 1 if extent <= size else math.ceil((extent - size) / stride) + 1
    assert tile_count(extent, size, stride, "drop") == drop
    assert tile_count(extent, size, stride, "pad") == cover
    assert tile_count(extent, size, stride, "shift") == cover
    shift = axis_offsets(extent, size, stride, "shift")
    if extent >= size:  # shift never runs past the edge and covers it
        assert shift[-1] + size == extent and all(o + size <= extent for o in shift)
    pad = axis_offsets(extent, size, stride, "pad")
    assert pad[-1] + size >= extent  # pad covers every pixel


def test_scene_smaller_than_tile():
    assert axis_offsets(100, 256, 256, "drop") == []
    assert axis_offsets(100, 256, 256, "pad") == [0]
    assert axis_offsets(100, 256, 256, "shift") == [0]


def test_bad_geometry_raises():
    with pytest.raises(ValueError):
        axis_offsets(100, 0, 1, "drop")
    with pytest.raises(ValueError):
        axis_offsets(100, 10, 10, "wrap")  # type: ignore[arg-type]


def test_grid_is_row_major_product():
    grid = tile_grid(300, 520, 256, 256, "shift")
    assert [(t.row, t.col, t.y, t.x) for t in grid] == [
        (0, 0, 0, 0), (0, 1, 0, 256), (0, 2, 0, 264), (1, 0, 44, 0), (1, 1, 44, 256), (1, 2, 44, 264)
    ]


@pytest.mark.parametrize(
    "fg,nodata,min_fg,keep,draw,expected",
    [
        (0.2, 0.0, 0.0, 0.0, 0.9, "kept"),
        (0.0, 0.0, 0.0, 0.0, 0.0, "empty"),
        (0.0, 0.0, 0.0, 0.5, 0.4, "kept_empty"),
        (0.0, 0.0, 0.0, 0.5, 0.6, "empty"),
        (0.05, 0.0, 0.1, 0.0, 0.5, "below_min_foreground"),
        (0.1, 0.0, 0.1, 0.0, 0.5, "kept"),
        (0.9, 0.6, 0.0, 1.0, 0.0, "nodata"),
        (0.9, 0.5, 0.0, 0.0, 0.0, "kept"),
    ],
)
def test_decide_tile(fg, nodata, min_fg, keep, draw, expected):
    assert decide_tile(fg, nodata, min_fg, keep, 0.5, draw) == expected


def test_keep_draw_is_deterministic_and_uniform():
    draws = [keep_fraction_draw(7, f"s_{i}") for i in range(4000)]
    assert draws == [keep_fraction_draw(7, f"s_{i}") for i in range(4000)]
    assert draws != [keep_fraction_draw(8, f"s_{i}") for i in range(4000)]
    share = np.mean(np.array(draws) < 0.25)
    assert 0.22 < share < 0.28


def test_ab_round_trip():
    a = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    b = 255 - a
    ab = compose_ab(a, b)
    assert ab.shape == (8, 16, 3)
    a2, b2 = split_ab(ab)
    assert np.array_equal(a, a2) and np.array_equal(b, b2)
    with pytest.raises(ValueError):
        compose_ab(a, b[:4])
    with pytest.raises(ValueError):
        split_ab(ab[:, :15])


def test_fast_paths_equal_the_plain_ones():
    """The per-tile shortcuts of the tiler give exactly what rasterio / numpy give."""
    import rasterio
    from rasterio.windows import Window, bounds, transform

    from p2ptools.prep.raster import SceneInfo, ScenePair, window_geo
    from p2ptools.prep.tiler import class_counts, colorize_lut

    north_up, rotated = rasterio.Affine(0.5, 0, 5e5, 0, -0.5, 4e6), rasterio.Affine(0.3, 0.1, 12.5, 0.2, -0.3, 99.0)
    for aff in (north_up, rotated):
        info = SceneInfo(ScenePair("s", "s.tif", None), 1000, 1000, (1,), "", tuple(aff)[:6], None, False, "uint8")
        for y, x in ((0, 0), (256, 512), (744, 13)):
            t, b = window_geo(info, y, x, 256)
            assert t == tuple(transform(Window(x, y, 256, 256), aff))[:6]
            assert b == bounds(Window(x, y, 256, 256), aff)
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 3, 255], np.uint8), size=(64, 64))
    lut = np.zeros((256, 3), np.uint8)
    lut[3], lut[255] = (1, 2, 3), (9, 8, 7)
    assert np.array_equal(colorize_lut(labels, lut), np.take(lut, labels, axis=0))
    assert np.array_equal(colorize_lut(labels.astype(np.uint16), lut), np.take(lut, labels, axis=0))
    full = {int(v): int(c) for v, c in zip(*np.unique(labels, return_counts=True), strict=True)}
    assert class_counts(labels, (0, 3, 255)) == full == class_counts(labels)
    assert class_counts(labels, (0, 255)) == full  # a value outside the palette: the full histogram names it
