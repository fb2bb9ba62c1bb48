"""The int8 engine (--amp int8): ONNX Runtime static quantization of the phase-form graph, calibrated on
the run's own tiles; close to fp32, deterministic, cached, refused where it cannot run."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import rasterio
import torch
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.errors import ConfigError
from tests.conftest import small_pairs, write_tif

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'p2ptools[onnx]')")
pytest.importorskip("onnx", reason="the onnx extra (pip install 'p2ptools[onnx]')")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("P2PTOOLS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


def _folder(tiny_run, images, out, *amp):
    res = run("predict", tiny_run, images, out, *amp)
    assert res.exit_code == 0, res.output
    return {p.name: cv2.imread(str(p)) for p in sorted(out.glob("*.png"))}, res.output


def test_folder_int8_is_close_to_fp32_deterministic_and_cached(tiny_run, tmp_path, cache, monkeypatch, caplog):
    images = small_pairs(tmp_path / "ds") / "val"
    fp32, _ = _folder(tiny_run, images, tmp_path / "fp32", "--amp", "none", "--engine", "onnxruntime")
    with caplog.at_level("INFO"):
        int8, said = _folder(tiny_run, images, tmp_path / "int8", "--amp", "int8")
    text = said + caplog.text
    assert "int8: calibrating on 8 tiles of" in text and "the first 2 of val/ and the first 6 of train/" in text
    assert "engine: onnxruntime-int8 (--engine auto: --amp int8)" in text
    assert fp32.keys() == int8.keys() and len(int8) == 2
    for name in fp32:
        assert psnr(int8[name], fp32[name]) >= 30
    assert any(np.any(int8[n] != fp32[n]) for n in fp32)  # int8 did run: not fp32's pixels
    entries = sorted(cache.glob("*.onnx"))
    assert len(entries) == 2  # the fp32 graph and the int8 graph

    def no_quantizing(*args):
        raise AssertionError("quantized again: the int8 graph was not read from the cache")

    monkeypatch.setattr("p2ptools.inference.quantize._quantize", no_quantizing)
    again, _ = _folder(tiny_run, images, tmp_path / "again", "--amp", "int8", "--engine", "onnxruntime-int8")
    assert sorted(cache.glob("*.onnx")) == entries
    for name in int8:
        assert np.array_equal(again[name], int8[name])


def test_whole_scene_int8_is_close_to_fp32_with_the_same_georeference(tiny_run, tmp_path, cache):
    write_tif(tmp_path / "scene.tif", np.random.default_rng(0).integers(0, 255, (3, 90, 70), np.uint8))
    for name, amp in (("fp32", ["--amp", "none", "--engine", "onnxruntime"]), ("int8", ["--amp", "int8"])):
        res = run("predict", tiny_run, tmp_path / "scene.tif", tmp_path / f"{name}.tif", *amp)
        assert res.exit_code == 0, res.output
    with rasterio.open(tmp_path / "fp32.tif") as a, rasterio.open(tmp_path / "int8.tif") as b:
        assert (a.crs, a.transform, a.shape) == (b.crs, b.transform, b.shape)
        assert psnr(b.read(), a.read()) >= 30


def test_refusals_are_one_line(tiny_run, tmp_path, cache):
    images = small_pairs(tmp_path / "ds") / "val"
    res = run("predict", tiny_run, images, tmp_path / "t", "--engine", "torch", "--amp", "int8")
    assert res.exit_code == 1 and "--engine torch runs fp32, bf16, fp16; --amp int8 is for --engine onnxruntime-int8" \
        in res.output and "Traceback" not in res.output
    for extra in (["--dropout", "on"], ["--batch-stats", "on"]):
        res = run("predict", tiny_run, images, tmp_path / "d", "--amp", "int8", *extra)
        assert res.exit_code == 1 and "training mode" in res.output and "onnxruntime-int8" in res.output, res.output
        assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    res = run("predict", tiny_run, images, tmp_path / "o", "--engine", "onnxruntime", "--amp", "int8")
    assert res.exit_code == 1 and "--amp int8 is for --engine onnxruntime-int8" in res.output
    res = run("train", tmp_path / "ds", "--out", tmp_path / "run", "--amp", "int8")
    assert res.exit_code == 2 and "int8" in res.output  # not a training precision


def test_int8_is_refused_without_onnxruntime_on_a_gpu_and_without_the_runs_tiles(tiny_run, tmp_path, cache,
                                                                                 monkeypatch):
    from p2ptools.inference.engine import EngineRequest, make_engine
    from p2ptools.model.checkpoints import load_generator

    G, mcfg, meta = load_generator(tiny_run)
    with pytest.raises(ConfigError, match="runs on cpu; the device is cuda .int8 runs on cpu only"):
        make_engine(G, meta, EngineRequest(3, 32, torch.device("cuda"), "int8"), "auto")
    moved = {**meta, "train_config": {**meta["train_config"], "dataset": str(tmp_path / "gone")}}
    with pytest.raises(ConfigError, match="calibrates on the run's own tiles: .*gone"):
        make_engine(G, moved, EngineRequest(3, 32, torch.device("cpu"), "int8"), "auto")
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)  # import fails as if not installed
    for engine in ("auto", "onnxruntime-int8"):
        with pytest.raises(ConfigError, match="--amp int8 needs ONNX Runtime and onnx"):
            make_engine(G, meta, EngineRequest(3, 32, torch.device("cpu"), "int8"), engine)


def test_auto_never_picks_int8_on_its_own(tiny_run, tmp_path, cache, monkeypatch):
    from p2ptools.inference.engine import ENGINES, EngineRequest, make_engine
    from p2ptools.model.checkpoints import load_generator
    from p2ptools.runtime.device import resolve_amp

    assert ENGINES["onnxruntime-int8"].auto is False
    G, mcfg, meta = load_generator(tiny_run)
    cpu = torch.device("cpu")
    for amp in ("auto", "none", "bf16"):
        assert resolve_amp(amp, cpu) != "int8"
        assert "int8" not in make_engine(G, meta, EngineRequest(3, 32, cpu, amp), "auto").name
    monkeypatch.setattr("p2ptools.runtime.device.resolve_amp", lambda amp, dev: "none")
    assert make_engine(G, meta, EngineRequest(3, 32, cpu, "auto"), "auto").name == "onnxruntime fp32"
