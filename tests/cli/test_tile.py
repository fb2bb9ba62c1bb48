"""``p2ptools tile`` driven through the real command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from p2ptools.cli.main import cli
from p2ptools.prep.images import load_rgb8 as read_image
from p2ptools.prep.labels import decolorize, palette_from_dict
from p2ptools.prep.tiling import split_ab, tile_count
from tests.conftest import ATLANTA, blocks_mask, linked_scene, photo, shared_path, write_tif


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def run(*args: object) -> "object":
    return CliRunner().invoke(cli, ["tile", *map(str, args)], catch_exceptions=False)


def tiles(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.glob("*/*.png"))


def test_sample_scene_end_to_end(tmp_path):
    out = tmp_path / "sample"
    res = run("--sample", out)
    assert res.exit_code == 0, res.output
    # the built-in recipe's data and tiling: NAIP pan → colour, 128 px at stride 64, blocks of 320 px
    assert f"58 pairs in {out} (train 32, val 18, test 8)" in res.output
    assert len(tiles(out)) == 58 and "no georeference" not in res.output
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["complete"] and meta["A"] == "photo" and meta["B"] == "photo"
    assert meta["palette"] is None and meta["contract"]["palette"] is None  # photo → photo: no label classes
    ab = read_image(sorted((out / "train").glob("*.png"))[0])
    a, b = split_ab(ab)
    assert ab.shape == (128, 256, 3) and (a[..., 0] == a[..., 2]).all() and not (b[..., 0] == b[..., 2]).all()
    # A is the mean of B's bands (the shipped pan band), to rounding
    assert np.abs(b.astype(float).mean(2) - a[..., 0]).max() <= 0.5 + 1e-9


def test_labelled_sample_scene_as_its_recipe_tiles_it(tmp_path):
    """The labelled SpaceNet Atlanta scene of the package: scene + mask → label|photo pairs by blocks."""
    from p2ptools.recipe import load_recipe, sample_root

    data = load_recipe("atlanta").data
    opts = [w for k, v in data.items() if k != "src"
            for w in (f"--{k}", ",".join(map(str, v)) if isinstance(v, list) else v)]
    out = tmp_path / "atl"
    res = run(sample_root(), out, *opts)
    assert res.exit_code == 0, res.output
    assert f"29 pairs in {out} (train 14, val 8, test 7)" in res.output and "no georeference" not in res.output
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["A"] == "label" and meta["palette"]["name"] == "inria"


def test_real_spacenet_pair_georeference_and_labels(tmp_path):
    """Real SpaceNet Atlanta image + its real building mask: each tile's georeference and label."""
    src = linked_scene(tmp_path / "src", "atl", *ATLANTA)
    out = tmp_path / "out"
    res = run(src, out, "--size", 128, "--edge", "drop", "--split-by", "scene")
    assert res.exit_code == 0, res.output
    man = pd.read_csv(out / "manifest.csv")
    assert len(man) == tile_count(900, 128, 128, "drop") ** 2 == 49
    with rasterio.open(src / "images" / "atl.tif") as ds:
        scene_t = ds.transform
        crs = ds.crs.to_string()
    with rasterio.open(src / "gt" / "atl.tif") as ms:
        mask = ms.read(1)
    pal = palette_from_dict(json.loads((out / "dataset.json").read_text())["palette"])
    for r in man.itertuples():
        expected = window_transform(Window(r.x, r.y, 128, 128), scene_t)
        assert tuple(map(float, r.transform.split())) == pytest.approx(tuple(expected)[:6])
        assert r.crs == crs and r.left == pytest.approx(expected.c) and r.top == pytest.approx(expected.f)
        window = mask[r.y : r.y + 128, r.x : r.x + 128]
        assert r.fg_fraction == pytest.approx((window == 255).mean(), abs=1e-6)
        assert bool(r.kept) == bool((window == 255).any())
        if r.kept:
            a, b = split_ab(read_image(out / r.file))
            assert np.array_equal(decolorize(a, pal), window)  # A decodes back to the mask exactly
            assert b.shape == (128, 128, 3) and (b[..., 0] == b[..., 1]).all()  # pan → 3 equal channels
    assert set(man.loc[~man.kept, "reason"]) <= {"empty"}


def test_real_georeferenced_road_pair(tmp_path, caplog):
    """SpaceNet Las Vegas: real uint16 image and road mask, both georeferenced (EPSG:4326)."""
    src = linked_scene(tmp_path / "src", "vegas", ("spacenet", "road_mask_input.tif"),
                       ("spacenet", "sample_road_raster_mask.tif"))
    out = tmp_path / "out"
    res = run(src, out, "--size", 256, "--keep-empty", 1)
    assert res.exit_code == 0, res.output
    assert "no georeference" not in res.output
    man = pd.read_csv(out / "manifest.csv")
    assert len(man) == tile_count(1300, 256, 256, "shift") ** 2 == 36
    assert (man.crs == "EPSG:4326").all() and man.x.max() == 1300 - 256
    assert man.fg_fraction.gt(0).any()


@pytest.mark.parametrize("edge", ["drop", "pad", "shift"])
def test_tile_counts_follow_the_window_formula(inria_root, tmp_path, edge):
    out = tmp_path / edge
    res = run(inria_root, out, "--edge", edge, "--keep-empty", 1, "--max-nodata", 1)
    assert res.exit_code == 0, res.output
    man = pd.read_csv(out / "manifest.csv")
    for scene, (h, w) in {"city0": (300, 520), "city1": (260, 260)}.items():
        n = tile_count(h, 256, 256, edge) * tile_count(w, 256, 256, edge)
        assert (man.scene == scene).sum() == n
    assert man.kept.all() and len(tiles(out)) == len(man)
    if edge == "pad":  # the padded strip counts as nodata and as background
        last = man[(man.scene == "city0") & (man.row == 1) & (man.col == 2)].iloc[0]
        assert last.y == 256 and last.x == 512
        assert last.nodata_fraction == pytest.approx(1 - (44 * 8) / 256**2)


def test_splits_are_by_scene_and_disjoint(tmp_path):
    root = tmp_path / "many"
    for i in range(10):
        write_tif(root / "images" / f"s{i}.tif", photo(128, 128, seed=i))
        write_tif(root / "gt" / f"s{i}.tif", blocks_mask(128, 128, [0, 255], block=32, seed=i))
    out = tmp_path / "out"
    res = run(root, out, "--size", 64, "--split", "0.6,0.2,0.2", "--seed", 5, "--keep-empty", 1)
    assert res.exit_code == 0, res.output
    man = pd.read_csv(out / "manifest.csv")
    per_scene = man.groupby("scene").split.nunique()
    assert (per_scene == 1).all()  # no scene in two splits
    counts = man.groupby("split").scene.nunique().to_dict()
    assert counts == {"train": 6, "val": 2, "test": 2}
    for split in ("train", "val", "test"):
        names = {p.name.rsplit("_", 2)[0] for p in (out / split).glob("*.png")}
        assert names == set(man.loc[man.split == split, "scene"])


def test_landcover_official_tile_lists(landcover_root, tmp_path):
    # LandCover.ai lists 512 tiles as <scene>_<k>, k row-major over complete tiles (2x2 here)
    (landcover_root / "train.txt").write_text("M-33-0_0\nM-33-0_3\nM-33-1_0\nM-33-1_1\nM-33-1_2\nM-33-1_3\n")
    (landcover_root / "val.txt").write_text("M-33-0_1\n")
    (landcover_root / "test.txt").write_text("M-33-0_2\n")
    out = tmp_path / "lc"
    res = run(landcover_root, out, "--size", 512, "--edge", "drop", "--keep-empty", 1)
    assert res.exit_code == 0, res.output
    man = pd.read_csv(out / "manifest.csv").set_index("tile_id")
    assert man.loc["M-33-0_0_1", "split"] == "val" and man.loc["M-33-0_1_0", "split"] == "test"
    assert (out / "val" / "M-33-0_0_1.png").exists() and (out / "test" / "M-33-0_1_0.png").exists()
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["palette"]["name"] == "landcover" and "official lists" in meta["split_source"]
    # five classes: the colorized A decodes to the mask, and per-class fractions are reported
    a, _ = split_ab(read_image(out / "val" / "M-33-0_0_1.png"))
    with rasterio.open(landcover_root / "masks" / "M-33-0.tif") as ms:
        window = ms.read(1, window=Window(512, 0, 512, 512))
    assert np.array_equal(decolorize(a, palette_from_dict(meta["palette"])), window)
    fr = man.loc["M-33-0_0_1", ["frac_background", "frac_building", "frac_woodland", "frac_water", "frac_road"]]
    assert fr.sum() == pytest.approx(1.0, abs=1e-5)


def test_min_foreground_and_keep_empty(inria_root, tmp_path):
    base = pd.read_csv(_tiled(inria_root, tmp_path / "a", "--keep-empty", 1) / "manifest.csv")
    strict = pd.read_csv(_tiled(inria_root, tmp_path / "b", "--min-foreground", 0.3) / "manifest.csv")
    assert set(strict.loc[strict.kept, "tile_id"]) == set(base.loc[base.fg_fraction >= 0.3, "tile_id"])
    one = pd.read_csv(_tiled(inria_root, tmp_path / "c", "--keep-empty", 0.5, "--seed", 1) / "manifest.csv")
    two = pd.read_csv(_tiled(inria_root, tmp_path / "d", "--keep-empty", 0.5, "--seed", 1) / "manifest.csv")
    assert one.equals(two)  # the kept share of empty tiles is deterministic


def _tiled(src: Path, out: Path, *args: object) -> Path:
    """Tile scenes whole (these tests look at tiles, not at splits)."""
    res = run(src, out, "--size", 64, "--split-by", "scene", *args)
    assert res.exit_code == 0, res.output
    return out


def test_nodata_and_alpha_tiles_are_dropped(tmp_path):
    root = tmp_path / "nd"
    img = photo(128, 128)
    img[:, :, :64] = 0  # left half nodata
    write_tif(root / "images" / "a.tif", img, nodata=0)
    write_tif(root / "gt" / "a.tif", np.full((128, 128), 255, np.uint8))
    out = _tiled(root, tmp_path / "out")
    man = pd.read_csv(out / "manifest.csv").set_index("tile_id")
    assert man.loc["a_0_0", "reason"] == "nodata" and man.loc["a_0_1", "reason"] == "kept"
    # real RGBA raster with a transparent collar: alpha band dropped, transparent tiles dropped
    src = tmp_path / "rgba"
    (src / "images").mkdir(parents=True)
    (src / "images" / "rgba.tif").symlink_to(shared_path("rasterio", "RGBA.byte.tif"))
    with rasterio.open(src / "images" / "rgba.tif") as ds:
        profile = ds.profile
        alpha = ds.read(4)
    write_tif(src / "gt" / "rgba.tif", np.full(alpha.shape, 255, np.uint8), crs=profile["crs"],
              transform=profile["transform"])
    out = _tiled(src, tmp_path / "rgba-out", "--size", 128)
    man = pd.read_csv(out / "manifest.csv")
    assert {"nodata", "kept"} <= set(man.reason)
    for r in man.itertuples():
        win = alpha[r.y : r.y + 128, r.x : r.x + 128]
        assert r.nodata_fraction == pytest.approx((win == 0).mean(), abs=1e-6)


def test_naip_rgbn_uses_rgb(tmp_path):
    src = tmp_path / "naip"
    (src / "images").mkdir(parents=True)
    (src / "images" / "n.tif").symlink_to(shared_path("naip", "m_4709963_se_14_1_20200831.tif"))
    with rasterio.open(src / "images" / "n.tif") as ds:
        rgb = ds.read([1, 2, 3], window=Window(0, 0, 256, 256))
        write_tif(src / "gt" / "n.tif", np.full((ds.height, ds.width), 255, np.uint8),
                  crs=ds.crs.to_string(), transform=ds.transform)
    out = _tiled(src, tmp_path / "out", "--size", 256, "--edge", "drop")
    _, b = split_ab(read_image(out / "train" / "n_0_0.png"))
    assert np.array_equal(b, np.moveaxis(rgb, 0, -1))  # 8-bit RGB copied exactly, NIR left out


def test_resume_skips_finished_tiles_and_rewrites_missing(inria_root, tmp_path):
    out = _tiled(inria_root, tmp_path / "out", "--keep-empty", 1)
    files = sorted(out.glob("*/*.png"))
    old = {p: p.stat().st_mtime_ns for p in files}
    # simulate an interrupted run: one scene unfinished, two of its tiles missing
    (out / ".p2ptools" / "scenes" / "city0.csv").unlink()
    gone = [p for p in files if p.name.startswith("city0")][:2]
    for p in gone:
        p.unlink()
    os.utime(files[-1], ns=(1, 1))
    res = run(inria_root, out, "--size", 64, "--keep-empty", 1)
    assert res.exit_code == 0, res.output
    assert "written now: 2" in res.output
    assert all(p.exists() for p in files)
    assert files[-1].stat().st_mtime_ns == 1  # finished work untouched
    assert all(p.stat().st_mtime_ns == old[p] for p in files[:-1] if p not in gone)


def test_workers_give_identical_output(inria_root, tmp_path):
    one = _tiled(inria_root, tmp_path / "one", "--keep-empty", 0.3)
    two = _tiled(inria_root, tmp_path / "two", "--keep-empty", 0.3, "--workers", 2)
    assert tiles(one) == tiles(two)
    assert all((one / t).read_bytes() == (two / t).read_bytes() for t in tiles(one))
    assert pd.read_csv(one / "manifest.csv").equals(pd.read_csv(two / "manifest.csv"))


def test_output_holding_another_dataset(inria_root, tmp_path):
    out = _tiled(inria_root, tmp_path / "out")
    res = run(inria_root, out, "--size", 128)
    assert res.exit_code == 1 and "holds a different tiles dataset" in res.output and "size: 64 → 128" in res.output
    assert len(tiles(out)) > 0  # nothing removed
    res = run(inria_root, out, "--size", 128, "--overwrite")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "dataset.json").read_text())["params"]["size"] == 128
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    res = run(inria_root, foreign)
    assert res.exit_code == 1 and "holds 1 file(s) p2ptools did not write (notes.txt)" in res.output


def test_overwrite_never_removes_a_users_files(inria_root, tmp_path):
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    (out / "train" / "keep_me.png").write_bytes(b"user data")
    for extra in ((), ("--overwrite",)):  # refused with or without --overwrite, naming the file
        res = run(inria_root, out, "--size", 64, *extra)
        assert res.exit_code == 1 and "train/keep_me.png" in res.output and "never removes" in res.output
    assert (out / "train" / "keep_me.png").read_bytes() == b"user data"
    (out / "train" / "keep_me.png").unlink()
    out = _tiled(inria_root, out)
    (out / "train" / "mine.txt").write_text("notes")  # a user's file added to a finished dataset
    res = run(inria_root, out, "--size", 128, "--overwrite")
    assert res.exit_code == 1 and "train/mine.txt" in res.output
    (out / "train" / "mine.txt").unlink()
    res = run(inria_root, out, "--size", 128, "--overwrite")
    assert res.exit_code == 0, res.output
    assert set(tiles(out)) == set(_kept(out)["file"])  # the 64-px tiles are gone, only the new ones are there
    assert json.loads((out / "dataset.json").read_text())["params"]["size"] == 128


def test_output_inside_the_input_is_refused(inria_root):
    res = run(inria_root, inria_root / "tiles")
    assert res.exit_code == 1 and "inside the input" in res.output
    assert not (inria_root / "tiles").exists()


def test_outputs_follow_the_umask(inria_root, tmp_path):
    out = _tiled(inria_root, tmp_path / "out")
    for p in [out / "dataset.json", out / "manifest.csv", next(out.glob("*/*.png"))]:
        assert p.stat().st_mode & 0o777 == 0o666 & ~_umask(), p


def test_webp_tiles_have_exactly_the_png_tiles_pixels(inria_root, tmp_path):
    png = _tiled(inria_root, tmp_path / "png")
    webp = _tiled(inria_root, tmp_path / "webp", "--format", "webp")
    pngs, webps = sorted(png.glob("*/*.png")), sorted(webp.glob("*/*.webp"))
    assert pngs and [p.relative_to(png).with_suffix("") for p in pngs] == [
        w.relative_to(webp).with_suffix("") for w in webps]
    for p, w in zip(pngs, webps, strict=True):
        same = cv2.imread(str(p), cv2.IMREAD_UNCHANGED), cv2.imread(str(w), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(*same)
    assert json.loads((webp / "dataset.json").read_text())["params"]["format"] == "webp"


def test_jpeg_and_direction(inria_root, tmp_path):
    out = _tiled(inria_root, tmp_path / "out", "--format", "jpg", "--direction", "photo2label")
    assert list(out.glob("*/*.jpg")) and not list(out.glob("*/*.png"))
    assert json.loads((out / "dataset.json").read_text())["A"] == "photo"


# --- bad input: one clear line naming the file, other scenes finished, exit 1 ---------------------

def _bad_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "bad"
    write_tif(root / "images" / "good.tif", photo(128, 128))
    write_tif(root / "gt" / "good.tif", blocks_mask(128, 128, [0, 255], block=32))
    (root / "images" / "corrupt.tif").symlink_to(shared_path("rasterio", "corrupt.tif"))
    with rasterio.open(root / "images" / "corrupt.tif") as ds:
        write_tif(root / "gt" / "corrupt.tif", np.full((ds.height, ds.width), 255, np.uint8),
                  crs=ds.crs.to_string(), transform=ds.transform)
    write_tif(root / "images" / "small.tif", photo(128, 128))
    write_tif(root / "gt" / "small.tif", blocks_mask(100, 128, [0, 255]))
    write_tif(root / "images" / "crs.tif", photo(128, 128))
    write_tif(root / "gt" / "crs.tif", blocks_mask(128, 128, [0, 255]), crs="EPSG:4326")
    write_tif(root / "images" / "shifted.tif", photo(128, 128))
    write_tif(root / "gt" / "shifted.tif", blocks_mask(128, 128, [0, 255]),
              transform=from_origin(500010.0, 4000000.0, 0.5, 0.5))
    write_tif(root / "images" / "nomask.tif", photo(128, 128))
    write_tif(root / "images" / "values.tif", photo(128, 128))
    write_tif(root / "gt" / "values.tif", blocks_mask(128, 128, [0, 3, 255, 7], block=16))
    return root


def test_bad_scenes_are_reported_and_the_rest_finished(tmp_path):
    root = _bad_dataset(tmp_path)
    out = tmp_path / "out"
    res = run(root, out, "--size", 64)
    assert res.exit_code == 1
    text = res.output
    assert "6 input(s) failed" in text
    assert "shifted.tif: mask geotransform" in text
    assert "corrupt.tif: cannot read" in text
    assert "small.tif: mask is 128×100 but photo small.tif is 128×128" in text
    assert "crs.tif: mask CRS EPSG:4326 differs" in text
    assert "nomask.tif: no mask with the same name" in text
    assert "values.tif: values outside palette 'inria' (0, 255): 3, 7" in text
    assert "Traceback" not in text
    assert sorted(p.name.split("_")[0] for p in out.glob("*/*.png")) == ["good"] * 4  # nothing of the others
    meta = json.loads((out / "dataset.json").read_text())
    assert not meta["complete"] and len(meta["failed"]) == 6
    assert set(pd.read_csv(out / "manifest.csv").scene) == {"good"}
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize(
    "args,message",
    [
        (["{empty}", "{out}"], "no raster files"),
        (["{tmp}/missing", "{out}"], "no such folder"),
        (["{tmp}", "{out}"], "cannot recognise the layout"),
        (["{inria}", "{out}", "--size", "100"], "multiple of 32"),
        (["{inria}", "{out}", "--split", "0.5,0.2"], "expected 3 comma-separated"),
        (["{inria}", "{out}", "--palette", "nonsense"], "neither a built-in palette"),
        (["{out}"], "give SRC OUT"),
    ],
)
def test_user_errors_are_one_line(inria_root, tmp_path, args, message):
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "gt").mkdir()
    subs = {"empty": tmp_path / "empty", "tmp": tmp_path, "out": tmp_path / "o", "inria": inria_root}
    res = run(*[a.format(**subs) for a in args])
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output


def test_config_file_with_cli_override(inria_root, tmp_path):
    cfg = tmp_path / "tile.yaml"
    cfg.write_text("tile:\n  size: 128\n  edge: drop\n  keep_empty: 1.0\n")
    out = tmp_path / "out"
    res = run(inria_root, out, "--config", cfg, "--edge", "pad")
    assert res.exit_code == 0, res.output
    params = json.loads((out / "dataset.json").read_text())["params"]
    assert params["size"] == 128 and params["edge"] == "pad"
    cfg.write_text("tile:\n  sise: 128\n")
    res = run(inria_root, tmp_path / "o2", "--config", cfg)
    assert res.exit_code == 1 and "unknown option(s) sise" in res.output


def _kept(out: Path) -> pd.DataFrame:
    m = pd.read_csv(out / "manifest.csv")
    return m[m["kept"]]


def test_block_split_of_one_scene_is_disjoint_with_a_buffer(tmp_path):
    src = tmp_path / "one"
    write_tif(src / "images" / "scene.tif", photo(640, 640))
    write_tif(src / "gt" / "scene.tif", blocks_mask(640, 640, [255], block=64))  # all foreground
    out = tmp_path / "out"
    res = run(src, out, "--size", 64, "--stride", 32, "--split-by", "block", "--block-size", 160,
              "--block-buffer", 32, "--split", "0.5,0.25,0.25")
    assert res.exit_code == 0, res.output
    kept = _kept(out)
    assert set(kept["split"]) == {"train", "val", "test"}
    assert (pd.read_csv(out / "manifest.csv")["reason"] == "split_buffer").sum() > 0
    rows = kept[["split", "x", "y"]].to_numpy()
    for i, (s1, x1, y1) in enumerate(rows):
        for s2, x2, y2 in rows[i + 1:]:
            if s1 != s2:  # tiles of two splits: no overlap, and at least the buffer apart
                gap = max(abs(int(x1) - int(x2)), abs(int(y1) - int(y2))) - 64
                assert gap >= 32, (s1, x1, y1, s2, x2, y2)
    # the same blocks and seed give the same splits on a fresh run
    res = run(src, tmp_path / "again", "--size", 64, "--stride", 32, "--split-by", "block", "--block-size", 160,
              "--block-buffer", 32, "--split", "0.5,0.25,0.25")
    assert _kept(tmp_path / "again")[["tile_id", "split"]].equals(kept[["tile_id", "split"]])


def test_one_scene_split_by_scene_says_val_and_test_stay_empty(tmp_path):
    src = tmp_path / "one"
    write_tif(src / "images" / "scene.tif", photo(128, 128))
    write_tif(src / "gt" / "scene.tif", blocks_mask(128, 128, [255]))
    res = CliRunner().invoke(cli, ["tile", str(src), str(tmp_path / "out"), "--size", "64", "--split-by", "scene"])
    assert res.exit_code == 0
    assert "1 scene(s) split by scene leave val and test empty" in res.stderr and "--split-by block" in res.stderr


def test_rerun_statistics_are_true_and_no_pairs_is_an_error(tmp_path):
    out = tmp_path / "s"
    assert run("--sample", out).exit_code == 0
    res = run("--sample", out)
    assert res.exit_code == 0 and "written now: 0, already there: 58" in res.output
    res = CliRunner().invoke(cli, ["tile", "--sample", str(tmp_path / "big"), "--size", "2048"])
    assert res.exit_code == 1 and "no pairs" in res.output and "dropped 1 nodata" in res.output
    assert "smaller than --size 2048 (e.g. naip: 934×724)" in res.output


def test_a_non_raster_is_one_clean_line(tmp_path):
    src = tmp_path / "fk"
    for d in ("images", "gt"):
        (src / d).mkdir(parents=True)
        (src / d / "fake.tif").write_text("not a tif")
    write_tif(src / "images" / "good.tif", photo(64, 64))
    write_tif(src / "gt" / "good.tif", blocks_mask(64, 64, [255]))
    res = CliRunner().invoke(cli, ["tile", str(src), str(tmp_path / "out"), "--size", "32"])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if "fake.tif" in ln]
    assert len(lines) == 1 and lines[0].count("not recognized") == 1, lines
    assert len(list((tmp_path / "out").glob("*/*.png"))) == 4  # the good scene was finished


def test_config_files_use_the_command_line_names(inria_root, tmp_path):
    cfg = tmp_path / "tile.yaml"
    cfg.write_text("tile:\n  size: 64\n  format: jpg\n  stretch: [1, 99]\n  jpeg-quality: 90\n  split-by: scene\n")
    res = CliRunner().invoke(cli, ["tile", str(inria_root), str(tmp_path / "out"), "--config", str(cfg)])
    assert res.exit_code == 0, res.output
    params = json.loads((tmp_path / "out" / "dataset.json").read_text())["params"]
    assert params["format"] == "jpg" and params["stretch"] == [1.0, 99.0] and params["jpeg_quality"] == 90
    cfg.write_text("fmt: jpg\n")
    res = CliRunner().invoke(cli, ["tile", str(inria_root), str(tmp_path / "o2"), "--config", str(cfg)])
    assert res.exit_code == 1 and "fmt was renamed: use format" in res.output
    cfg.write_text("sise: 64\n")
    res = CliRunner().invoke(cli, ["tile", str(inria_root), str(tmp_path / "o3"), "--config", str(cfg)])
    assert res.exit_code == 1 and "unknown option(s) sise" in res.output and "block-size" in res.output


def test_official_lists_refuse_tiles_that_straddle_two_official_tiles(landcover_root, tmp_path):
    (landcover_root / "train.txt").write_text("M-33-0_0\nM-33-0_1\n")
    (landcover_root / "val.txt").write_text("M-33-0_2\n")
    res = run(landcover_root, tmp_path / "a", "--size", 384)
    assert res.exit_code == 1 and "straddle two official tiles" in res.output
    res = run(landcover_root, tmp_path / "b", "--size", 512, "--stride", 256)
    assert res.exit_code == 1 and "--stride equal to it" in res.output


def test_geotiff_tiles_keep_georeference_bands_and_dtype(tmp_path):
    """--format tif: A/ labels (class values, palette colour table) and B/ photos (own dtype, every band,
    nodata), each with the tile's CRS and transform from the manifest."""
    src = tmp_path / "src"
    img = photo(100, 130, bands=4, dtype="uint16")
    write_tif(src / "images" / "s.tif", img, nodata=0)
    write_tif(src / "gt" / "s.tif", blocks_mask(100, 130, [0, 255], block=16))
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["tile", str(src), str(out), "--size", "64", "--format", "tif", "--split", "1,0,0"])
    assert res.exit_code == 0, res.output
    man = pd.read_csv(out / "manifest.csv")
    kept = man[man.kept]
    assert len(kept) == 6 and all(f.startswith("train/A/") for f in kept.file)  # 2 × 3 tiles, edge shift
    for r in kept.itertuples():
        with rasterio.open(out / r.file) as a, rasterio.open(out / r.file.replace("/A/", "/B/")) as b:
            assert (a.count, a.dtypes[0], b.count, b.dtypes[0]) == (1, "uint8", 4, "uint16")
            assert a.crs == b.crs == rasterio.crs.CRS.from_string(r.crs) and b.nodata == 0
            want = rasterio.Affine(*map(float, r.transform.split()))
            assert a.transform == b.transform == want
            assert np.array_equal(b.read(), img[:, r.y : r.y + 64, r.x : r.x + 64])  # native values, all bands
            assert set(np.unique(a.read(1))) <= {0, 255} and a.colormap(1)[255] == (255, 255, 255, 255)
            assert b.profile["compress"] == "deflate"
    contract = json.loads((out / "dataset.json").read_text())["contract"]["tif"]
    assert contract["A"] == {"role": "label", "dtype": "uint8"}
    assert (contract["B"]["dtype"], contract["B"]["bands"], contract["B"]["nodata"]) == ("uint16", 4, 0)


def test_dataset_stretch_is_one_for_all_scenes_and_kept_on_resume(tmp_path):
    """--stretch-scope dataset: one stretch from all scenes pooled (a dark scene stays darker than a
    bright one), stored in the contract, identical when recomputed on resume, and used by predict."""
    from p2ptools.contract import DataContract
    from p2ptools.inference.scene_plan import scene_stretch

    rng = np.random.default_rng(0)
    values = {"dark": rng.integers(1000, 2001, (1, 64, 64)), "bright": rng.integers(3000, 4001, (1, 64, 64))}
    for name, v in values.items():
        write_tif(tmp_path / "src" / "images" / f"{name}.tif", v.astype(np.uint16))
        write_tif(tmp_path / "src" / "gt" / f"{name}.tif", blocks_mask(64, 64, [0, 255], block=16, seed=1))
    for scope, out in (("scene", tmp_path / "per_scene"), ("dataset", tmp_path / "dataset")):
        res = run(tmp_path / "src", out, "--size", "32", "--split", "1,0,0", "--keep-empty", "1",
                  "--stretch-scope", scope)
        assert res.exit_code == 0, res.output
    pooled = np.concatenate([v.ravel() for v in values.values()])
    meta = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    expected = [[float(v) for v in np.percentile(pooled, (2, 98))]]  # integer percentiles here: exact
    assert meta["contract"]["photo"]["dataset_stretch"]["photo"] == expected
    assert meta["contract"]["photo"]["stretch_scope"] == "dataset"
    assert meta["contract"]["scenes"]["dark"]["stretch"] == expected

    def brightness(out: Path, scene: str) -> float:
        return float(np.mean([read_image(p)[:, 32:].mean() for p in (out / "train").glob(f"{scene}_*.png")]))

    per_scene = [brightness(tmp_path / "per_scene", s) for s in values]
    dataset = [brightness(tmp_path / "dataset", s) for s in values]
    assert abs(per_scene[0] - per_scene[1]) < 5  # each scene stretched to the full range by itself
    assert dataset[0] < 64 and dataset[1] > 192  # one stretch: dark stays dark, bright stays bright (~41, ~214)
    # resume after the record was lost: recomputed from every scene, done ones included
    del meta["contract"]["photo"]["dataset_stretch"]
    (tmp_path / "dataset" / "dataset.json").write_text(json.dumps(meta))
    res = run(tmp_path / "src", tmp_path / "dataset", "--size", "32", "--split", "1,0,0", "--keep-empty", "1",
              "--stretch-scope", "dataset")
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "dataset" / "dataset.json").read_text())["contract"]["photo"]
    assert again["dataset_stretch"]["photo"] == expected
    # predict applies the dataset's stretch, not the new scene's own percentiles
    contract = DataContract.from_dict(json.loads((tmp_path / "dataset" / "dataset.json").read_text())["contract"])
    with rasterio.open(tmp_path / "src" / "images" / "dark.tif") as ds:
        assert scene_stretch(ds, (1,), contract.photo) == tuple(map(tuple, expected))
        per = DataContract.from_dict(json.loads((tmp_path / "per_scene" / "dataset.json").read_text())["contract"])
        assert scene_stretch(ds, (1,), per.photo)[0][1] < 2001  # the scene's own 98th percentile
