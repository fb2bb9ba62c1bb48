"""Recipes: every bundled one validates; a tiny one runs end to end and resumes."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.errors import ConfigError
from p2ptools.recipe import load_recipe, recipes_dir


@pytest.mark.parametrize("path", sorted(recipes_dir().glob("*.yaml")), ids=lambda p: p.stem)
def test_every_bundled_recipe_validates(path):
    rec = load_recipe(path)
    assert rec.name == path.stem and rec.model.image_size in (128, 256, 512)
    assert rec.evaluate["metrics"]


def test_recipe_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: {dataset: d}\ntrain: {epochz: 3}\n")
    with pytest.raises(ConfigError, match="unknown option.*epochz"):
        load_recipe(bad)
    bad.write_text("name: x\ndata: {dataset: d, tile: {src: s}}\n")
    with pytest.raises(ConfigError, match="exactly one of"):
        load_recipe(bad)
    bad.write_text("name: x\ndata: {dataset: d}\nevaluate: {metrics: [fcn]}\n")
    with pytest.raises(ConfigError, match="fcn: section"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="bundled recipe"):
        load_recipe("no-such-recipe")


def test_tiny_recipe_runs_end_to_end_and_resumes(tmp_path):
    tiny = "train.set={model: {image_size: 32, load_size: 36, num_downs: 5}}"
    args = ["run", "sample", "--workdir", str(tmp_path / "wd"), "--set", "train.epochs=2", "--set", tiny]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "data ran, train ran, predict ran, evaluate ran" in res.output
    summary = pd.read_csv(tmp_path / "wd" / "report" / "summary.csv").set_index("metric")
    assert summary.loc["l1", "n"] == len(list((tmp_path / "wd" / "data" / "test").glob("*.png"))) > 0
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0 and "data up to date, train up to date, predict up to date, evaluate up to date" in \
        res.output
    assert json.loads((tmp_path / "wd" / "recipe.json").read_text())["stages"]["train"] == "up to date"


def test_the_demo_learns_colour_on_the_shipped_scene(tmp_path):
    """The README's first command as shipped (its full training, about a minute on 2 cores): on the
    test blocks the model beats the training targets' mean colour clearly (L1 ≤ 0.9×, higher SSIM)
    and beats its own grey input left grey, so the colour is learned, not copied."""
    import numpy as np

    from p2ptools.prep.images import load_rgb8
    from p2ptools.prep.tiling import split_ab

    wd = tmp_path / "demo"
    res = CliRunner().invoke(cli, ["run", "sample", "--workdir", str(wd)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    summary = pd.read_csv(wd / "report" / "summary.csv").set_index("metric")
    l1, l1_base = summary.loc["l1", "mean"], summary.loc["l1", "baseline"]
    assert l1 <= 0.9 * l1_base, summary
    assert summary.loc["ssim", "mean"] > summary.loc["ssim", "baseline"], summary
    tiles = sorted((wd / "data" / "test").glob("*.png"))
    grey = np.mean([np.abs(np.subtract(*split_ab(load_rgb8(t)), dtype=np.float64)).mean() for t in tiles])
    assert l1 < grey, (l1, grey)
    doc = json.loads((wd / "report" / "evaluate.json").read_text())
    assert "training targets" in doc["baseline"]["what"]


def test_run_offline_reaches_the_metrics_weights_too(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("P2PTOOLS_WEIGHTS", raising=False)
    monkeypatch.setenv("P2PTOOLS_OFFLINE", "0")
    monkeypatch.setenv("P2PTOOLS_WEIGHTS_URL", "http://127.0.0.1:9")  # were anything fetched, it would fail here
    tiny = "train.set={model: {image_size: 32, load_size: 36, num_downs: 5, ngf: 8, ndf: 8}}"
    res = CliRunner().invoke(cli, ["run", "sample", "--workdir", str(tmp_path / "wd"), "--set", "train.epochs=1",
                                   "--set", tiny, "--set", "evaluate.metrics=[l1,vgg]", "--offline"])
    assert res.exit_code == 1, res.output
    assert "vgg19-dcbb9e9d.pth" in res.output and "offline" in res.output
    assert "127.0.0.1:9" not in res.output.split("offline")[0]  # said as offline, not as a failed download
    summary = pd.read_csv(tmp_path / "wd" / "report" / "summary.csv").set_index("metric")
    assert "l1" in summary.index and "vgg" not in summary.index
    assert "the report is incomplete" in res.output and "metric vgg not computed" in res.output
    res = CliRunner().invoke(cli, ["run", "sample", "--workdir", str(tmp_path / "wd"), "--set", "train.epochs=1",
                                   "--set", tiny, "--set", "evaluate.metrics=[l1,vgg]", "--offline"])
    assert res.exit_code == 1 and "train up to date, predict up to date, evaluate ran, incomplete" in res.output
