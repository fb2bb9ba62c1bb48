"""Bounded images: every command reads an image's pixel count from its header before decoding it.

An image over the limit (default 16384² = 268,435,456 pixels; ``--max-pixels`` or
``$P2PTOOLS_MAX_PIXELS``) is named in one line; folder commands list it with the unreadable files,
go on with the others and exit 1. The bombs are made cheaply (:mod:`tests.image_bombs`); the other
tests use a small limit and small images.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.runtime.output import write_image
from tests.conftest import SMALL_TRAIN, blocks_mask, photo, small_pairs, write_tif
from tests.image_bombs import png_bomb

TOO_LARGE = "pixels, more than the limit of"


@pytest.fixture(autouse=True)
def _limit_restored(monkeypatch):
    """No limit from the environment, and none left behind: ``--max-pixels`` sets the variable for the
    command's workers (setenv records the value before the test, restored after it)."""
    monkeypatch.setenv("P2PTOOLS_MAX_PIXELS", "1")
    monkeypatch.delenv("P2PTOOLS_MAX_PIXELS")


def run(*args: object):
    return CliRunner().invoke(cli, [*map(str, args)])


def _exits(res, code: int) -> bool:
    """The command ended with ``code`` by itself (no uncaught exception: no traceback)."""
    return res.exit_code == code and (res.exception is None or isinstance(res.exception, SystemExit))


def _failed_lines(output: str, name: str) -> list[str]:
    return [ln for ln in output.splitlines() if name in ln]


def _rgb(size: int, value: int = 0, w: int | None = None) -> np.ndarray:
    return np.full((size, w or size, 3), value, np.uint8)


def test_predict_lists_a_png_bomb_and_translates_the_other_images(tiny_run, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    for name in ("a", "b"):
        write_image(src / f"{name}.png", _rgb(32, 90))
    png_bomb(src / "bomb.png")  # 20000²: over the default limit
    res = run("predict", tiny_run, src, out)
    assert _exits(res, 1), res.output
    assert "2 images from" in res.output and "1 input(s) failed" in res.output
    lines = _failed_lines(res.output, "bomb.png")
    assert len(lines) == 1 and f"20000×20000 = 400,000,000 {TOO_LARGE} 268,435,456" in lines[0]
    assert sorted(p.name for p in out.glob("*.png")) == ["a.png", "b.png"]


def test_predict_refuses_a_large_geotiff_in_a_folder_and_the_option_and_variable_raise_the_limit(
        tiny_run, tmp_path, monkeypatch):
    src = tmp_path / "in"
    write_image(src / "a.png", _rgb(32, 90))
    write_tif(src / "scene.tif", photo(48, 48))  # 2304 pixels
    res = run("predict", tiny_run, src, tmp_path / "out1", "--max-pixels", 32 * 32)
    assert res.exit_code == 1 and "1 images from" in res.output, res.output
    lines = _failed_lines(res.output, "scene.tif")
    assert len(lines) == 1 and f"48×48 = 2,304 {TOO_LARGE} 1,024" in lines[0] and "in windows" in lines[0]
    assert not (tmp_path / "out1" / "scene.png").exists()
    res = run("predict", tiny_run, src, tmp_path / "out2", "--max-pixels", 48 * 48)
    assert res.exit_code == 0 and (tmp_path / "out2" / "scene.png").exists(), res.output
    monkeypatch.setenv("P2PTOOLS_MAX_PIXELS", str(32 * 32))
    res = run("predict", tiny_run, src, tmp_path / "out3")
    assert res.exit_code == 1 and len(_failed_lines(res.output, "scene.tif")) == 1, res.output


def test_evaluate_scores_the_pairs_it_can_read_and_lists_a_bomb(tmp_path):
    real, fake, rep = tmp_path / "real", tmp_path / "fake", tmp_path / "rep"
    for name, v in (("a", 40), ("b", 200)):
        write_image(real / f"{name}.png", _rgb(32, v))
        write_image(fake / f"{name}.png", _rgb(32, v + 10))
    png_bomb(real / "z.png")
    write_image(fake / "z.png", _rgb(32, 0))
    res = run("evaluate", "--real", real, "--fake", fake, "--out", rep, "--metrics", "l1", "--workers", 0)
    assert _exits(res, 1), res.output
    lines = _failed_lines(res.output, "z.png")  # the warning, and the list at the end
    assert lines and all(f"z.png: 20000×20000 = 400,000,000 {TOO_LARGE}" in ln for ln in lines), lines
    assert "1 pair(s) left out" in res.output and (rep / "summary.csv").is_file()


def test_pair_lists_a_bomb_and_pairs_the_others(tmp_path):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    for d in (a, b):
        write_image(d / "x.png", _rgb(32, 50))
        png_bomb(d / "z.png")
    res = run("pair", a, b, out)
    assert _exits(res, 1), res.output
    lines = _failed_lines(res.output, "z.png")
    assert len(lines) == 1 and TOO_LARGE in lines[0]
    assert (out / "x.png").is_file() and not (out / "z.png").exists()


def test_make_inpaint_lists_an_image_over_the_limit(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(3):
        write_image(src / f"p{i}.png", np.moveaxis(photo(48, 48, seed=i), 0, -1))
    write_image(src / "big.png", np.moveaxis(photo(100, 100), 0, -1))
    res = run("make-inpaint", src, out, "--size", 32, "--max-pixels", 64 * 64)
    assert res.exit_code == 1, res.output
    lines = _failed_lines(res.output, "big.png")
    assert len(lines) == 1 and f"100×100 = 10,000 {TOO_LARGE} 4,096" in lines[0]
    assert "3 inpainting pairs" in res.output


def test_tile_refuses_png_scenes_and_masks_over_the_limit_and_tiles_the_rest(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_tif(src / "images" / "good.tif", photo(64, 64))
    write_tif(src / "gt" / "good.tif", blocks_mask(64, 64, [0, 255]))
    write_image(src / "images" / "big.png", np.moveaxis(photo(128, 128), 0, -1))
    write_image(src / "gt" / "big.png", np.repeat(blocks_mask(128, 128, [0, 255], 16)[..., None], 3, 2))
    write_tif(src / "images" / "maskpng.tif", photo(128, 128))
    write_image(src / "gt" / "maskpng.png", np.repeat(blocks_mask(128, 128, [0, 255], 16)[..., None], 3, 2))
    res = run("tile", src, out, "--size", 32, "--max-pixels", 64 * 64)
    assert res.exit_code == 1 and "2 input(s) failed" in res.output, res.output
    assert f"images/big.png: 128×128 = 16,384 {TOO_LARGE} 4,096" in res.output
    assert f"gt/maskpng.png: 128×128 = 16,384 {TOO_LARGE} 4,096" in res.output
    assert sorted({p.name.rsplit("_", 2)[0] for p in out.glob("*/*.png")}) == ["good"]


def test_training_leaves_out_an_image_over_the_limit_naming_it(tmp_path):
    data = small_pairs(tmp_path / "ds")  # 32×64 A|B images: 2048 pixels
    write_image(data / "train" / "big.png", np.zeros((64, 128, 3), np.uint8))  # 8192 pixels
    res = run("train", data, "--out", tmp_path / "run", "--max-steps", 1, *SMALL_TRAIN, "--max-pixels", 4096)
    assert res.exit_code == 0, res.output
    lines = _failed_lines(res.output, "big.png")
    assert len(lines) == 1 and "left out of training" in lines[0] and f"128×64 = 8,192 {TOO_LARGE} 4,096" in lines[0]


def test_a_bad_limit_in_the_environment_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_MAX_PIXELS", "lots")
    (tmp_path / "A").mkdir()
    res = run("pair", tmp_path / "A", tmp_path / "A", tmp_path / "out")
    assert res.exit_code == 2 and "P2PTOOLS_MAX_PIXELS='lots': expected a positive whole number" in res.output
