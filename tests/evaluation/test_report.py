"""The HTML pages of evaluate and train, loaded in a real browser (Debian's headless Chromium)."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from tests.conftest import ab_dataset

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def _open(browser, path):
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    return page, requests


def _all_images_load(page) -> int:
    """Make every image eager, wait for all, and return how many there are (each must have decoded)."""
    page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    page.wait_for_function("[...document.images].every(i => i.complete)")
    broken = page.evaluate("[...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.src)")
    assert broken == []
    return page.evaluate("document.images.length")


def _not_blank(page, tmp_path, name):
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot), full_page=False)
    img = cv2.imread(str(shot))
    assert img is not None and img.std() > 20  # text, charts and thumbnails, not an empty page


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two evaluate reports (130 generated pairs, two blur levels) and their comparison."""
    root = tmp_path_factory.mktemp("reports")
    ab_dataset(root / "ds", n_train=1, n_val=130, size=32)
    for name, sigma in (("mild", 0.8), ("strong", 2.5)):
        fake = root / name
        fake.mkdir()
        for p in (root / "ds" / "val").iterdir():
            b = cv2.imread(str(p))[:, 32:]
            cv2.imwrite(str(fake / f"{p.stem}.png"), cv2.GaussianBlur(b, (0, 0), sigma * (1 + int(p.stem) % 3)))
        res = CliRunner().invoke(cli, ["evaluate", "--real", str(root / "ds" / "val"), "--fake", str(fake),
                                       "--out", str(root / f"rep_{name}"), "--workers", "0"])
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["evaluate", "--compare", str(root / "rep_mild"), str(root / "rep_strong"),
                                   "--out", str(root / "cmp")])
    assert res.exit_code == 0, res.output
    return root


def test_report_page_loads_sorts_and_pages(browser, reports, tmp_path):
    page, requests = _open(browser, reports / "rep_mild" / "report.html")
    rows = page.locator("#rows tbody tr")
    assert rows.count() == 100 and "rows 1–100 of 130" in page.inner_text("#pageinfo")
    assert _all_images_load(page) == 100 * 4  # input | real | generated | error map
    l1 = lambda: [float(page.locator(f"#rows tbody tr:nth-child({i}) td:nth-child(6)").inner_text())  # noqa: E731
                  for i in (1, 2, 3, 50, 100)]
    first = l1()
    assert first == sorted(first, reverse=True)  # worst (largest L1) first
    page.click("th[data-key=l1]")
    asc = l1()
    assert asc == sorted(asc) and asc[0] < first[-1]  # sorting reordered the rows
    page.click("th[data-key=ssim]")  # higher is better: worst (lowest) first
    ssim = [float(page.locator(f"#rows tbody tr:nth-child({i}) td:nth-child(9)").inner_text()) for i in (1, 2, 100)]
    assert ssim == sorted(ssim)
    page.click("#next")
    assert rows.count() == 30 and "rows 101–130 of 130" in page.inner_text("#pageinfo")
    assert page.locator("svg[aria-label=l1]").count() == 1  # a histogram per metric
    _not_blank(page, tmp_path, "report")
    assert all(u.startswith("file://") for u in requests)  # nothing from the network


def test_comparison_page_shows_runs_side_by_side(browser, reports, tmp_path):
    page, requests = _open(browser, reports / "cmp" / "comparison.html")
    assert page.locator("#strip tbody tr").count() == 60
    assert page.locator("#strip thead th").all_inner_texts() == ["name", "input", "real", "mild", "strong"]  # labels
    assert _all_images_load(page) == 60 * 4
    assert page.locator("svg[aria-label=l1] rect").count() == 2
    _not_blank(page, tmp_path, "comparison")
    assert all(u.startswith("file://") for u in requests)


def test_training_run_page(browser, tmp_path):
    ds = ab_dataset(tmp_path / "ds", n_train=4, n_val=2, size=64)
    run = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", str(ds), "--model", "tiny", "--out", str(run), "--epochs", "3",
                                   "--set", "model.image_size=64", "--set", "model.load_size=72",
                                   "--set", "model.num_downs=6", "--set", "train.log_every=1"])
    assert res.exit_code == 0, res.output
    page, requests = _open(browser, run / "index.html")
    text = page.inner_text("body")
    assert "3 / 3" in text and "finished" in text and "best val L1" in text
    assert page.locator("figcaption").all_inner_texts()[:3] == ["epoch 3", "epoch 2", "epoch 1"]  # newest first
    assert _all_images_load(page) == 3
    assert page.locator("svg[aria-label=L1] polyline").count() == 2  # train and val L1
    assert "model.ngf" in text and "train.epochs" in text
    _not_blank(page, tmp_path, "run")
    assert all(u.startswith("file://") for u in requests)


AWKWARD = ["a b #1 %25 & 'q' \"d\" é", "<x> ü ß", "100% & more"]


def test_awkward_names_keep_their_thumbnails_and_text_in_chromium(browser, tmp_path):
    """Folders and files named with spaces, #, %, &, quotes, < > and accents: every thumbnail of the
    report and of a comparison loads, and every name shows as written."""
    import json

    reps = []
    for k, folder in enumerate(AWKWARD[:2]):
        real, fake = tmp_path / folder / "real", tmp_path / folder / "fake"
        for i, name in enumerate(AWKWARD):
            img = np.full((32, 32, 3), 40 * i + 10 * k, np.uint8)
            for d in (real, fake):
                d.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(d / f"{name}.png"), img if d == real else 255 - img)
        rep = tmp_path / folder / "report #%"
        res = CliRunner().invoke(cli, ["evaluate", "--real", str(real), "--fake", str(fake), "--out", str(rep),
                                       "--workers", "0", "--metrics", "l1,ssim"])
        assert res.exit_code == 0, res.output
        reps.append(rep)
    page, requests = _open(browser, reps[0] / "report.html")
    assert _all_images_load(page) == 3 * 3
    assert sorted(page.locator("#rows tbody td.l").all_inner_texts()) == sorted(AWKWARD)
    doc = json.loads((reps[0] / "report.json").read_text())
    doc["label"] = "<img src=x onerror=\"document.title='owned'\">"
    doc["rows"][0]["name"] = "<img src=y onerror=\"document.title='owned'\">"
    doc["rows"][0]["thumbs"]["real"] = "x\" onerror=\"document.title='owned'"
    (reps[0] / "report.json").write_text(json.dumps(doc))
    cmp_dir = tmp_path / "cmp &#"
    res = CliRunner().invoke(cli, ["evaluate", "--compare", str(reps[0]), str(reps[1]), "--out", str(cmp_dir)])
    assert res.exit_code == 0, res.output
    page, requests = _open(browser, cmp_dir / "comparison.html")
    page.wait_for_timeout(200)
    assert page.title() != "owned" and page.locator("#strip img[onerror]").count() == 0
    assert _all_images_load(page) >= 1
    assert all(u.startswith("file://") for u in requests)


def test_inline_json_cannot_end_its_script():
    from p2ptools.runtime.html import json_script, url

    text = json_script("ROWS", [{"name": "</script><!-- \u2028 & <b>"}])
    assert "</" not in text and "<!--" not in text and "\u2028" not in text and "&" not in text
    assert url("a b/#1 %/é&.png") == "a%20b/%231%20%25/%C3%A9%26.png"
