"""Output folders: removals never leave OUT, and no two inputs are written to one file."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.runtime.output import contained, owned_files, remove_owned, write_image


def _images(folder, names, size=8):
    for i, name in enumerate(names):
        fmt = "jpg" if name.endswith(".jpg") else "png"
        write_image(folder / name, np.full((size, size, 3), 30 * i, np.uint8), fmt)
    return folder


def test_contained_follows_dotdot_absolute_paths_and_links(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (out / "link").symlink_to(tmp_path / "elsewhere")
    (out / "filelink.png").symlink_to(tmp_path / "precious.txt")
    assert contained(out, "sub/a.png") == out / "sub" / "a.png"
    assert contained(out, "sub/../a.png") == out / "sub" / ".." / "a.png"
    for bad in ("../precious.txt", "sub/../../precious.txt", str(tmp_path / "precious.txt"), "link/x.png",
                "filelink.png", ".", ""):
        assert contained(out, bad) is None, bad


def test_overwrite_never_removes_a_path_a_record_names_outside_out(tmp_path, caplog):
    a, b = _images(tmp_path / "A", ["x.png", "y.png"]), _images(tmp_path / "B", ["x.png", "y.png"])
    out = tmp_path / "out"
    assert CliRunner().invoke(cli, ["pair", str(a), str(b), str(out)]).exit_code == 0
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    (out / ".p2ptools" / "written" / "crafted.txt").write_text(f"../precious.txt\n{precious}\n")
    with (out / "manifest.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["file", "mask_file"], ["../precious.txt", str(precious)]])
    _images(a, ["z.png"]), _images(b, ["z.png"])  # another set of inputs: --overwrite replaces the dataset
    res = CliRunner().invoke(cli, ["pair", str(a), str(b), str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert precious.read_text() == "mine"
    assert "outside the folder" in res.output and "../precious.txt" in res.output
    assert "../precious.txt" not in owned_files(out)


def test_remove_owned_skips_escapes_but_removes_its_own(tmp_path):
    out = tmp_path / "out"
    _images(out, ["own.png"])
    keep = _images(tmp_path, ["keep.png"]) / "keep.png"
    assert remove_owned(out, {"own.png", "../keep.png", str(keep)}) == 1
    assert keep.exists() and not (out / "own.png").exists()


@pytest.mark.parametrize("names", [["x.png", "x.jpg"], ["x.PNG", "x.png"]])
def test_predict_refuses_two_inputs_with_one_output_before_writing(tiny_run, tmp_path, names):
    src = _images(tmp_path / "in", names, size=32)
    if len({p.name for p in src.iterdir()}) < 2:
        pytest.skip("case-insensitive file system")
    out = tmp_path / "preds"
    res = CliRunner().invoke(cli, ["predict", str(tiny_run), str(src), str(out)])
    assert res.exit_code == 1 and "would each be written from several inputs" in res.output, res.output
    assert "x.png ← " in res.output and not out.exists() or not any(out.glob("*.png"))


def test_unpair_and_make_inpaint_refuse_colliding_names(tmp_path):
    ab = tmp_path / "ab"
    write_image(ab / "x.png", np.zeros((8, 16, 3), np.uint8))
    (ab / "x.bmp").write_bytes((ab / "x.png").read_bytes())  # both would be written as A/x.png
    res = CliRunner().invoke(cli, ["unpair", str(ab), str(tmp_path / "u")])
    assert res.exit_code == 1 and "x.png ← x.bmp, x.png" in res.output, res.output
    assert not (tmp_path / "u").exists() or not any((tmp_path / "u").rglob("*.png"))
    src = tmp_path / "photos"
    _images(src, ["b.png", "a__b.png"], size=64)
    _images(src / "a", ["b.png"], size=64)
    res = CliRunner().invoke(cli, ["make-inpaint", str(src), str(tmp_path / "inp"), "--size", "64"])
    assert res.exit_code == 1 and "a__b ← " in res.output, res.output
