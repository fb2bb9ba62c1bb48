"""``p2ptools pair`` and ``p2ptools unpair``."""

from __future__ import annotations

import cv2
import numpy as np
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.prep.images import load_rgb8 as read_image
from tests.conftest import shared_path


def run(*args: object):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


def test_unpair_pair_round_trip_is_pixel_exact(tmp_path):
    # real facades AB images (JPEG) → PNG AB set → unpair → pair → identical pixels
    ab_dir = tmp_path / "ab" / "train"
    ab_dir.mkdir(parents=True)
    for p in sorted(shared_path("facades", "train").glob("*.jpg"))[:6]:
        cv2.imwrite(str(ab_dir / f"{p.stem}.png"), cv2.imread(str(p)))
    res = run("unpair", tmp_path / "ab", tmp_path / "split")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "split" / "A" / "train").iterdir()) == sorted(
        p.name for p in ab_dir.iterdir())
    res = run("pair", tmp_path / "split" / "A", tmp_path / "split" / "B", tmp_path / "again", "--workers", 2)
    assert res.exit_code == 0, res.output
    for p in ab_dir.iterdir():
        assert np.array_equal(read_image(p), read_image(tmp_path / "again" / "train" / p.name))


def _write(path, w, h, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


def test_pair_lists_unmatched_names_and_sizes(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    _write(a / "x.png", 32, 32, 10)
    _write(b / "x.png", 32, 32, 20)
    _write(a / "only_a.png", 32, 32, 10)
    _write(b / "only_b.jpg", 32, 32, 10)
    _write(a / "y.png", 32, 32, 10)
    _write(b / "y.png", 64, 48, 20)
    res = run("pair", a, b, tmp_path / "out")
    assert res.exit_code == 1 and "3 problem(s)" in res.output  # every problem in one pass
    assert "only in" in res.output and "only_a.png" in res.output and "only_b.jpg" in res.output
    assert "y (A 32×32, B 64×48)" in res.output and "--resize" in res.output
    assert not (tmp_path / "out").exists()  # nothing written
    (a / "only_a.png").unlink()
    (b / "only_b.jpg").unlink()
    (a / "y.png").unlink()
    (b / "y.png").unlink()
    _write(b / "x.png", 64, 48, 20)
    res = run("pair", a, b, tmp_path / "out")
    assert res.exit_code == 1 and "x (A 32×32, B 64×48)" in res.output and "--resize" in res.output
    res = run("pair", a, b, tmp_path / "out", "--resize")
    assert res.exit_code == 0, res.output
    ab = read_image(tmp_path / "out" / "x.png")
    assert ab.shape == (32, 64, 3) and (ab[:, :32] == 10).all() and (ab[:, 32:] == 20).all()


def test_unpair_rejects_odd_widths(tmp_path):
    _write(tmp_path / "ab" / "odd.png", 33, 10, 5)
    _write(tmp_path / "ab" / "even.png", 32, 10, 5)
    res = run("unpair", tmp_path / "ab", tmp_path / "out")
    assert res.exit_code == 1 and "odd.png: width 33 is odd" in res.output
    assert (tmp_path / "out" / "A" / "even.png").exists() and not (tmp_path / "out" / "A" / "odd.png").exists()
