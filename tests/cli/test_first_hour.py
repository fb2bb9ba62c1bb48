"""The first hour of a new user, through the command line: the walk-through of the README works as
written, evaluate knows what predict did, and a missing weights file costs only its metric."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner

from p2ptools.cli.main import cli
from tests.conftest import ROOT, SMALL_TRAIN, small_pairs


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_walk_through_as_written(tmp_path, monkeypatch):
    tiles, runs, preds, rep = tmp_path / "tiles", tmp_path / "run", tmp_path / "preds", tmp_path / "report"
    res = run("tile", "--sample", tiles)
    assert res.exit_code == 0, res.output
    assert all(any((tiles / s).glob("*.png")) for s in ("train", "val", "test"))  # one scene, split by blocks
    res = run("train", tiles, "--model", "tiny", "--out", runs, "--epochs", 1, "--workers", 0, "--set", "model.ngf=8",
              "--set", "model.ndf=8")
    assert res.exit_code == 0, res.output
    res = run("predict", runs, tiles, preds)
    assert res.exit_code == 1 and "dataset with split folders train/, val/, test/" in res.output
    assert str(tiles / "test") in res.output
    res = run("predict", runs, tiles / "test", preds)
    assert res.exit_code == 0, res.output
    out = sorted(preds.glob("*.png"))
    assert len(out) == len(list((tiles / "test").glob("*.png"))) and cv2.imread(str(out[0])).shape == (128, 128, 3)
    res = run("evaluate", "--real", tiles, "--fake", preds, "--out", rep)
    assert res.exit_code == 1 and "give one of them" in res.output
    res = run("evaluate", "--real", tiles / "test", "--fake", preds, "--out", rep, "--workers", 0)
    assert res.exit_code == 0, res.output
    summary = pd.read_csv(rep / "summary.csv").set_index("metric")
    assert summary.loc["l1", "baseline"] > 0 and "baseline" in res.output
    # the grey tiles left grey, beside the mean colour (the demo's numbers on its 8 test tiles)
    assert summary.loc["l1", "identity"] == pytest.approx(10.2, abs=0.05), summary
    assert summary.loc["ssim", "identity"] == pytest.approx(0.970, abs=0.0005), summary
    assert summary.loc["l1", "baseline"] == pytest.approx(15.5, abs=0.05), summary
    assert summary.loc["ssim", "baseline"] == pytest.approx(0.612, abs=0.0005), summary
    assert "input itself 10.16" in res.output and str(rep / "report.html") in res.output
    doc = json.loads((rep / "evaluate.json").read_text())
    assert "training targets" in doc["baseline"]["what"] and doc["run"] == str(runs)
    assert doc["provenance"]["images"]["scored"] == len(out) and doc["provenance"]["torch"]
    from p2ptools.recipe import sample_root

    # the README's last line, as typed, from a folder that is not the clone
    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("p2ptools predict run s"))
    words = line.split("#")[0].split()
    assert words == ["p2ptools", "predict", "run", "sample", "colour.tif"], line
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = run("predict", runs, *words[3:])
    assert res.exit_code == 0, res.output
    assert "INPUT sample: the built-in demo's grey scene" in res.output
    assert "934×724 1-band photo → colour.tif" in res.output  # what it read, not "rgb raster"
    with rasterio.open(elsewhere / "colour.tif") as ds, rasterio.open(sample_root() / "naip" / "rgb" / "naip.tif") as t:
        assert (ds.count, ds.dtypes[0], ds.crs, ds.transform, ds.shape) == (3, "uint8", t.crs, t.transform, t.shape)


def test_outputs_keep_the_inputs_size_and_say_so(tmp_path):
    data = small_pairs(tmp_path / "ds")
    assert run("train", data, "--out", tmp_path / "run", "--epochs", 1, *SMALL_TRAIN).exit_code == 0
    big = tmp_path / "big"
    big.mkdir()
    for i in range(2):
        cv2.imwrite(str(big / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (64, 48, 3), np.uint8))
    res = run("predict", tmp_path / "run", big, tmp_path / "preds")
    assert res.exit_code == 0, res.output
    assert cv2.imread(str(tmp_path / "preds" / "0.png")).shape == (64, 48, 3)
    assert "2 image(s) were not 32 px (the model's size)" in res.output and "resized back" in res.output
    # … and the help and the docs say so
    helped = " ".join(run("predict", "--help").output.split())
    assert "at each input's own size (translated at the model's size and resized back" in helped
    assert "OUT/<name>.png at the model's size" not in helped
    for page in ("README.md", "docs/getting-started/walk-through.md"):
        assert "at the tiles' size" not in (ROOT / page).read_text(), page


def test_an_explicit_path_named_sample_wins(tmp_path, monkeypatch):
    from p2ptools.recipe import resolve_sample_input, sample_root

    monkeypatch.chdir(tmp_path)
    assert resolve_sample_input(Path("sample")) == sample_root() / "naip" / "pan" / "naip.tif"
    assert resolve_sample_input(Path("other")) == Path("other")
    (tmp_path / "sample").mkdir()
    assert resolve_sample_input(Path("sample")) == Path("sample")


def test_evaluate_takes_the_target_half_from_the_prediction_record(tmp_path):
    data = small_pairs(tmp_path / "ds")  # A | B with B = 255 - A
    res = run("train", data, "--out", tmp_path / "run", "--epochs", 1, "--direction", "BtoA", *SMALL_TRAIN)
    assert res.exit_code == 0, res.output
    assert run("predict", tmp_path / "run", data / "val", tmp_path / "preds").exit_code == 0
    record = json.loads((tmp_path / "preds" / "predict.json").read_text())
    assert record["direction"] == "BtoA" and record["run"] == str(tmp_path / "run") and record["dataset"]
    res = run("evaluate", "--real", data / "val", "--fake", tmp_path / "preds", "--out", tmp_path / "r1",
              "--workers", 0)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r1" / "evaluate.json").read_text())["real_side"] == "A"
    assert json.loads((tmp_path / "r1" / "evaluate.json").read_text())["run"] == str(tmp_path / "run")
    assert f"model <span class=\"mono\">{tmp_path / 'run'}" in (tmp_path / "r1" / "report.html").read_text()
    res = run("evaluate", "--real", data / "val", "--fake", tmp_path / "preds", "--out", tmp_path / "r2",
              "--workers", 0, "--real-side", "B")
    assert res.exit_code == 0 and "says the model was trained BtoA" in res.output


def _flat_images_without_weights(tmp_path, monkeypatch):
    """Three flat 16-px images, with no metric weights to be found."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("P2PTOOLS_WEIGHTS", raising=False)
    real = tmp_path / "real"
    real.mkdir()
    for i in range(3):
        cv2.imwrite(str(real / f"{i}.png"), np.full((16, 16, 3), 60 * i, np.uint8))
    return real


def test_a_missing_weights_file_costs_only_its_metric(tmp_path, monkeypatch):
    real = _flat_images_without_weights(tmp_path, monkeypatch)
    res = run("evaluate", "--real", real, "--fake", real, "--metrics", "l1,ssim,fid", "--out", tmp_path / "r",
              "--workers", 0)
    assert res.exit_code == 1, res.output
    assert "metric fid not computed" in res.output
    assert "p2ptools weights --download pt_inception-2015-12-05-6726825d.pth" in res.output
    summary = pd.read_csv(tmp_path / "r" / "summary.csv")
    assert list(summary["metric"]) == ["l1", "ssim"] and (tmp_path / "r" / "report.html").is_file()
    assert "fid" in json.loads((tmp_path / "r" / "evaluate.json").read_text())["unavailable"]


def test_nothing_computed_says_so(tmp_path, monkeypatch):
    """Only metrics whose weights are missing: no table, no "scored and written", exit 1; the page's path."""
    real = _flat_images_without_weights(tmp_path, monkeypatch)
    res = run("evaluate", "--real", real, "--fake", real, "--metrics", "fid", "--offline", "--out", tmp_path / "r",
              "--workers", 0)
    assert res.exit_code == 1, res.output
    assert "DataFrame" not in res.output and "Columns:" not in res.output and "scored and written" not in res.output
    assert "nothing computed" in res.output and "metric fid not computed" in res.output
    assert str(tmp_path / "r" / "report.html") in res.output


def test_baseline_is_the_mean_colour_scored_on_the_same_images(tmp_path):
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    for i, v in enumerate((40, 120)):
        cv2.imwrite(str(real / f"{i}.png"), np.full((16, 16, 3), v, np.uint8))
        cv2.imwrite(str(fake / f"{i}.png"), np.full((16, 16, 3), v + 2, np.uint8))
    res = run("evaluate", "--real", real, "--fake", fake, "--out", tmp_path / "r", "--workers", 0)
    assert res.exit_code == 0, res.output
    s = pd.read_csv(tmp_path / "r" / "summary.csv").set_index("metric")
    assert s.loc["l1", "mean"] == pytest.approx(2.0) and s.loc["l1", "baseline"] == pytest.approx(40.0)  # mean 80
    assert "mean colour of the 2 real images" in (tmp_path / "r" / "report.html").read_text()


def test_eta_ignores_a_stall_and_ticks_are_round():
    from p2ptools.runtime.html import _ticks
    from p2ptools.training.train import epoch_seconds

    times = [9.0] + [1.0] * 20 + [20.0] + [1.0] * 3  # start-up, then one stall of another program
    assert epoch_seconds(times, 200) == pytest.approx(1.0)
    assert epoch_seconds([5.0, 2.0, 2.0, 2.0, 4.0] * 4, 100) == pytest.approx(3.0, rel=0.25)  # periodic costs kept
    assert _ticks(0.000854, 0.0123) == [0.005, 0.01] and _ticks(1, 200) == [50, 100, 150, 200]


def test_ticker_prints_at_least_every_minute(monkeypatch):
    from p2ptools.runtime import progress

    lines = []
    monkeypatch.setattr(progress, "report", lambda msg, *a: lines.append(msg % a))
    clock = iter([10.0, 70.0, 75.0, 140.0])
    ticker = progress.Ticker(1000, "epoch 1/2", "steps", steps=0, every=60.0)
    ticker._clock = lambda: next(clock)
    ticker._start = ticker._last = 0.0
    for _ in range(4):
        ticker.update(1)
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2: 2/1000 steps")
