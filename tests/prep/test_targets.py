"""Photo → photo pairs (tile --targets): targets resampled onto the photo's grid, NAIP date → date."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from p2ptools.cli.main import cli
from tests.conftest import TRANSFORM, photo, shared_path, write_tif


def tile(*args):
    return CliRunner().invoke(cli, ["tile", *map(str, args)])


def test_targets_on_another_grid_are_aligned_to_the_photo(tmp_path):
    """The target covers the same ground on a grid 8 px (4 m) east and south: after resampling
    onto the photo's grid, every B tile equals the photo's own pixels where the target has data."""
    img = photo(160, 200, seed=1)
    write_tif(tmp_path / "a" / "s.tif", img)
    shifted = from_origin(TRANSFORM.c + 8 * 0.5, TRANSFORM.f - 8 * 0.5, 0.5, 0.5)
    write_tif(tmp_path / "b" / "s.tif", img[:, 8:, 8:], transform=shifted, nodata=0)
    res = tile("--images", tmp_path / "a", "--targets", tmp_path / "b", tmp_path / "out", "--size", "64",
               "--format", "tif", "--split", "1,0,0", "--max-nodata", "0.3")
    assert res.exit_code == 0, res.output
    man = pd.read_csv(tmp_path / "out" / "manifest.csv")
    kept = man[man.kept]
    assert len(kept) > 0 and (man[~man.kept].reason == "nodata").all()  # tiles past the target's edge
    for r in kept.itertuples():
        b_file = tmp_path / "out" / r.file.replace("/A/", "/B/")
        with rasterio.open(tmp_path / "out" / r.file) as a, rasterio.open(b_file) as b:
            pa, pb = a.read(), b.read()
            assert a.transform == b.transform and a.crs == b.crs
            inside = (pb != 0).all(axis=0)
            assert inside.mean() > 0.7 and np.array_equal(pa[:, inside], pb[:, inside])
    c = json.loads((tmp_path / "out" / "dataset.json").read_text())["contract"]
    assert (c["a"], c["b"], c["tif"]["A"]["role"], c["tif"]["B"]["role"]) == ("photo", "photo", "photo", "photo")
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert c["palette"] is None and meta["palette"] is None  # photo → photo: no label palette


def test_png_pairs_and_errors(tmp_path):
    write_tif(tmp_path / "a" / "s.tif", photo(96, 96))
    write_tif(tmp_path / "b" / "s.tif", photo(96, 96, seed=5))
    write_tif(tmp_path / "a" / "t.tif", photo(96, 96))
    write_tif(tmp_path / "b" / "t.tif", photo(96, 96), crs=None)
    res = tile("--images", tmp_path / "a", "--targets", tmp_path / "b", tmp_path / "out", "--size", "32")
    assert res.exit_code == 1 and "t.tif: has no CRS" in res.output and "Traceback" not in res.output
    ab = rasterio.open(next((tmp_path / "out").glob("*/s_0_0.png"))).read()
    assert ab.shape == (3, 32, 64)
    assert np.array_equal(ab[:, :, :32], photo(96, 96)[:, :32, :32])  # A: the photo, B: the other photo
    assert np.array_equal(ab[:, :, 32:], photo(96, 96, seed=5)[:, :32, :32])
    res = tile("--images", tmp_path / "a", "--targets", tmp_path / "b", "--masks", tmp_path / "b", tmp_path / "x")
    assert res.exit_code == 1 and "no --masks" in res.output


def test_naip_date_to_date(tmp_path):
    """Real NAIP RGBN of 2018 → 2020 (grids 1–2 m apart): tiles, a 4 → 4-band model, GeoTIFF predictions."""
    for sub, date in (("a", "20180716"), ("b", "20200831")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "naip.tif").symlink_to(shared_path("naip", f"m_4709963_se_14_1_{date}.tif"))
    out = tmp_path / "tiles"
    res = tile("--images", tmp_path / "a", "--targets", tmp_path / "b", out, "--size", "64", "--format", "tif",
               "--split-by", "block", "--block-size", "192", "--block-buffer", "0")
    assert res.exit_code == 0, res.output
    kept = pd.read_csv(out / "manifest.csv").query("kept")
    nir = [np.corrcoef(rasterio.open(out / f).read(4).ravel(),
                       rasterio.open(out / f.replace("/A/", "/B/")).read(4).ravel())[0, 1] for f in kept.file[:20]]
    assert np.median(nir) > 0.6  # the same fields two years apart, aligned
    run = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", str(out), "--out", str(run), "--model", "tiny", "--epochs", "1",
                                   "--max-steps", "2", "--set", "model.image_size=64", "--set", "model.load_size=72",
                                   "--set", "model.num_downs=6"])
    assert res.exit_code == 0, res.output
    split = next(s for s in ("test", "val", "train") if (out / s / "A").is_dir())
    res = CliRunner().invoke(cli, ["predict", str(run), str(out / split), str(tmp_path / "pred")])
    assert res.exit_code == 0, res.output
    p = next((tmp_path / "pred").glob("*.tif"))
    with rasterio.open(p) as d, rasterio.open(out / split / "B" / p.name) as ref:
        assert (d.count, d.dtypes[0], d.crs, d.transform) == (4, "uint8", ref.crs, ref.transform)
    # the whole 2018 scene → a 2020-like scene of 4 bands, on the 2018 grid, nodata kept as a mask
    res = CliRunner().invoke(cli, ["predict", str(run), str(tmp_path / "a" / "naip.tif"), str(tmp_path / "s.tif")])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "s.tif") as d, rasterio.open(tmp_path / "a" / "naip.tif") as ref:
        assert (d.count, d.dtypes[0], d.width, d.height) == (4, "uint8", ref.width, ref.height)
        assert (d.crs, d.transform) == (ref.crs, ref.transform)
        assert np.array_equal(d.dataset_mask() > 0, ref.dataset_mask() > 0)
