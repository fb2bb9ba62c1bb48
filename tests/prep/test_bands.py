"""N-band GeoTIFF tiles: normalisation and back, training with channels from the data, tile predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.inference.options import PredictOptions
from p2ptools.prep.bands import HalfSpec
from tests.conftest import blocks_mask, photo, shared_path, write_tif

PALETTE = {"name": "inria", "background": 0, "classes": [{"value": 0, "name": "background", "color": [0, 0, 0]},
                                                          {"value": 255, "name": "building", "color": [255, 255, 255]}]}
TINY = ["--model", "tiny", "--epochs", "1", "--max-steps", "2", "--set", "model.image_size=64",
        "--set", "model.load_size=72", "--set", "model.num_downs=6", "--workers", "0"]


def test_photo_and_label_round_trips():
    spec = HalfSpec("photo", 4, "uint16", (100.0, 0.0, 50.0, 1000.0), (4000.0, 255.0, 60000.0, 1100.0))
    rng = np.random.default_rng(0)
    data = np.stack([rng.integers(100, 4001, (8, 8)), rng.integers(0, 256, (8, 8)),
                     rng.integers(50, 60001, (8, 8)), rng.integers(1000, 1101, (8, 8))]).astype(np.uint16)
    net = spec.encode(data)
    assert net.shape == (8, 8, 4) and net.min() >= -1 and net.max() <= 1
    assert np.array_equal(spec.decode(np.moveaxis(net, -1, 0)), data)  # exact after rounding
    assert spec.decode(np.full((4, 2, 2), 3.0, np.float32)).max() <= 65535  # clipped to the dtype
    label = HalfSpec("label", 3, "uint8", palette=PALETTE)
    classes = np.where(rng.random((1, 8, 8)) > 0.5, 255, 0).astype(np.uint8)
    assert np.array_equal(label.decode(np.moveaxis(label.encode(classes), -1, 0)), classes)


@pytest.fixture
def rgbn_tiles(tmp_path):
    """Two 16-bit RGBN scenes with 0/255 masks, tiled to GeoTIFF pairs (label | RGBN)."""
    for i in range(2):
        write_tif(tmp_path / "src" / "images" / f"s{i}.tif", photo(192, 192, seed=i, bands=4, dtype="uint16"), nodata=0)
        write_tif(tmp_path / "src" / "gt" / f"s{i}.tif", blocks_mask(192, 192, [0, 255], block=32, seed=i))
    out = tmp_path / "tiles"
    res = CliRunner().invoke(cli, ["tile", str(tmp_path / "src"), str(out), "--size", "64", "--format", "tif",
                                   "--split", "0.5,0.5,0"])
    assert res.exit_code == 0, res.output
    return out


def test_tile_splits_refuse_training_mode_layers_under_onnxruntime(rgbn_tiles, tmp_path):
    """The engine registry's refusal holds on the GeoTIFF tile-split path too: ONNX Runtime cannot keep
    dropout or batch statistics in training mode, so it is refused in one line (it used to fold them away)."""
    run = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", str(rgbn_tiles), "--out", str(run), *TINY])
    assert res.exit_code == 0, res.output
    for flag in ("--dropout", "--batch-stats"):
        res = CliRunner().invoke(cli, ["predict", str(run), str(rgbn_tiles / "val"), str(tmp_path / "p"),
                                       "--engine", "onnxruntime", flag, "on"])
        assert res.exit_code == 1 and "training mode" in res.output and "use --engine torch" in res.output, res.output
        assert "Traceback" not in res.output and not list((tmp_path / "p").glob("*.tif"))
    res = CliRunner().invoke(cli, ["predict", str(run), str(rgbn_tiles / "val"), str(tmp_path / "p"),
                                   "--dropout", "on"])  # auto: torch, which keeps them
    assert res.exit_code == 0 and "training-mode layers kept" in res.output, res.output


def test_labels_to_rgbn_and_back(rgbn_tiles, tmp_path):
    tif = json.loads((rgbn_tiles / "dataset.json").read_text())["contract"]["tif"]["B"]
    assert tif["dtype"] == "uint16" and tif["bands"] == 4 and len(tif["low"]) == 4
    assert all(lo < hi for lo, hi in zip(tif["low"], tif["high"], strict=True))
    for direction, out_bands, dtype in (("AtoB", 4, "uint16"), ("BtoA", 1, "uint8")):
        run = tmp_path / f"run_{direction}"
        res = CliRunner().invoke(cli, ["train", str(rgbn_tiles), "--out", str(run), "--direction", direction, *TINY])
        assert res.exit_code == 0, res.output
        from p2ptools.model.checkpoints import load_generator

        _, mcfg, _ = load_generator(run)
        assert (mcfg.in_channels, mcfg.out_channels) == ((3, 4) if direction == "AtoB" else (4, 3))
        pred = tmp_path / f"pred_{direction}"
        res = CliRunner().invoke(cli, ["predict", str(run), str(rgbn_tiles / "val"), str(pred)])
        assert res.exit_code == 0, res.output
        outs = sorted(pred.glob("*.tif"))
        assert len(outs) == len(list((rgbn_tiles / "val" / "A").glob("*.tif"))) > 0
        for o in outs[:3]:
            with rasterio.open(o) as p, rasterio.open(rgbn_tiles / "val" / "B" / o.name) as ref:
                assert (p.count, p.dtypes[0]) == (out_bands, dtype)
                assert p.crs == ref.crs and p.transform == ref.transform  # the tile's georeference
                if direction == "BtoA":
                    assert set(np.unique(p.read(1))) <= {0, 255} and p.colormap(1)[255][:3] == (255, 255, 255)
    # label predictions are scored as palette colours, against the A half
    res = CliRunner().invoke(cli, ["evaluate", "--real", str(rgbn_tiles / "val"), "--real-side", "A", "--fake",
                                   str(tmp_path / "pred_BtoA"), "--out", str(tmp_path / "rep_BtoA")])
    assert res.exit_code == 0, res.output
    import pandas as pd

    per = pd.read_csv(tmp_path / "rep_BtoA" / "per_image.csv")
    assert "l1_band1" not in per and per.l1.between(0, 255).all()
    # whole scenes come back in the target's dtype and band count, georeferenced like the input
    scene = write_tif(tmp_path / "labels.tif", blocks_mask(100, 90, [0, 255], block=8))
    res = CliRunner().invoke(cli, ["predict", str(tmp_path / "run_AtoB"), str(scene), str(tmp_path / "o.tif")])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "o.tif") as p, rasterio.open(scene) as ref:
        assert (p.count, p.dtypes[0], p.width, p.height) == (4, "uint16", 90, 100)
        assert p.crs == ref.crs and p.transform == ref.transform
    photo_scene = rgbn_tiles.parent / "src" / "images" / "s0.tif"
    res = CliRunner().invoke(cli, ["predict", str(tmp_path / "run_BtoA"), str(photo_scene), str(tmp_path / "c.tif")])
    assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "c.tif") as p:
        assert (p.count, p.dtypes[0]) == (1, "uint8") and set(np.unique(p.read(1))) <= {0, 255}
    # one window, no padding, no blending: the scene's values equal the tile prediction's
    from p2ptools.inference.mosaic import predict_scene

    for direction, half in (("AtoB", "A"), ("BtoA", "B")):
        name = sorted((rgbn_tiles / "val" / half).glob("*.tif"))[0]
        out = tmp_path / f"one_{direction}.tif"
        options = PredictOptions(overlap=0, blend="none", pad=0, progress=False)
        predict_scene(tmp_path / f"run_{direction}", name, out, options)
        with rasterio.open(out) as p, rasterio.open(tmp_path / f"pred_{direction}" / name.name) as ref:
            diff = np.abs(p.read().astype(np.int64) - ref.read().astype(np.int64))
            assert diff.max() <= 1, diff.max()  # BatchNorm folded into the convolutions: float rounding only
            assert p.crs == ref.crs and p.transform == ref.transform
    # the wrong kind of raster is refused, naming what the model reads
    rgb8 = write_tif(tmp_path / "rgb8.tif", photo(64, 64, seed=3))
    res = CliRunner().invoke(cli, ["predict", str(tmp_path / "run_BtoA"), str(rgb8), str(tmp_path / "x.tif")])
    assert res.exit_code == 1 and "3 band(s) of uint8" in res.output and "4 band(s) of uint16" in res.output
    res = CliRunner().invoke(cli, ["predict", str(tmp_path / "run_AtoB"), str(rgb8), str(tmp_path / "x.tif")])
    assert res.exit_code == 1 and "not a label raster" in res.output


def test_real_naip_rgbn_tiles_train(tmp_path):
    """NAIP RGBN (real, 4 bands) with a vegetation mask derived from NDVI: labels → RGBN."""
    naip = shared_path("naip", "m_4709963_se_14_1_20200831.tif")
    with rasterio.open(naip) as ds:
        data = ds.read().astype(np.float32)
        profile = ds.profile
    ndvi = (data[3] - data[0]) / (data[3] + data[0] + 1e-6)
    (tmp_path / "src" / "images").mkdir(parents=True)
    (tmp_path / "src" / "images" / "naip.tif").symlink_to(naip)
    profile.update(count=1, dtype="uint8", nodata=None)
    (tmp_path / "src" / "gt").mkdir()
    with rasterio.open(tmp_path / "src" / "gt" / "naip.tif", "w", **profile) as dst:
        dst.write((ndvi > 0.3).astype(np.uint8)[None])
    tiles = tmp_path / "tiles"
    res = CliRunner().invoke(cli, ["tile", str(tmp_path / "src"), str(tiles), "--size", "64", "--format", "tif",
                                   "--palette", "binary01", "--split-by", "block", "--block-size", "192",
                                   "--block-buffer", "0"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["train", str(tiles), "--out", str(tmp_path / "run"), *TINY])
    assert res.exit_code == 0, res.output
    from p2ptools.model.checkpoints import load_generator

    _, mcfg, meta = load_generator(tmp_path / "run")
    assert (mcfg.in_channels, mcfg.out_channels) == (3, 4)  # colorized labels → the four NAIP bands
    assert meta["dataset"]["contract"]["tif"]["B"]["low"] == [0.0] * 4  # 8-bit photos: the PNG mapping


def test_evaluate_scores_every_band(rgbn_tiles, tmp_path):
    """evaluate on GeoTIFF predictions: all bands on the dataset's 0–255 scale, per-band L1, RGB views."""
    import pandas as pd

    tif = json.loads((rgbn_tiles / "dataset.json").read_text())["contract"]["tif"]["B"]
    low, high = np.array(tif["low"]), np.array(tif["high"])
    fake = tmp_path / "fake"
    fake.mkdir()
    reals = sorted((rgbn_tiles / "val" / "B").glob("*.tif"))
    expected = []
    for k, real in enumerate(reals):
        with rasterio.open(real) as ds:
            data, profile = ds.read(), ds.profile
        shift = np.array([0, 0, 0, 40 * (k + 1)])[:, None, None]  # only the NIR band is off
        with rasterio.open(fake / real.name, "w", **profile) as dst:
            dst.write((data.astype(np.int64) + shift).clip(0, 65535).astype(np.uint16))
        scale = 255.0 / (high - low)
        diff = np.abs((data.astype(np.float64) + shift).clip(0, 65535) - data) * scale[:, None, None]
        expected.append([float(d.mean()) for d in diff])
    res = CliRunner().invoke(cli, ["evaluate", "--real", str(rgbn_tiles / "val"), "--fake", str(fake),
                                   "--out", str(tmp_path / "rep"), "--metrics", "l1,psnr,ssim"])
    assert res.exit_code == 0, res.output
    per = pd.read_csv(tmp_path / "rep" / "per_image.csv").set_index("name")
    for real, exp in zip(reals, expected, strict=True):
        row = per.loc[real.stem]
        assert [row[f"l1_band{b}"] for b in range(1, 5)] == pytest.approx(exp, rel=1e-5)
        assert row["l1"] == pytest.approx(np.mean(exp), rel=1e-5)  # four bands, not an RGB view
        assert row["l1_band1"] == 0 and row["l1"] > 0 and row["ssim"] < 1
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv").set_index("metric")
    assert "4 band(s) of uint16" in summary.loc["l1", "note"]
    assert (tmp_path / "rep" / "report.html").is_file()
    # a prediction of the wrong band count is named
    with rasterio.open(reals[0]) as ds:
        profile = {**ds.profile, "count": 3}
        data = ds.read([1, 2, 3])
    with rasterio.open(fake / reals[0].name, "w", **profile) as dst:
        dst.write(data)
    res = CliRunner().invoke(cli, ["evaluate", "--real", str(rgbn_tiles / "val"), "--fake", str(fake),
                                   "--out", str(tmp_path / "rep2")])
    assert res.exit_code == 1 and f"{reals[0].name}: 3 band(s) of uint16" in res.output


def test_label_values_outside_the_palette_or_fractional_are_refused():
    from p2ptools.errors import PaletteError
    from p2ptools.prep.bands import HalfSpec
    from p2ptools.prep.labels import load_palette

    spec = HalfSpec("label", 3, "uint8", palette=load_palette("landcover").to_dict())
    ok = np.array([[[0, 1], [4, 2]]], np.uint8)
    assert spec.encode(ok).shape == (2, 2, 3)
    for bad, what in ((np.array([[[0, 3], [9, 2]]], np.uint8), r"label value\(s\) 9 "),  # was black (background)
                      (np.array([[[0, 200]]], np.uint16), r"label value\(s\) 200 "),  # was an IndexError
                      (np.array([[[0.0, 1.5]]], np.float32), "fractional")):
        with pytest.raises(PaletteError, match=what):
            spec.encode(bad, "tile.tif")


def test_photo_statistics_leave_out_nan_pixels_and_nan_nodata(tmp_path):
    from p2ptools.prep.bands import photo_statistics

    data = np.linspace(100, 200, 2 * 64 * 64, dtype=np.float32).reshape(2, 64, 64)
    data[:, :8] = np.nan
    write_tif(tmp_path / "a.tif", data, nodata=float("nan"))
    low, high = photo_statistics([tmp_path / "a.tif"], "float32", float("nan"))
    assert all(np.isfinite(low)) and all(np.isfinite(high)) and min(low) >= 100 and max(high) <= 200


def test_tile_splits_run_int8_calibrated_on_the_runs_geotiff_tiles(rgbn_tiles, tmp_path, monkeypatch):
    """--amp int8 on a GeoTIFF tile split: calibrated on the run's own GeoTIFF tiles (encoded as training
    read them), every tile written with its georeference, close to ONNX Runtime fp32."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert CliRunner().invoke(cli, ["train", str(rgbn_tiles), "--out", str(run), *TINY]).exit_code == 0
    for name, amp in (("fp32", ["--amp", "none", "--engine", "onnxruntime"]), ("int8", ["--amp", "int8"])):
        res = CliRunner().invoke(cli, ["predict", str(run), str(rgbn_tiles / "val"), str(tmp_path / name), *amp])
        assert res.exit_code == 0, res.output
    assert "int8: calibrating on" in res.output and "of val/" in res.output
    tiles = sorted(p.name for p in (tmp_path / "fp32").glob("*.tif"))
    assert tiles and tiles == sorted(p.name for p in (tmp_path / "int8").glob("*.tif"))
    for t in tiles:
        with rasterio.open(tmp_path / "fp32" / t) as a, rasterio.open(tmp_path / "int8" / t) as b:
            assert (a.crs, a.transform, a.count, a.dtypes) == (b.crs, b.transform, b.count, b.dtypes)
            x, y = a.read().astype(np.float64), b.read().astype(np.float64)
            assert np.abs(x - y).mean() <= 0.05 * (x.max() - x.min() + 1)
