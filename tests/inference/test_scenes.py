"""Whole-scene prediction over many scenes: folders and lists, workers and Dask, resume, bad scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.config import TrainConfig
from p2ptools.inference.mosaic import predict_scene
from p2ptools.inference.options import PredictOptions
from p2ptools.model.config import ModelConfig
from p2ptools.training.train import fit
from tests.conftest import blocks_mask, photo, write_tif


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny label → photo model, three label scenes of different sizes and one photo (which it refuses)."""
    root = tmp_path_factory.mktemp("scenes")
    write_tif(root / "src" / "images" / "s.tif", photo(128, 128, seed=0))
    write_tif(root / "src" / "gt" / "s.tif", blocks_mask(128, 128, [0, 255], block=16, seed=0))
    res = CliRunner().invoke(cli, ["tile", str(root / "src"), str(root / "tiles"), "--size", "64", "--split", "1,0,0"])
    assert res.exit_code == 0, res.output
    fit(ModelConfig(ngf=8, ndf=8, num_downs=5, image_size=32, load_size=36),
        TrainConfig(dataset=root / "tiles", out=root / "run", epochs=1, workers=0, max_steps=4, batch_size=4),
        progress=False)
    for i, (h, w) in enumerate(((70, 90), (64, 64), (100, 40))):
        write_tif(root / "scenes" / f"labels_{i}.tif", blocks_mask(h, w, [0, 255], block=8, seed=i))
    write_tif(root / "scenes" / "a_photo.tif", photo(64, 64, seed=1))
    return root


def _pixels(folder):
    out = {}
    for p in sorted(folder.glob("*.tif")):
        with rasterio.open(p) as ds:
            out[p.name] = (ds.read(), ds.read_masks(1), ds.transform)
    return out


def test_a_folder_of_scenes_equals_one_scene_at_a_time(setup, tmp_path):
    root = setup
    res = CliRunner().invoke(cli, ["predict", str(root / "run"), str(root / "scenes"), str(tmp_path / "out"),
                                   "--scenes"])
    assert res.exit_code == 1, res.output
    assert "1 input(s) failed" in res.output and "a_photo.tif: 3 band(s) of uint8, not a label raster" in res.output
    assert "3 scene(s) translated" in res.output
    got = _pixels(tmp_path / "out")
    assert sorted(got) == ["labels_0.tif", "labels_1.tif", "labels_2.tif"]
    for name in got:
        predict_scene(root / "run", root / "scenes" / name, tmp_path / "single" / name, PredictOptions(progress=False))
    single = _pixels(tmp_path / "single")
    for name, (data, mask, transform) in got.items():
        assert np.array_equal(data, single[name][0]) and np.array_equal(mask, single[name][1])
        assert transform == single[name][2]
    meta = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert (meta["written"], meta["failed"]) == (3, 1)
    # a rerun keeps what this checkpoint and these options made; other options predict again
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.tif")}
    res = CliRunner().invoke(cli, ["predict", str(root / "run"), str(root / "scenes"), str(tmp_path / "out"),
                                   "--scenes"])
    assert "0 scene(s) translated, 3 already there" in res.output
    assert before == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.tif")}
    res = CliRunner().invoke(cli, ["predict", str(root / "run"), str(root / "scenes"), str(tmp_path / "out"),
                                   "--scenes", "--overlap", "4"])
    assert "3 scene(s) translated, 0 already there" in res.output


@pytest.mark.parametrize("parallel", [["--workers", "2"], ["--dask", "local:2"]], ids=["workers", "dask"])
def test_parallel_runs_give_the_same_rasters(setup, tmp_path, parallel):
    if parallel[0] == "--dask":
        pytest.importorskip("distributed", reason="p2ptools[dask] is not installed")
    root = setup
    listing = tmp_path / "scenes.txt"
    listing.write_text("".join(f"{root / 'scenes' / f'labels_{i}.tif'}\n" for i in range(3)))
    outs = {}
    for name, extra in (("one", []), ("many", parallel)):
        res = CliRunner().invoke(cli, ["predict", str(root / "run"), str(listing), str(tmp_path / name), *extra])
        assert res.exit_code == 0, res.output
        outs[name] = _pixels(tmp_path / name)
    assert outs["one"].keys() == outs["many"].keys() and len(outs["one"]) == 3
    for name, (data, mask, _) in outs["one"].items():
        assert np.array_equal(data, outs["many"][name][0]) and np.array_equal(mask, outs["many"][name][1])


def test_many_scene_errors(setup, tmp_path):
    root = setup
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(cli, ["predict", str(root / "run"), str(tmp_path / "empty"), str(tmp_path / "o"),
                                   "--scenes"])
    assert res.exit_code == 1 and "holds no rasters" in res.output
    res = CliRunner().invoke(cli, ["predict", str(root / "run"), str(root / "scenes" / "labels_0.tif"),
                                   str(tmp_path / "o.tif"), "--workers", "2"])
    assert res.exit_code == 2 and "for many scenes" in res.output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    res = CliRunner().invoke(cli, ["predict", str(root / "run"), str(root / "scenes"), str(tmp_path / "mine"),
                                   "--scenes"])
    assert res.exit_code == 1 and "notes.txt" in res.output and (tmp_path / "mine" / "notes.txt").is_file()


@pytest.fixture
def three_gpus(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)


def test_local_workers_spread_over_the_gpus(three_gpus):
    from p2ptools.inference.scenes import worker_device

    assert [worker_device("cuda", i) for i in range(5)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    assert [worker_device("auto", i) for i in range(4)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    assert {worker_device(spec, i) for spec in ("cuda:2",) for i in range(4)} == {"cuda:2"}  # explicit: kept
    assert worker_device("cpu", 1) == "cpu"


def test_one_gpu_or_none_keeps_the_device(monkeypatch):
    import torch

    from p2ptools.inference.scenes import worker_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert worker_device("cuda", 3) == "cuda" and worker_device("auto", 1) == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_device("auto", 1) == "auto"


@pytest.mark.parametrize(("device", "workers", "expected"), [
    ("cuda", 2, {"cuda:0", "cuda:1", "cuda:2"}), ("auto", 2, {"cuda:0", "cuda:1", "cuda:2"}),
    ("cuda:2", 2, {"cuda:2"}), ("cuda", 1, {"cuda"})])
def test_each_worker_is_given_its_gpu(setup, tmp_path, monkeypatch, three_gpus, device, workers, expected):
    """Workers are forked processes (the mocks go with them); each one keeps one GPU for all its scenes."""
    import os
    import time
    from types import SimpleNamespace

    from p2ptools.inference import mosaic, scenes

    given = tmp_path / "given"
    given.mkdir()

    def fake_predict_scene(ckpt, scene, out, options, tags=None):
        (given / Path(scene).name).write_text(f"{os.getpid()} {options.device}")
        time.sleep(0.2)  # every worker gets scenes
        return SimpleNamespace(seconds=0.0, tiles=0)

    monkeypatch.setattr(mosaic, "predict_scene", fake_predict_scene)
    scenes.predict_scenes(setup / "run", setup / "scenes", tmp_path / "out", PredictOptions(device=device),
                          workers=workers)
    seen = [p.read_text().split() for p in given.iterdir()]
    by_pid = {pid: {d for p, d in seen if p == pid} for pid, _ in seen}
    assert len(seen) == 4 and all(len(d) == 1 for d in by_pid.values())
    devices = [d.pop() for d in by_pid.values()]
    assert set(devices) <= expected
    if len(expected) > 1:
        assert len(set(devices)) == len(devices)  # one GPU per worker, none shared
    if workers > 1:
        assert len(by_pid) == workers and os.getpid() not in {int(p) for p in by_pid}
