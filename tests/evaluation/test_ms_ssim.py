"""MS-SSIM (``evaluate --metrics ms_ssim``): known values, pytorch-msssim's numbers, NaN under 161 px, the CLI."""

from __future__ import annotations

import json
import math
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.signal import convolve2d

from p2ptools.cli.main import cli
from p2ptools.evaluation.metrics.pixel import MS_SSIM_WEIGHTS, ms_ssim
from tests.conftest import photo

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _gauss11() -> np.ndarray:
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    return g / g.sum()


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(photo(h, w, seed=seed), 0, -1))


def test_identical_images_give_one():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (170, 203, 3), dtype=np.uint8)
    assert ms_ssim(img, img.copy()) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(img[..., 0], img[..., 0].copy()) == pytest.approx(1.0, abs=1e-12)  # one channel


def test_flat_images_give_the_luminance_term_alone():
    """Two flat images a, b: every contrast-structure term is C2/C2 = 1, so MS-SSIM = l(a, b)^w5 (sides
    that halve evenly four times: an odd side is padded with zeros between scales, as pytorch-msssim does)."""
    a, b = 90, 130
    real, fake = np.full((192, 176, 3), a, np.uint8), np.full((192, 176, 3), b, np.uint8)
    expected = ((2 * a * b + C1) / (a * a + b * b + C1)) ** MS_SSIM_WEIGHTS[-1]
    assert ms_ssim(real, fake) == pytest.approx(expected, rel=1e-9)


def test_a_constant_shift_computed_another_way():
    """fake = real + 40 (no clipping): variances and covariance are equal at every scale, so every cs is
    1 and MS-SSIM is the mean luminance term at the coarsest scale to the power w5. That scale of a
    256² image is its 16×16 block means; its Gaussian means come from scipy's 2-D convolution here."""
    rng = np.random.default_rng(3)
    real = cv2.GaussianBlur(rng.integers(0, 201, (256, 256, 3), dtype=np.uint8), (0, 0), 2)
    fake = real + np.uint8(40)
    coarse = real.astype(np.float64).reshape(16, 16, 16, 16, 3).mean(axis=(1, 3))  # four halvings
    kernel = np.outer(_gauss11(), _gauss11())
    per_channel = []
    for c in range(3):
        mu = convolve2d(coarse[..., c], kernel, mode="valid")  # 6×6: the window fits without padding
        lum = (2 * mu * (mu + 40) + C1) / (mu**2 + (mu + 40) ** 2 + C1)
        per_channel.append(lum.mean() ** MS_SSIM_WEIGHTS[-1])
    assert ms_ssim(real, fake) == pytest.approx(float(np.mean(per_channel)), abs=1e-9)


def test_nan_under_161_px_and_inside_a_mask():
    img = _photo(200, 200, 0)
    assert math.isnan(ms_ssim(img[:160], img[:160]))  # pytorch-msssim asserts the short side > 160
    assert math.isnan(ms_ssim(img[:, :160], img[:, :160]))
    assert ms_ssim(img[:161, :161], img[:161, :161]) == pytest.approx(1.0)
    assert math.isnan(ms_ssim(img, img, np.ones((200, 200), bool)))
    with pytest.raises(ValueError, match="differ in shape"):
        ms_ssim(img, img[:180])


def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Random and photo-like pairs at even and odd sizes (odd sides are padded between scales)."""
    rng = np.random.default_rng(7)
    cases = []
    for h, w in ((161, 161), (200, 233), (256, 256), (300, 177)):
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cases.append((f"noise {h}×{w}", a, np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)))
        p = _photo(h, w, seed=h)
        cases.append((f"photo {h}×{w} blurred", p, cv2.GaussianBlur(p, (0, 0), 1.5)))
        cases.append((f"photo {h}×{w} shifted", p, np.roll(p, 2, axis=1)))
    return cases


def _theirs(real: np.ndarray, fake: np.ndarray) -> float:
    import torch
    from pytorch_msssim import ms_ssim as reference

    x = torch.from_numpy(real).permute(2, 0, 1)[None].float()
    y = torch.from_numpy(fake).permute(2, 0, 1)[None].float()
    return float(reference(x, y, data_range=255, size_average=False)[0])


def test_equal_to_pytorch_msssim():
    pytest.importorskip("pytorch_msssim", reason="pytorch-msssim is the reference, not a dependency: "
                                                 "pip install pytorch-msssim to compare")
    diffs = {name: abs(ms_ssim(r, f) - _theirs(r, f)) for name, r, f in _cases()}
    assert max(diffs.values()) < 1e-3, diffs


def test_equal_to_pytorch_msssim_on_real_photos():
    pytest.importorskip("pytorch_msssim", reason="pytorch-msssim is the reference, not a dependency: "
                                                 "pip install pytorch-msssim to compare")
    from tests.conftest import shared_path

    diffs = {}
    for n in (1, 2, 3):
        ab = cv2.cvtColor(cv2.imread(str(shared_path("facades", "train", f"{n}.jpg"))), cv2.COLOR_BGR2RGB)
        real = np.ascontiguousarray(ab[:, :256])
        ok, jpg = cv2.imencode(".jpg", real, [cv2.IMWRITE_JPEG_QUALITY, 20])
        for name, fake in (("blur", cv2.GaussianBlur(real, (0, 0), 2)), ("jpeg", cv2.imdecode(jpg, 1)),
                           ("crop", np.ascontiguousarray(ab[:, 256:]))):  # the label image: far from the photo
            diffs[f"{n} {name}"] = abs(ms_ssim(real, fake) - _theirs(real, fake))
    assert max(diffs.values()) < 1e-3, diffs


def run(*args: object):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """``evaluate --metrics l1,ms_ssim`` on three 192² photos blurred by σ 0.5, 1.5, 3 and one 128² pair."""
    root = tmp_path_factory.mktemp("msssim")
    real, fake = root / "real", root / "fake"
    real.mkdir()
    fake.mkdir()
    for i, sigma in enumerate((0.5, 1.5, 3.0)):
        img = _photo(192, 192, seed=i)
        cv2.imwrite(str(real / f"{i}.png"), img)
        cv2.imwrite(str(fake / f"{i}.png"), cv2.GaussianBlur(img, (0, 0), sigma))
    small = _photo(128, 128, seed=9)
    cv2.imwrite(str(real / "small.png"), small)
    cv2.imwrite(str(fake / "small.png"), cv2.GaussianBlur(small, (0, 0), 1))
    res = run("evaluate", "--real", real, "--fake", fake, "--out", root / "rep", "--metrics", "l1,ms_ssim",
              "--workers", 0)
    assert res.exit_code == 0, res.output
    return root / "rep"


def test_evaluate_writes_ms_ssim_with_its_note(report):
    per = pd.read_csv(report / "per_image.csv").set_index("name")
    assert list(per.columns) == ["l1", "ms_ssim"]
    assert math.isnan(per.loc["small", "ms_ssim"])
    values = [per.loc[str(i), "ms_ssim"] for i in range(3)]
    assert 0 < values[2] < values[1] < values[0] < 1  # more blur, lower MS-SSIM
    note = pd.read_csv(report / "summary.csv").set_index("metric").loc["ms_ssim", "note"]
    assert note.startswith("multi-scale structural similarity")
    assert "NaN for 1 of 4 image(s): images under 161 px on the short side" in note
    assert json.loads((report / "evaluate.json").read_text())["metric_info"]["ms_ssim"]["higher_is_better"]
    html = (report / "report.html").read_text()
    assert 'const HIGHER = ["ms_ssim"];' in html and "ms_ssim · ↑ better" in html


def test_the_report_sorts_ms_ssim_worst_first_in_a_browser(report):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto((report / "report.html").as_uri())
        page.click("th[data-key=ms_ssim]")  # higher is better: the worst (lowest) first, NaN last
        names = page.locator("#rows tbody tr td:nth-child(1)").all_inner_texts()
        cells = page.locator("#rows tbody tr td:nth-child(6)").all_inner_texts()
        browser.close()
    assert names == ["2", "1", "0", "small"] and cells[-1] == "–"
    assert [float(c) for c in cells[:3]] == sorted(float(c) for c in cells[:3])
