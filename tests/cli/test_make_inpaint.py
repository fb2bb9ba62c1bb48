"""``p2ptools make-inpaint`` through the command line, on real photos and built edge cases."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import skimage.data
from click.testing import CliRunner
from PIL import Image

from p2ptools.cli.main import cli
from p2ptools.prep.images import load_rgb8
from p2ptools.prep.images import load_rgb8 as read_image
from tests.conftest import shared_path


def run(*args: object):
    return CliRunner().invoke(cli, ["make-inpaint", *map(str, args)], catch_exceptions=False)


def _photos(root):
    root.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        cv2.imwrite(str(root / f"{name}.jpg"), cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR))
    (root / "more").mkdir()
    cv2.imwrite(str(root / "more" / "camera.png"), skimage.data.camera())  # grayscale
    return root


def test_real_photos_seed_protocol(tmp_path):
    src = _photos(tmp_path / "photos")
    out = tmp_path / "out"
    res = run(src, out, "--size", 96, "--save-masks", "--split", "0.6,0.2,0.2")
    assert res.exit_code == 0, res.output
    man = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert len(man) == 5 and (man.status == "ok").all()
    assert set(man.hole) == {"32 32 32 32"}  # a third of each side, centred
    for r in man.itertuples():
        ab = read_image(out / r.file)
        a, b = ab[:, :96], ab[:, 96:]
        mask = cv2.imread(str(out / "masks" / r.split / f"{r.name}.png"), cv2.IMREAD_GRAYSCALE) > 0
        assert ab.shape == (96, 192, 3) and mask.sum() * 9 == 96 * 96
        assert (a[32:64, 32:64] == 255).all() and np.array_equal(a[~mask], b[~mask])
    assert man.set_index("source").loc["more/camera.png", "src_width"] == 512
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["kind"] == "inpaint" and meta["complete"] and meta["params"]["hole"] == "center"


def test_duplicates_are_reported_and_share_a_split(tmp_path):
    src = tmp_path / "dups"
    src.mkdir()
    facades = sorted(shared_path("facades", "train").glob("*.jpg"))[:30]
    for p in facades:
        shutil.copy(p, src / p.name)
    for p in facades[:5]:  # the same picture under another name, and losslessly re-encoded
        shutil.copy(p, src / f"copy_{p.name}")
    pixels = load_rgb8(src / facades[0].name)  # the decoded pixels, saved losslessly as PNG
    cv2.imwrite(str(src / "again.png"), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    res = run(src, out, "--size", 64, "--split", "0.5,0.25,0.25", "--workers", 2)
    assert res.exit_code == 0, res.output
    assert "5 group(s) of duplicate images" in res.output
    man = pd.read_csv(out / "manifest.csv", keep_default_na=False).set_index("source")
    for p in facades[:5]:
        assert man.loc[f"copy_{p.name}", "duplicate_of"] == p.name
        assert man.loc[f"copy_{p.name}", "split"] == man.loc[p.name, "split"]
    assert man.loc["again.png", "split"] == man.loc[facades[0].name, "split"]
    assert set(man.split) == {"train", "val", "test"}


def test_every_input_kind_becomes_rgb8(tmp_path):
    src = tmp_path / "kinds"
    src.mkdir()
    cv2.imwrite(str(src / "gray16.png"), (np.arange(100 * 100).reshape(100, 100) * 6).astype(np.uint16))
    rgba = np.zeros((100, 120, 4), np.uint8)
    rgba[..., 3] = 0
    Image.fromarray(rgba).save(src / "clear.png")
    img = Image.fromarray(np.full((80, 120, 3), 40, np.uint8))
    exif = img.getexif()
    exif[0x0112] = 8
    img.save(src / "phone.jpg", exif=exif)
    Image.fromarray(np.full((100, 100), 7, np.uint8)).convert("P").save(src / "pal.png")
    out = tmp_path / "out"
    res = run(src, out, "--size", 48, "--split", "1,0,0")
    assert res.exit_code == 0, res.output
    clear = read_image(out / "train" / "clear.png")
    assert (clear == 255).all()  # transparent → white, and a white hole
    assert read_image(out / "train" / "pal.png")[0, 30].tolist() == [7, 7, 7]
    man = pd.read_csv(out / "manifest.csv").set_index("source")
    assert tuple(man.loc["phone.jpg", ["src_width", "src_height"]]) == (80, 120)  # EXIF applied


def test_bad_inputs_are_listed_and_skipped(tmp_path):
    src = _photos(tmp_path / "mixed")
    (src / "zero.jpg").write_bytes(b"")
    (src / "notes.png").write_text("not an image")
    data = (src / "coffee.jpg").read_bytes()
    (src / "cut.jpg").write_bytes(data[: len(data) // 3])
    cv2.imwrite(str(src / "tiny.png"), np.zeros((20, 30, 3), np.uint8))
    out = tmp_path / "out"
    res = run(src, out, "--size", 96)
    assert res.exit_code == 1
    assert "4 input(s) failed" in res.output
    assert "zero.jpg: empty file" in res.output and "notes.png: cannot decode" in res.output
    assert "cut.jpg" in res.output and "tiny.png: 30×20 is smaller than the 32-px hole" in res.output
    assert "Traceback" not in res.output
    assert len(list(out.glob("*/*.png"))) == 5  # the good ones are all there
    assert not list(out.rglob("*.tmp"))
    man = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    assert (man.status == "skipped").sum() == 4


def test_resume_and_changed_inputs(tmp_path):
    src = _photos(tmp_path / "photos")
    out = tmp_path / "out"
    assert run(src, out, "--size", 64).exit_code == 0
    victim = next(out.glob("*/*.png"))
    victim.unlink()
    keep = next(out.glob("*/*.png"))
    before = keep.stat().st_mtime_ns
    res = run(src, out, "--size", 64)
    assert res.exit_code == 0 and "written now: 1, already there: 4" in res.output
    assert victim.exists() and keep.stat().st_mtime_ns == before
    cv2.imwrite(str(src / "new.png"), skimage.data.camera())
    res = run(src, out, "--size", 64)
    assert res.exit_code == 1 and "holds a different inpaint dataset" in res.output
    assert "inputs added: 1 (new.png)" in res.output
    assert run(src, out, "--size", 64, "--overwrite").exit_code == 0


def test_no_images(tmp_path):
    (tmp_path / "empty").mkdir()
    res = run(tmp_path / "empty", tmp_path / "out")
    assert res.exit_code == 1 and "no images" in res.output
