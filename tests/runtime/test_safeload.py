"""Files from elsewhere are data: no torch file p2ptools reads can run code, and old checkpoints still load."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.errors import InputError
from p2ptools.model.checkpoints import load_checkpoint, set_rng_states
from p2ptools.runtime.safeload import UnsafeFileError, load_torch_file
from tests.conftest import small_pairs


class _Payload:
    """Unpickling this calls os.system (what a crafted checkpoint does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted_copy(run, tmp_path):
    copy = tmp_path / "shared run"
    shutil.copytree(run, copy)
    ckpt = torch.load(copy / "latest.pt", weights_only=False)
    marker = tmp_path / "code-ran"
    ckpt["extra"] = _Payload(marker)
    torch.save(ckpt, copy / "latest.pt")
    return copy, marker


def test_a_checkpoint_that_would_run_code_is_refused_by_predict_and_resume(tiny_run, tmp_path):
    run, marker = _crafted_copy(tiny_run, tmp_path)
    images = small_pairs(tmp_path / "imgs") / "val"
    res = CliRunner().invoke(cli, ["predict", str(run / "latest.pt"), str(images), str(tmp_path / "out")])
    assert res.exit_code == 1 and "refused" in res.output and "posix.system" in res.output, res.output
    assert "Traceback" not in res.output and not marker.exists()
    res = CliRunner().invoke(cli, ["train", "--resume", str(run)])
    assert res.exit_code == 1 and "refused" in res.output and not marker.exists()
    with pytest.raises(UnsafeFileError, match="nothing in it was run"):
        load_torch_file(run / "latest.pt")
    assert not marker.exists()


def test_checkpoints_hold_plain_data_and_older_numpy_states_still_load(tiny_run, tmp_path):
    from torch.serialization import get_unsafe_globals_in_checkpoint

    assert get_unsafe_globals_in_checkpoint(str(tiny_run / "latest.pt")) == []  # tensors and plain values only
    copy = tmp_path / "old"
    shutil.copytree(tiny_run, copy)
    ckpt = torch.load(copy / "latest.pt", weights_only=False)
    np.random.seed(7)
    ckpt["rng"]["numpy"] = np.random.get_state()  # how checkpoints before this change held it
    torch.save(ckpt, copy / "latest.pt")
    loaded = load_checkpoint(copy / "latest.pt")
    set_rng_states(loaded["rng"])
    np.random.seed(7)
    expected = np.random.rand()
    set_rng_states(loaded["rng"])
    assert np.random.rand() == expected
    res = CliRunner().invoke(cli, ["train", "--resume", str(copy), "--epochs", "2"])
    assert res.exit_code == 0, res.output
    assert "resuming" in res.output and "after epoch 1" in res.output


def test_a_segmenter_that_would_run_code_is_refused(tmp_path):
    from p2ptools.evaluation.segment import load_segmenter

    marker = tmp_path / "ran"
    torch.save({"format": "p2ptools-segmenter", "x": _Payload(marker)}, tmp_path / "segmenter.pt")
    with pytest.raises(UnsafeFileError):
        load_segmenter(tmp_path, torch.device("cpu"))
    assert not marker.exists()


def test_damaged_file_is_one_line_without_torch_advice(tmp_path):
    bad = tmp_path / "latest.pt"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(Exception) as err:
        load_checkpoint(bad)
    assert "cannot read this checkpoint" in str(err.value) and "weights_only" not in str(err.value)


def test_prediction_maps_checkpoints_and_reads_the_legacy_format_whole(tiny_run, tmp_path):
    """load_generator maps the file (only the generator's bytes are read); a checkpoint in torch's
    pre-1.6 format cannot be mapped and is read whole; both give the same generator, and a crafted
    legacy file is refused like any other."""
    from p2ptools.model.checkpoints import load_generator

    legacy = tmp_path / "legacy.pt"
    torch.save(torch.load(tiny_run / "latest.pt", weights_only=True), legacy, _use_new_zipfile_serialization=False)
    mapped, _, _ = load_generator(tiny_run / "latest.pt")
    whole, _, _ = load_generator(legacy)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(mapped(x), whole(x))
    assert all(torch.equal(a, b) for a, b in zip(mapped.state_dict().values(), whole.state_dict().values(),
                                                 strict=True))
    ckpt = torch.load(tiny_run / "latest.pt", weights_only=True)
    ckpt["extra"] = _Payload(tmp_path / "code-ran")
    torch.save(ckpt, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(InputError, match="not tensors and plain data|refused"):  # refused, never run
        load_torch_file(legacy, mmap=True)
    assert not (tmp_path / "code-ran").exists()
