"""Whole-scene prediction: georeference, odd sizes, nodata, seamless blending, bounded windows."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.config import ModelConfig, TrainConfig
from p2ptools.pix2pix.mosaic import hann_window, predict_scene
from p2ptools.pix2pix.train import fit

from tests.conftest import TRANSFORM, blocks_mask, photo, shared_path, write_tif


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny model trained a few steps on real SpaceNet tiles (label → photo, 32 px)."""
    root = tmp_path_factory.mktemp("mosaic")
    src = root / "src"
    (src / "images").mkdir(parents=True)
    (src / "gt").mkdir()
    (src / "images" / "a.tif").symlink_to(shared_path("spacenet", "sample_geotiff.tif"))
    (src / "gt" / "a.tif").symlink_to(shared_path("spacenet", "sample_fp_mask_from_geojson.tif"))
    assert CliRunner().invoke(cli, ["tile", str(src), str(root / "tiles"), "--size", "64"]).exit_code == 0
    fit(ModelConfig(ngf=8, ndf=8, num_downs=5, image_size=32, load_size=36),
        TrainConfig(dataset=root / "tiles", out=root / "run", epochs=1, workers=0,
                    max_steps=20, batch_size=4), progress=False)
    return root / "run"


def test_hann_weights():
    w = hann_window(8)
    assert w.shape == (8, 8) and w.min() > 0 and np.allclose(w, w.T) and w[3:5, 3:5].min() == w.max()


@pytest.mark.parametrize("h,w", [(100, 77), (33, 250), (20, 20)])
def test_output_matches_input_grid_for_any_size(run, tmp_path, h, w):
    scene = write_tif(tmp_path / "labels.tif", blocks_mask(h, w, [0, 255], block=8))
    out = tmp_path / "out.tif"
    rep = predict_scene(run, scene, out, progress=False)
    assert rep.input_kind == "labels"
    with rasterio.open(scene) as a, rasterio.open(out) as b:
        assert (b.width, b.height, b.count, b.dtypes[0]) == (a.width, a.height, 3, "uint8")
        assert b.crs == a.crs and b.transform == a.transform == TRANSFORM
        assert b.profile["tiled"] and b.profile["compress"] == "deflate"
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_nodata_stays_nodata(run, tmp_path):
    img = photo(96, 96)
    img[:, :40, :30] = 0
    scene = write_tif(tmp_path / "rgb.tif", img, nodata=0)
    out = tmp_path / "out.tif"
    predict_scene(run, scene, out, input_kind="rgb", progress=False)
    with rasterio.open(out) as b:
        mask = b.dataset_mask()
        data = b.read()
    assert (mask[:40, :30] == 0).all() and (mask[40:] == 255).all() and (mask[:, 30:] == 255).all()
    assert (data[:, :40, :30] == 0).all()


def _jump(img: np.ndarray, cols: list[int]) -> float:
    """Mean jump of the column-mean profile at ``cols``: |m[c] − median of same-parity neighbours c±2, c±4|
    (same parity, so a 2-px checkerboard of transposed convolutions does not count)."""
    m = img.astype(np.float64).mean(axis=(0, 1))
    return float(np.mean([abs(m[c] - np.median(m[[c - 4, c - 2, c + 2, c + 4]])) for c in cols]))


def test_blending_removes_the_seams_of_a_plain_stitch(run, tmp_path):
    # a uniform scene: any step in the output at the tile period is a seam (the U-Net's border effects)
    scene = write_tif(tmp_path / "labels.tif", np.zeros((320, 320), np.uint8))
    stitched, blended = tmp_path / "stitch.tif", tmp_path / "blend.tif"
    predict_scene(run, scene, stitched, overlap=0, blend="none", progress=False)
    predict_scene(run, scene, blended, progress=False)
    borders = [c for b in range(32, 288, 32) for c in (b - 1, b)]  # both sides of the stitch's tile borders
    inner = [c for b in range(32, 288, 32) for c in (b - 16, b - 15)]  # tile centres
    with rasterio.open(stitched) as a, rasterio.open(blended) as b:
        sa, sb = a.read(), b.read()
    assert _jump(sa, borders) > 3 * _jump(sa, inner)  # the plain stitch steps at every tile border
    assert _jump(sb, borders) < 0.5 * _jump(sa, borders)  # blending removes most of it
    assert _jump(sb, borders) < 2 * max(_jump(sb, inner), 0.05)  # and leaves no seam above the noise
    from p2ptools.prep.tiling import axis_offsets

    own = sorted({c for x in axis_offsets(320, 32, 24, "shift")[1:-1] for c in (x, x + 31) if 4 <= c < 316})
    assert _jump(sb, own) < 2 * max(_jump(sb, inner), 0.05)  # nor at its own window borders


def test_band_processing_equals_one_band(run, tmp_path):
    scene = write_tif(tmp_path / "labels.tif", blocks_mask(70, 150, [0, 255], block=8))
    one, many = tmp_path / "one.tif", tmp_path / "many.tif"
    predict_scene(run, scene, one, progress=False)
    predict_scene(run, scene, many, band_width=40, progress=False)  # 4 bands, windows computed twice
    with rasterio.open(one) as a, rasterio.open(many) as b:
        assert np.abs(a.read().astype(int) - b.read().astype(int)).max() <= 1


def test_cli_raster_prediction_and_errors(run, tmp_path):
    scene = write_tif(tmp_path / "labels.tif", blocks_mask(64, 64, [0, 255], block=8))
    res = CliRunner().invoke(cli, ["predict", str(run), str(scene), str(tmp_path / "o.tif"), "--overviews"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "64×64 labels raster" in res.output
    bad = write_tif(tmp_path / "bad.tif", blocks_mask(64, 64, [0, 3], block=8))
    res = CliRunner().invoke(cli, ["predict", str(run), str(bad), str(tmp_path / "x.tif")])
    assert res.exit_code == 1 and "values outside palette" in res.output and "3" in res.output
    res = CliRunner().invoke(cli, ["predict", str(run), str(scene), str(tmp_path / "y.tif"), "--dropout", "on"])
    assert res.exit_code == 2 and "for folders" in res.output


def test_raster_output_rules(run, tmp_path):
    scene = write_tif(tmp_path / "labels.tif", blocks_mask(64, 64, [0, 255], block=8), crs=None)
    res = CliRunner().invoke(cli, ["predict", str(run), str(scene), str(tmp_path / "out.png")])
    assert res.exit_code == 1 and "name the output .tif or .tiff" in res.output
    mine = write_tif(tmp_path / "mine.tif", blocks_mask(64, 64, [0], block=8))
    res = CliRunner().invoke(cli, ["predict", str(run), str(scene), str(mine)])
    assert res.exit_code == 1 and "was not written by p2ptools" in res.output
    assert rasterio.open(mine).count == 1  # untouched
    for _ in range(2):  # p2ptools's own output may be replaced by a rerun
        res = CliRunner().invoke(cli, ["predict", str(run), str(scene), str(tmp_path / "out.tif")])
        assert res.exit_code == 0, res.output
    warned = [ln for ln in res.stderr.splitlines() if "georeference" in ln.lower()]
    assert len(warned) == 1 and "labels.tif has no georeference" in warned[0], res.stderr
