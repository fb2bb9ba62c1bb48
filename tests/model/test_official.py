"""Generators of the official pix2pix code: their files predict here as their test.py does, and import
into p2ptools runs. Fixtures in tests/data/official were made with the official code (README there)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from p2ptools.cli.main import cli
from tests.conftest import write_tif

OFFICIAL = Path(__file__).resolve().parents[1] / "data" / "official"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _matches_official(preds: Path, name: str) -> None:
    """Every output within the issue's bounds of the official test.py output (mean ≤ 0.5, max ≤ 3 levels)."""
    expected = sorted((OFFICIAL / name / "expected").glob("*_fake_B.png"))
    assert len(expected) == 4
    for exp in expected:
        mine = cv2.imread(str(preds / exp.name.replace("_fake_B", "")))
        d = np.abs(mine.astype(int) - cv2.imread(str(exp)).astype(int))
        assert d.mean() <= 0.5 and d.max() <= 3, (exp.name, d.mean(), d.max())


@pytest.mark.parametrize("name", ["unet", "resnet"])
def test_official_files_predict_like_the_official_test(tmp_path, name):
    res = run("predict", OFFICIAL / name / "latest_net_G.pth", OFFICIAL / "inputs", tmp_path / "p", "--amp", "none")
    assert res.exit_code == 0, res.output
    _matches_official(tmp_path / "p", name)
    # the official checkpoints folder (checkpoints/NAME) works as a run folder
    res = run("predict", OFFICIAL / name, OFFICIAL / "inputs", tmp_path / "q", "--amp", "none")
    assert res.exit_code == 0, res.output
    _matches_official(tmp_path / "q", name)


def test_architecture_from_the_tensor_shapes_without_train_opt(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(OFFICIAL / "unet" / "latest_net_G.pth", bare / "latest_net_G.pth")  # unet_128: 7 downs → 128 px
    res = run("predict", bare / "latest_net_G.pth", OFFICIAL / "inputs", tmp_path / "p", "--amp", "none")
    assert res.exit_code == 0, res.output
    _matches_official(tmp_path / "p", "unet")
    from p2ptools.model.official import arch_from_shapes

    state = torch.load(OFFICIAL / "resnet" / "latest_net_G.pth", weights_only=True)
    assert arch_from_shapes(state) == {"kind": "resnet", "depth": 6, "ngf": 4, "norm": "instance", "dropout": True,
                                       "in_channels": 3, "out_channels": 3}


def test_import_makes_a_run_that_predicts_the_same(tmp_path):
    res = run("import", OFFICIAL / "resnet" / "latest_net_G.pth", tmp_path / "run")
    assert res.exit_code == 0, res.output
    res = run("predict", tmp_path / "run", OFFICIAL / "inputs", tmp_path / "p", "--amp", "none")
    assert res.exit_code == 0, res.output
    _matches_official(tmp_path / "p", "resnet")
    res = run("train", "--resume", tmp_path / "run")
    assert res.exit_code == 1 and "imported official generator" in res.output
    res = run("import", OFFICIAL / "unet" / "latest_net_G.pth", tmp_path / "labels", "--palette", "inria",
              "--direction", "AtoB")
    assert res.exit_code == 0, res.output
    from p2ptools.model.checkpoints import load_checkpoint

    ck = load_checkpoint(tmp_path / "labels" / "latest.pt")
    assert ck["dataset"]["contract"]["a"] == "label" and ck["dataset"]["palette"]["name"] == "inria"


def test_a_whole_scene_through_an_official_generator(tmp_path):
    scene = np.random.default_rng(0).integers(0, 255, (3, 300, 260), np.uint8)
    write_tif(tmp_path / "scene.tif", scene)
    res = run("predict", OFFICIAL / "unet" / "latest_net_G.pth", tmp_path / "scene.tif", tmp_path / "out.tif")
    assert res.exit_code == 0, res.output
    import rasterio

    with rasterio.open(tmp_path / "out.tif") as ds:
        assert (ds.width, ds.height, ds.count) == (260, 300, 3) and ds.crs is not None


def test_a_crafted_official_file_runs_nothing(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model.model.0.weight": torch.zeros(1), "x": Payload()}, tmp_path / "latest_net_G.pth")
    res = run("predict", tmp_path / "latest_net_G.pth", OFFICIAL / "inputs", tmp_path / "p")
    assert res.exit_code == 1 and "refused" in res.output and not marker.exists()


def test_the_resnet_preset_trains_and_predicts(tmp_path):
    from tests.conftest import small_pairs

    data = small_pairs(tmp_path / "ds")
    res = run("train", data, "--model", "resnet", "--out", tmp_path / "run", "--epochs", 1, "--workers", 0,
              "--set", "model.ngf=4", "--set", "model.n_blocks=2", "--set", "model.ndf=4",
              "--set", "model.image_size=32", "--set", "model.load_size=36")
    assert res.exit_code == 0, res.output
    res = run("predict", tmp_path / "run", data / "val", tmp_path / "p")
    assert res.exit_code == 0 and len(list((tmp_path / "p").glob("*.png"))) == 2, res.output


def _official_copy(tmp_path: Path, name: str, **opts: str) -> Path:
    """The official fixture ``name`` copied, with ``train_opt.txt`` options replaced."""
    folder = tmp_path / name
    shutil.copytree(OFFICIAL / name, folder, ignore=shutil.ignore_patterns("expected"))
    text = (folder / "train_opt.txt").read_text()
    for key, value in opts.items():
        text = "\n".join(f"{' ' * 10}{key}: {value}" if line.strip().startswith(f"{key}:") else line
                         for line in text.splitlines())
    (folder / "train_opt.txt").write_text(text)
    return folder


def test_an_unknown_direction_in_train_opt_is_refused_naming_the_file(tmp_path):
    folder = _official_copy(tmp_path, "unet", direction="atob")  # the official code ran this as BtoA
    for args in (("predict", folder / "latest_net_G.pth", OFFICIAL / "inputs", tmp_path / "p"),
                 ("import", folder / "latest_net_G.pth", tmp_path / "run")):
        res = run(*args)
        lines = res.output.strip().splitlines()
        assert res.exit_code == 1 and len(lines) == 1, res.output
        assert f"{folder / 'train_opt.txt'}: direction 'atob' is neither AtoB nor BtoA" in lines[0]
    assert not (tmp_path / "p").exists() and not (tmp_path / "run").exists()
    res = run("import", folder / "latest_net_G.pth", tmp_path / "run", "--direction", "BtoA")  # said explicitly
    assert res.exit_code == 0, res.output


def test_a_huge_crop_size_in_train_opt_is_refused_before_building(tmp_path, monkeypatch):
    import p2ptools.model.nets as nets

    def build(*args, **kwargs):
        raise AssertionError("built a generator for a crop size that should have been refused")

    monkeypatch.setattr(nets, "build_generator", build)
    folder = _official_copy(tmp_path, "unet", crop_size=str(2**22))
    res = run("predict", folder / "latest_net_G.pth", OFFICIAL / "inputs", tmp_path / "p")
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert f"image_size={2**22}: the unet generator" in lines[0] and "at most image_size=8192" in lines[0]
    assert "(read from train_opt.txt)" in lines[0]


def test_import_replaces_only_an_earlier_import_and_only_with_overwrite(tiny_run, tmp_path):
    target = tmp_path / "run"
    assert run("import", OFFICIAL / "resnet" / "latest_net_G.pth", target).exit_code == 0
    first = (target / "latest.pt").read_bytes()
    res = run("import", OFFICIAL / "unet" / "latest_net_G.pth", target)
    assert res.exit_code == 1 and "holds an earlier import" in res.output and "--overwrite" in res.output, res.output
    assert (target / "latest.pt").read_bytes() == first
    res = run("import", OFFICIAL / "unet" / "latest_net_G.pth", target, "--overwrite")
    assert res.exit_code == 0, res.output
    assert (target / "latest.pt").read_bytes() != first
    trained = tmp_path / "trained"
    shutil.copytree(tiny_run, trained)
    before = (trained / "latest.pt").read_bytes()
    res = run("import", OFFICIAL / "unet" / "latest_net_G.pth", trained, "--overwrite")
    assert res.exit_code == 1 and "holds a run p2ptools import did not write" in res.output, res.output
    assert (trained / "latest.pt").read_bytes() == before
