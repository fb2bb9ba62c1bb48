"""ONNX export: the file runs without p2ptools and gives the generator's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from p2ptools.cli.main import cli

ort = pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'p2ptools[onnx]')")
onnx = pytest.importorskip("onnx", reason="the onnx extra (pip install 'p2ptools[onnx]')")
OFFICIAL = Path(__file__).resolve().parents[1] / "data" / "official"


def test_export_of_an_official_generator_runs_as_the_readme_shows(tmp_path):
    res = CliRunner().invoke(cli, ["export", str(OFFICIAL / "unet" / "latest_net_G.pth"), str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    diff = float(res.output.rsplit("max |difference|", 1)[1])
    assert diff < 1e-4 and "multiples of 128" in res.output
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["direction"] == "AtoB" and "[-1, 1]" in meta["normalisation"] and meta["multiple"] == "128"
    assert json.loads(meta["model_config"])["num_downs"] == 7
    # the README's lines, without p2ptools: A half of an A|B input → the official test output
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    for src in sorted((OFFICIAL / "inputs").glob("*.png")):
        a = Image.open(src).convert("RGB").crop((0, 0, 128, 128))
        x = np.asarray(a, np.float32).transpose(2, 0, 1)[None] / 127.5 - 1
        y = sess.run(None, {"input": x})[0][0]
        out = ((y.transpose(1, 2, 0) + 1) * 127.5).clip(0, 255).astype(np.uint8)  # the official truncation
        expected = np.asarray(Image.open(OFFICIAL / "unet" / "expected" / f"{src.stem}_fake_B.png").convert("RGB"))
        d = np.abs(out.astype(int) - expected.astype(int))
        assert d.mean() <= 0.5 and d.max() <= 3
    y = sess.run(None, {"input": np.zeros((3, 3, 256, 384), np.float32)})[0]  # dynamic batch and size
    assert y.shape == (3, 3, 256, 384)


def test_export_of_a_p2ptools_run_carries_its_contract(tiny_run, tmp_path):
    res = CliRunner().invoke(cli, ["export", str(tiny_run), str(tmp_path / "t.onnx")])
    assert res.exit_code == 0, res.output
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "t.onnx")).metadata_props}
    assert json.loads(meta["model_config"])["name"] == "tiny" and "data_contract" in meta  # null: no dataset.json
    res = CliRunner().invoke(cli, ["export", str(tiny_run), str(tmp_path / "t.bin")])
    assert res.exit_code == 1 and "name the exported file .onnx" in res.output


def test_export_replaces_only_its_own_file_and_only_with_overwrite(tiny_run, tmp_path):
    theirs = tmp_path / "theirs.onnx"
    theirs.write_bytes(b"someone else's model")
    for extra in ([], ["--overwrite"]):
        res = CliRunner().invoke(cli, ["export", str(tiny_run), str(theirs), "--no-check", *extra])
        assert res.exit_code == 1 and f"{theirs}: exists and was not written by p2ptools" in res.output, res.output
    assert theirs.read_bytes() == b"someone else's model"
    link = tmp_path / "link.onnx"
    link.symlink_to(theirs)
    res = CliRunner().invoke(cli, ["export", str(tiny_run), str(link), "--no-check", "--overwrite"])
    assert res.exit_code == 1 and f"{link}: is a link" in res.output, res.output
    assert link.is_symlink() and theirs.read_bytes() == b"someone else's model"
    own = tmp_path / "own.onnx"
    res = CliRunner().invoke(cli, ["export", str(tiny_run), str(own), "--no-check"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["export", str(tiny_run), str(own), "--no-check"])
    assert res.exit_code == 1 and "(an earlier p2ptools export); use --overwrite" in res.output, res.output
    res = CliRunner().invoke(cli, ["export", str(tiny_run), str(own), "--no-check", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert any(p.key == "p2ptools_version" for p in onnx.load(str(own)).metadata_props)
