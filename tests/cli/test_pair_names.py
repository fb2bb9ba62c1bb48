"""``pair`` and ``unpair`` with file names holding line breaks, control characters or bytes that are not UTF-8:
a rerun resumes and ``--overwrite`` replaces p2ptools' own outputs (never refused as foreign)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.runtime.output import write_image

LINUX = sys.platform.startswith("linux")  # other file systems refuse names that are not UTF-8
NAMES = [pytest.param("a\nb", id="newline"), pytest.param("t\tx\x01y\r", id="controls"),
         pytest.param(os.fsdecode(b"caf\xe9"), id="not-utf8",
                      marks=pytest.mark.skipif(not LINUX, reason="names that are not UTF-8"))]


def run(*args: object):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


def _images(folder, names, seed):
    rng = np.random.default_rng(seed)
    for name in names:
        write_image(folder / f"{name}.png", rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", NAMES)
def test_pair_reruns_and_overwrites_its_own_outputs(tmp_path, name):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    _images(a, [name, "plain"], 0), _images(b, [name, "plain"], 1)
    res = run("pair", a, b, out)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.png")) == sorted([f"{name}.png", "plain.png"])
    res = run("pair", a, b, out)  # resumes
    assert res.exit_code == 0, res.output
    _images(a, ["extra"], 2), _images(b, ["extra"], 3)
    res = run("pair", a, b, out, "--overwrite")  # another set of inputs: replaces what p2ptools wrote
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.glob("*.png")) == sorted([f"{name}.png", "plain.png", "extra.png"])
    (out / "mine.txt").write_text("not p2ptools'")  # a foreign file is still refused
    res = run("pair", a, b, out, "--overwrite")
    assert res.exit_code == 1 and "mine.txt" in res.output


@pytest.mark.parametrize("name", NAMES)
def test_unpair_reruns_in_a_folder_of_any_name(tmp_path, name):
    src = tmp_path / name / "ab"
    _images(src / "train", [name], 0)
    for _ in range(2):
        res = run("unpair", src, tmp_path / name / "split")
        assert res.exit_code == 0, res.output
    assert [p.name for p in (tmp_path / name / "split" / "A" / "train").iterdir()] == [f"{name}.png"]
