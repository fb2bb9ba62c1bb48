"""``p2ptools evaluate`` and ``p2ptools train-fcn`` through the command line."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from tests.conftest import ATLANTA, blocks_mask, linked_scene, photo


def run(*args: object):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


def _images(folder, n, seed=0, blur=0, kind="map"):
    """``n`` generated 64² images named seed..seed+n-1: map-like colour blocks, or photo-like textures."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        if kind == "map":
            mask = blocks_mask(64, 64, [0, 1, 2, 3], block=12, seed=seed + i)
            img = np.array([[230, 230, 230], [120, 200, 120], [200, 160, 90], [250, 250, 160]], np.uint8)[mask]
        else:
            img = np.ascontiguousarray(np.moveaxis(photo(64, 64, seed=seed + i), 0, -1))
        if blur:
            img = cv2.GaussianBlur(img, (0, 0), blur)
        cv2.imwrite(str(folder / f"{seed + i}.png"), img)
    return folder


def test_identical_folders_give_the_known_answers(tmp_path, fid_weights_dir):
    weights = fid_weights_dir
    real = _images(tmp_path / "real", 12)
    res = run("evaluate", "--real", real, "--fake", real, "--metrics", "l1,l2,psnr,ssim,fid,kid", "--out",
              tmp_path / "rep", "--weights-dir", weights, "--workers", "0", "--label", "same")
    assert res.exit_code == 0, res.output
    s = pd.read_csv(tmp_path / "rep" / "summary.csv").set_index("metric")
    assert s.loc["l1", "mean"] == 0 and s.loc["l2", "mean"] == 0 and s.loc["ssim", "mean"] == pytest.approx(1)
    assert s.loc["psnr", "mean"] == np.inf  # written as inf
    assert "inf" in (tmp_path / "rep" / "summary.csv").read_text()
    assert abs(s.loc["fid", "mean"]) < 1e-3
    assert "biased" in s.loc["fid", "note"] and "0–255" in s.loc["l1", "note"]
    # KID ≈ 0: negligible next to the KID of two different sets (its scale follows the features')
    photos = _images(tmp_path / "photos", 12, kind="photo")
    assert run("evaluate", "--real", real, "--fake", photos, "--metrics", "kid", "--out", tmp_path / "rep2",
               "--weights-dir", weights, "--workers", "0").exit_code == 0
    kid_diff = pd.read_csv(tmp_path / "rep2" / "summary.csv").set_index("metric").loc["kid", "mean"]
    assert kid_diff > 0 and abs(s.loc["kid", "mean"]) < 0.05 * kid_diff
    per = pd.read_csv(tmp_path / "rep" / "per_image.csv")
    assert len(per) == 12 and set(per.columns) == {"name", "l1", "l2", "psnr", "ssim"}


def test_worse_images_score_worse_and_compare(tmp_path):
    real = _images(tmp_path / "real", 8)
    a = _images(tmp_path / "a", 8, blur=1)
    b = _images(tmp_path / "b", 8, blur=3)
    for name, fake in (("mild", a), ("strong", b)):
        assert run("evaluate", "--real", real, "--fake", fake, "--out", tmp_path / name, "--label", name,
                   "--workers", "0").exit_code == 0
    res = run("evaluate", "--compare", tmp_path / "mild", tmp_path / "strong", "--out", tmp_path / "cmp")
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv").set_index("run")
    assert list(table.index) == ["mild", "strong"]
    assert table.loc["mild", "l1"] < table.loc["strong", "l1"]
    assert table.loc["mild", "ssim"] > table.loc["strong", "ssim"]


def test_masked_metrics(tmp_path):
    real = _images(tmp_path / "real", 3)
    fake = tmp_path / "fake"
    shutil.copytree(real, fake)
    masks = tmp_path / "masks"
    masks.mkdir()
    for p in fake.iterdir():
        img = cv2.imread(str(p))
        img[:32] = 0  # damage the top half only
        cv2.imwrite(str(p), img)
        m = np.zeros((64, 64), np.uint8)
        m[32:] = 255
        cv2.imwrite(str(masks / p.name), m)
    assert run("evaluate", "--real", real, "--fake", fake, "--out", tmp_path / "rep", "--mask-dir", masks,
               "--workers", "0").exit_code == 0
    assert (pd.read_csv(tmp_path / "rep" / "per_image.csv").l1 == 0).all()  # the bottom half is untouched


def test_mismatches_are_listed(tmp_path):
    real = _images(tmp_path / "real", 4)
    fake = _images(tmp_path / "fake", 4, seed=2)
    res = run("evaluate", "--real", real, "--fake", fake, "--out", tmp_path / "rep")
    assert res.exit_code == 1 and "do not match by name" in res.output and "only in" in res.output
    big = tmp_path / "big"
    shutil.copytree(real, big)
    p = next(big.iterdir())
    cv2.imwrite(str(p), cv2.resize(cv2.imread(str(p)), (80, 80)))
    res = run("evaluate", "--real", real, "--fake", big, "--out", tmp_path / "rep", "--workers", "0")
    assert res.exit_code == 1 and "fake is 80×80, real is 64×64 (use --resize real)" in res.output
    res = run("evaluate", "--real", real, "--fake", big, "--out", tmp_path / "rep", "--workers", "0",
              "--resize", "real")
    assert res.exit_code == 0, res.output
    cv2.imwrite(str(big / f"{p.stem}.jpg"), cv2.imread(str(p)))  # a second image with the same name
    res = run("evaluate", "--real", real, "--fake", big, "--out", tmp_path / "rep")
    assert res.exit_code == 1 and "two images named" in res.output


def test_missing_weights_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "nothing"))
    monkeypatch.delenv("P2PTOOLS_WEIGHTS", raising=False)
    real = _images(tmp_path / "real", 2)
    res = run("evaluate", "--real", real, "--fake", real, "--metrics", "vgg", "--out", tmp_path / "rep")
    assert res.exit_code == 1 and "vgg19-dcbb9e9d.pth" in res.output and "Traceback" not in res.output


def test_fcn_score_ground_truth_beats_blurred_copies(tmp_path):
    """A segmenter trained on real SpaceNet tiles parses the real photos better than blurred copies."""
    data = tmp_path / "tiles"
    src = linked_scene(tmp_path / "src", "a", *ATLANTA)
    assert run("tile", src, data, "--size", 64, "--split", "1,0,0").exit_code == 0
    res = run("train-fcn", data, "--out", tmp_path / "seg", "--size", 64, "--epochs", 8, "--workers", 0,
              "--batch-size", 16)
    assert res.exit_code == 0, res.output
    fake = tmp_path / "fake"
    fake.mkdir()
    for p in sorted((data / "train").glob("*.png"))[:40]:
        b = cv2.imread(str(p))[:, 64:]
        cv2.imwrite(str(fake / p.name), cv2.GaussianBlur(b, (0, 0), 4))
    real = tmp_path / "real"
    real.mkdir()
    for p in sorted((data / "train").glob("*.png"))[:40]:
        shutil.copy(p, real / p.name)
    shutil.copy(data / "dataset.json", real / "dataset.json")
    res = run("evaluate", "--real", real, "--fake", fake, "--metrics", "fcn", "--segmenter", tmp_path / "seg",
              "--out", tmp_path / "rep", "--workers", "0")
    assert res.exit_code == 0, res.output
    fcn = pd.read_csv(tmp_path / "rep" / "fcn.csv")
    overall = fcn[fcn["class"] == "all"].set_index("images")
    assert overall.loc["ground truth", "per_pixel_acc"] >= overall.loc["generated", "per_pixel_acc"]
    assert overall.loc["ground truth", "mean_class_iou"] > overall.loc["generated", "mean_class_iou"]
    assert set(fcn["class"]) == {"all", "background", "building"}


@pytest.mark.parametrize("damage", ["report.json", "summary.csv"])
def test_compare_of_a_damaged_report_is_one_line_and_writes_nothing(tmp_path, damage):
    for name in ("a", "b"):
        rep = tmp_path / name
        rep.mkdir()
        (rep / "summary.csv").write_text("label,metric,mean,std,ci95_low,ci95_high,n,note\n"
                                         f"{name},l1,3.5,1.0,3.0,4.0,10,\n")
        (rep / "report.json").write_text(json.dumps({"label": name, "roles": [], "rows": []}) + "\n")
    (tmp_path / "b" / damage).write_bytes(b'{"label": "b", "rows": [{"na' if damage == "report.json" else b"")
    res = run("evaluate", "--compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "cmp")
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.exception
    assert res.output.startswith(f"Error: {tmp_path / 'b' / damage}: not ") and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "cmp" / "comparison.csv").exists()


def _ab_split(folder, offset, n=3, size=32):
    """A|B pairs whose A half is B plus ``offset`` (a photo and a comparable photo of it)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        b = rng.integers(40, 200, (size, size, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i}.png"), np.concatenate([b + offset, b], axis=1))
    return folder


def test_identity_baseline_scores_the_input_itself(tmp_path):
    """Photo → photo (A|B of one size): the input itself as the output, beside the mean-colour baseline, in
    summary.csv, evaluate.json, the printed lines and the page."""
    import json

    real = _ab_split(tmp_path / "test", 10)
    fake = tmp_path / "fake"
    fake.mkdir()
    for p in real.iterdir():
        cv2.imwrite(str(fake / p.name), cv2.imread(str(p))[:, 32:] + 2)  # the target, off by 2
    res = run("evaluate", "--real", real, "--fake", fake, "--metrics", "l1,ssim", "--out", tmp_path / "r",
              "--workers", 0)
    assert res.exit_code == 0, res.output
    s = pd.read_csv(tmp_path / "r" / "summary.csv").set_index("metric")
    assert s.loc["l1", "mean"] == pytest.approx(2.0) and s.loc["l1", "identity"] == pytest.approx(10.0)
    assert s.loc["l1", "baseline"] > 10 and 0 < s.loc["ssim", "identity"] < 1
    doc = json.loads((tmp_path / "r" / "evaluate.json").read_text())
    assert doc["identity"]["scores"]["l1"] == pytest.approx(10.0) and "A half" in doc["identity"]["what"]
    assert doc["baseline"]["scores"]["l1"] == pytest.approx(s.loc["l1", "baseline"])
    assert "input itself 10" in res.output and "input itself" in (tmp_path / "r" / "report.html").read_text()


def test_no_identity_baseline_for_label_maps(tmp_path):
    """A label → photo split (by the split's dataset.json) has no identity baseline: a label map is no output."""
    import json

    real = _ab_split(tmp_path / "ds" / "test", 10)
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps({"kind": "tiles", "A": "label", "B": "photo"}))
    res = run("evaluate", "--real", real, "--fake", real, "--metrics", "l1", "--out", tmp_path / "r",
              "--workers", 0, "--real-kind", "ab", "--resize", "fake")
    assert res.exit_code == 0, res.output
    s = pd.read_csv(tmp_path / "r" / "summary.csv").set_index("metric")
    assert np.isnan(s.loc["l1", "identity"]) and s.loc["l1", "baseline"] > 0
    assert json.loads((tmp_path / "r" / "evaluate.json").read_text())["identity"] is None
