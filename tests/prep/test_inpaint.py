import numpy as np
import pytest

from p2ptools.config import InpaintConfig
from p2ptools.prep.inpaint import (
    Box,
    center_box,
    fill_hole,
    hole_boxes,
    hole_mask,
    make_pair,
    pair_rng,
)


@pytest.mark.parametrize("size", [96, 255, 258, 513])
def test_center_hole_is_a_third_of_each_side_and_centred(size):
    box = center_box(size)
    assert box.w == box.h == round(size / 3)
    assert abs(box.x - (size - box.x - box.w)) <= 1 and box.x == box.y  # centred within a pixel
    assert abs(box.w * box.h / size**2 - 1 / 9) < 2 / size  # 1/9 of the area up to rounding


def test_center_hole_exact_when_divisible_by_three():
    assert center_box(96) == Box(32, 32, 32, 32)
    mask = hole_mask(96, [center_box(96)])
    assert mask.sum() * 9 == 96 * 96
    assert center_box(256) == Box(85, 85, 85, 85)


@pytest.mark.parametrize("kind", ["random", "random-multi"])
def test_random_holes_cover_the_area_and_stay_inside(kind):
    for i in range(50):
        boxes = hole_boxes(kind, 128, 0.2, pair_rng(0, f"img{i}"))
        for b in boxes:
            assert 0 <= b.x and b.x + b.w <= 128 and 0 <= b.y and b.y + b.h <= 128
        total = sum(b.w * b.h for b in boxes)
        assert total == pytest.approx(0.2 * 128 * 128, rel=0.1)
        if kind == "random-multi":
            assert 2 <= len(boxes) <= 5
    # deterministic per name, different across names
    assert hole_boxes(kind, 128, 0.2, pair_rng(0, "a")) == hole_boxes(kind, 128, 0.2, pair_rng(0, "a"))
    assert hole_boxes(kind, 128, 0.2, pair_rng(0, "a")) != hole_boxes(kind, 128, 0.2, pair_rng(1, "a"))


def test_fills():
    img = np.full((6, 6, 3), 10, np.uint8)
    img[0, 0] = [70, 70, 70]
    mask = hole_mask(6, [Box(2, 2, 2, 2)])
    rng = np.random.default_rng(0)
    assert (fill_hole(img, mask, "white", rng)[mask] == 255).all()
    assert (fill_hole(img, mask, "black", rng)[mask] == 0).all()
    assert (fill_hole(img, mask, "mean", rng)[mask] == round((10 * 35 + 70) / 36)).all()
    noisy = fill_hole(img, mask, "noise", rng)
    assert (noisy[~mask] == img[~mask]).all() and len(np.unique(noisy[mask])) > 2
    with pytest.raises(ValueError):
        fill_hole(img, mask, "purple", rng)


def test_make_pair_layout(tmp_path):
    img = np.random.default_rng(0).integers(0, 200, (90, 120, 3), dtype=np.uint8)
    cfg = InpaintConfig(src=tmp_path, out=tmp_path / "o", size=96)
    ab, mask, boxes = make_pair(img, cfg, "x")
    a, b = ab[:, :96], ab[:, 96:]
    assert ab.shape == (96, 192, 3) and boxes == [Box(32, 32, 32, 32)]
    assert (a[mask] == 255).all() and np.array_equal(a[~mask], b[~mask])
