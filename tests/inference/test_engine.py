"""Engines: ONNX Runtime gives torch fp32's pixels on every predict path, and auto says what it chose."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.errors import ConfigError
from tests.conftest import small_pairs, write_tif

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'p2ptools[onnx]')")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _close(a: np.ndarray, b: np.ndarray) -> None:
    d = np.abs(a.astype(int) - b.astype(int))
    assert d.mean() <= 0.5 and d.max() <= 3, (d.mean(), d.max())


def test_folder_and_whole_scene_give_torch_fp32_pixels(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    images = small_pairs(tmp_path / "ds") / "val"
    for engine in ("torch", "onnxruntime"):
        res = run("predict", tiny_run, images, tmp_path / engine, "--engine", engine, "--amp", "none")
        assert res.exit_code == 0, res.output
    import cv2

    for p in (tmp_path / "torch").glob("*.png"):
        _close(cv2.imread(str(p)), cv2.imread(str(tmp_path / "onnxruntime" / p.name)))
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx"))  # exported once, cached
    write_tif(tmp_path / "scene.tif", np.random.default_rng(0).integers(0, 255, (3, 90, 70), np.uint8))
    for engine in ("torch", "onnxruntime"):
        res = run("predict", tiny_run, tmp_path / "scene.tif", tmp_path / f"{engine}.tif", "--engine", engine,
                  "--amp", "none")
        assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "torch.tif") as a, rasterio.open(tmp_path / "onnxruntime.tif") as b:
        _close(a.read(), b.read())


def test_auto_says_what_it_chose_and_wrong_combinations_are_refused(tiny_run, tmp_path, monkeypatch):
    from p2ptools.inference.engine import EngineRequest, OnnxRuntimeEngine, TorchEngine, make_engine
    from p2ptools.model.checkpoints import load_generator
    from p2ptools.runtime import progress

    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    said = []
    monkeypatch.setattr("p2ptools.inference.engine.report", lambda msg, *a: said.append(msg % a))
    G, mcfg, meta = load_generator(tiny_run)
    cpu = torch.device("cpu")
    assert isinstance(make_engine(G, meta, EngineRequest(3, 32, cpu, "none"), "auto"), OnnxRuntimeEngine)
    assert "engine: onnxruntime (--engine auto: CPU without native bf16" in said[-1]
    monkeypatch.setattr("p2ptools.runtime.device.resolve_amp", lambda amp, dev: "bf16")
    assert isinstance(make_engine(G, meta, EngineRequest(3, 32, cpu, "auto"), "auto"), TorchEngine)
    assert "engine: torch bf16 (--engine auto: native bf16)" in said[-1]
    with pytest.raises(ConfigError, match="runs fp32"):
        make_engine(G, meta, EngineRequest(3, 32, cpu, "bf16"), "onnxruntime")
    res = run("predict", tiny_run, small_pairs(tmp_path / "ds") / "val", tmp_path / "p", "--engine", "onnxruntime",
              "--dropout", "on")
    assert res.exit_code == 1 and "use --engine torch" in res.output
    assert progress  # the module the engine reports through
