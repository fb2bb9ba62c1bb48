"""Breaks found by an adversarial pass on #25 "Trust by construction", each kept as a test: a hard link
planted as a lock (a file outside OUT rewritten), crafted or damaged checkpoints and summaries (tracebacks
where one line is promised), and refusals that named the wrong reason. The per-rule tests live beside
their modules (tests/runtime/test_door.py, tests/runtime/test_name_records.py, tests/cli/test_bounded_images.py,
tests/test_config.py, tests/prep/test_archives.py, tests/inference/test_onnx_cache.py …).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from p2ptools.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_clean_line(res) -> None:
    """Exit 1 through click (no uncaught exception) and one line of output."""
    assert isinstance(res.exception, SystemExit), f"uncaught {res.exception!r}\n{res.output}"
    assert res.exit_code == 1, res.output
    assert len(res.output.strip().splitlines()) == 1, res.output


def _images(folder: Path, n: int = 2, size: int = 32) -> Path:
    from p2ptools.runtime.output import write_image

    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(folder / f"img{i}.png", rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    return folder


# --- rule 1: one door to the disk -------------------------------------------------------------------

def test_a_hard_link_planted_as_the_lock_never_changes_the_file_outside_out(tmp_path):
    """OUT/.p2ptools/lock hard-linked to a file outside OUT: the lock is opened without O_TRUNC but then
    ftruncate()d and rewritten (runtime/door.write_lock), so the outside file is truncated and replaced
    by 'pid=…' lines. Repro: mkdir -p O/.p2ptools; ln victim O/.p2ptools/lock; p2ptools pair A B O."""
    a, b = _images(tmp_path / "A"), _images(tmp_path / "B")
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("secret\n")
    before = _sha(victim)
    out = tmp_path / "O"
    (out / ".p2ptools").mkdir(parents=True)
    os.link(victim, out / ".p2ptools" / "lock")
    run("pair", a, b, out)  # refused or not: the outside file must be untouched
    assert _sha(victim) == before, victim.read_text()


def test_a_hard_link_planted_as_a_single_file_lock_never_changes_the_file_outside(tmp_path, tiny_run):
    """predict RUN scene.tif out.tif locks .out.tif.lock beside it: a hard link planted there is
    truncated and rewritten, then unlinked (no trace left)."""
    import rasterio
    from rasterio.transform import from_origin

    scene = tmp_path / "scene.tif"
    data = np.random.default_rng(0).integers(0, 255, (3, 64, 64)).astype("uint8")
    with rasterio.open(scene, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, 1, 1)) as dst:
        dst.write(data)
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("secret\n")
    before = _sha(victim)
    out = tmp_path / "res"
    out.mkdir()
    os.link(victim, out / ".out.tif.lock")
    run("predict", tiny_run, scene, out / "out.tif", "--device", "cpu")
    assert _sha(victim) == before, victim.read_text()


# --- rule 4: bounded networks / crafted checkpoints -------------------------------------------------

def _crafted(tmp_path: Path, tiny_run: Path, change) -> Path:
    ckpt = torch.load(tiny_run / "latest.pt", map_location="cpu", weights_only=False)
    change(ckpt)
    path = tmp_path / "crafted.pt"
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("change", [
    pytest.param(lambda c: c.pop("G"), id="no-G"),                                     # KeyError: 'G'
    pytest.param(lambda c: c["G"].update({"down.0.0.weight": torch.zeros(2, 2)}), id="G-shape"),
    pytest.param(lambda c: c["model_config"].update(in_channels=4), id="config-vs-weights"),
    pytest.param(lambda c: c.__setitem__("G", [1, 2]), id="G-a-list"),                # TypeError
])
@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_checkpoint_whose_weights_do_not_fit_is_refused_in_one_line(tmp_path, tiny_run, change, command):
    """A damaged or crafted checkpoint (missing G, tensors that do not match model_config) ends in a
    RuntimeError/KeyError/TypeError traceback from load_state_dict instead of one line naming the file."""
    ckpt = _crafted(tmp_path, tiny_run, change)
    inputs = _images(tmp_path / "in")
    args = (("predict", ckpt, inputs, tmp_path / "p", "--device", "cpu") if command == "predict"
            else ("export", ckpt, tmp_path / "g.onnx", "--no-check"))
    res = run(*args)
    _one_clean_line(res)
    assert str(ckpt) in res.output


def test_resume_from_a_damaged_checkpoint_is_refused_in_one_line(tmp_path, tiny_run):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    ckpt = torch.load(run_dir / "latest.pt", map_location="cpu", weights_only=False)
    ckpt.pop("G")
    torch.save(ckpt, run_dir / "latest.pt")
    res = run("train", "--resume", run_dir, "--epochs", "2", "--workers", "0", "--device", "cpu")
    assert isinstance(res.exception, SystemExit), f"uncaught {res.exception!r}\n{res.output}"
    assert res.exit_code == 1, res.output


# --- rule 5: damaged state / reports ----------------------------------------------------------------

def _set_col(i, value):
    def damage(text):
        header, row, *rest = text.splitlines(keepends=True)
        cols = row.split(",")
        cols[i] = value
        return header + ",".join(cols) + "".join(rest)
    return damage


@pytest.mark.parametrize("damage", [
    pytest.param(lambda t: t + "junk\n", id="trailing-junk-line"),  # TypeError in metrics.registry (re.fullmatch)
    pytest.param(_set_col(6, "xx"), id="n-not-a-number"),         # ValueError: int('xx')
    pytest.param(_set_col(2, "abc"), id="mean-not-a-number"),     # ValueError: float('abc')
])
def test_compare_with_a_damaged_summary_csv_is_refused_in_one_line(tmp_path, damage):
    real, fake = _images(tmp_path / "real", n=7), _images(tmp_path / "fake", n=7, size=32)
    for name in ("a", "b"):
        res = run("evaluate", "--real", real, "--fake", fake, "--out", tmp_path / name, "--metrics", "l1",
                  "--device", "cpu", "--workers", "0")
        assert res.exit_code == 0, res.output
    summary = tmp_path / "b" / "summary.csv"
    assert summary.read_text().splitlines()[0].split(",")[2] == "mean"
    summary.write_text(damage(summary.read_text()))
    res = run("evaluate", "--compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "cmp")
    _one_clean_line(res)
    assert "summary.csv" in res.output


# --- messages that mislead (refused, nothing written, but the wrong reason) -------------------------

@pytest.mark.parametrize("where", ["same", "around"])
def test_make_inpaint_into_or_around_its_input_names_the_overlap(tmp_path, where):
    """make-inpaint SRC SRC (or SRC's parent) says 'SRC: no images' although SRC holds images; every
    other command says 'the output folder is the input folder' / 'holds the input'."""
    src = _images(tmp_path / "outer" / "in", n=4, size=40)
    out = src if where == "same" else src.parent
    res = run("make-inpaint", src, out, "--size", "32")
    _one_clean_line(res)
    assert "no images" not in res.output and ("input folder" in res.output or "holds the input" in res.output)


def test_train_resume_with_a_planted_link_names_the_link(tmp_path, tiny_run):
    """A link planted at RUN/latest.pt is refused, but as 'RUN: is a p2ptools training run folder …; it
    is not an output folder of this command' — said to train --resume, whose output folder it is."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    real = tmp_path / "elsewhere.pt"
    (run_dir / "latest.pt").rename(real)
    (run_dir / "latest.pt").symlink_to(real)
    res = run("train", "--resume", run_dir, "--epochs", "2", "--workers", "0", "--device", "cpu")
    assert isinstance(res.exception, SystemExit) and res.exit_code == 1, res.output
    error = res.output.strip().splitlines()[-1]  # after the "resume RUN: epochs: 1 → 2" notes
    assert "link" in error and "not an output folder of this command" not in error, error
