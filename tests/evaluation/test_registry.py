"""The metrics registry: one entry is a metric everywhere — evaluate, its CSV/JSON, the report page, the CLI."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.evaluation.metrics.registry import METRICS, MetricSpec, spec_of
from p2ptools.evaluation.report import higher_is_better
from tests.test_architecture import MAX_LINES, MAX_PARAMS, _body_lines, _functions, _params

EVALUATION = Path(__file__).resolve().parents[2] / "p2ptools" / "evaluation"


def run(*args: object):
    return CliRunner().invoke(cli, [*map(str, args)], catch_exceptions=False)


def test_the_report_looks_metrics_up_by_exact_name_or_declared_column():
    assert [higher_is_better(m) for m in ("l1", "l2", "psnr", "ssim", "lpips", "vgg_cos")] == [
        False, False, True, True, False, True]
    # derived columns map to their metric explicitly
    assert spec_of("l1_band3") is METRICS["l1"] and not higher_is_better("l1_band3")
    assert spec_of("vgg_relu4_4") is METRICS["vgg"] and higher_is_better("vgg_relu4_4")
    assert spec_of("fcn_mean_class_iou_ground_truth") is METRICS["fcn"]
    # a name that merely starts like a metric is not that metric (the old prefix match said psnr/ssim/vgg)
    for other in ("psnr_db", "ssimilar", "vggx", "fcn_other", "l1_bandx", "kid_std"):
        assert spec_of(other) is None and not higher_is_better(other), other


def test_weights_files_say_which_metrics_need_them_from_the_registry():
    from p2ptools.evaluation.weights import KNOWN_WEIGHTS

    needed = {f for m in METRICS.values() for f in m.weights}
    assert needed <= set(KNOWN_WEIGHTS)
    assert KNOWN_WEIGHTS["pt_inception-2015-12-05-6726825d.pth"].used_by == "fid, kid"
    assert KNOWN_WEIGHTS["lpips-v0.1-alex.pth"].used_by == "lpips"


def test_metrics_option_lists_and_checks_the_registry(tmp_path):
    help_text = " ".join(run("evaluate", "--help").output.split())
    for m in METRICS.values():
        assert f"{m.name} ({m.help}" in help_text
    res = run("evaluate", "--real", tmp_path, "--fake", tmp_path, "--out", tmp_path / "o", "--metrics", "l1,nope")
    assert res.exit_code == 2 and "unknown metric(s) nope" in res.output
    assert "choose from " + ", ".join(METRICS) in " ".join(res.output.split())


def _max_error(real: np.ndarray, fake: np.ndarray, mask: np.ndarray | None = None) -> float:
    """A toy pixel metric: the largest absolute difference, NaN for images with a black corner pixel."""
    if real[0, 0].sum() == 0:
        return math.nan
    return float(np.abs(real.astype(float) - fake.astype(float)).max())


def test_one_registry_entry_is_a_metric_everywhere(tmp_path, monkeypatch):
    """A metric added as one entry is validated, computed, noted, written and sorted with no other change."""
    monkeypatch.setitem(METRICS, "maxerr", MetricSpec(
        "maxerr", "image", False, "largest absolute difference, 0–255 scale", "largest difference", _max_error,
        decimals=1, undefined="a black corner pixel"))
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        img = rng.integers(20, 200, (32, 32, 3), dtype=np.uint8)
        if i == 2:
            img[0, 0] = 0
        cv2.imwrite(str(real / f"{i}.png"), img)
        cv2.imwrite(str(fake / f"{i}.png"), np.clip(img.astype(int) + 5 * (i + 1), 0, 255).astype(np.uint8))
    res = run("evaluate", "--real", real, "--fake", fake, "--out", tmp_path / "rep", "--metrics", "l1,maxerr",
              "--workers", 0)
    assert res.exit_code == 0, res.output
    per = pd.read_csv(tmp_path / "rep" / "per_image.csv").set_index("name")
    assert list(per.columns) == ["l1", "maxerr"] and per.loc[0, "maxerr"] == 5 and per.loc[1, "maxerr"] == 10
    assert math.isnan(per.loc[2, "maxerr"])
    note = pd.read_csv(tmp_path / "rep" / "summary.csv").set_index("metric").loc["maxerr", "note"]
    assert note == "largest absolute difference, 0–255 scale; NaN for 1 of 3 image(s): a black corner pixel"
    info = json.loads((tmp_path / "rep" / "evaluate.json").read_text())["metric_info"]
    assert info["maxerr"] == {"per": "image", "higher_is_better": False,
                              "description": "largest absolute difference, 0–255 scale"}
    html = (tmp_path / "rep" / "report.html").read_text()
    assert 'const HIGHER = [];' in html and '"maxerr": 1' in html  # lower is better; one decimal
    assert "maxerr · ↓ better" in html and "<b>7.5</b>" in html  # the card: mean of 5 and 10, one decimal


def test_evaluation_functions_are_short_with_few_parameters():
    """No function of evaluate, the report or the metrics takes more than 8 parameters or runs over 60 lines."""
    files = [EVALUATION / "evaluate.py", EVALUATION / "report.py", *sorted((EVALUATION / "metrics").glob("*.py"))]
    bad = [f"{p.name}:{fn.name} ({_params(fn)} parameters, {_body_lines(fn)} lines)"
           for p in files for fn in _functions(ast.parse(p.read_text(encoding="utf-8")))
           if _params(fn) > MAX_PARAMS or _body_lines(fn) > MAX_LINES]
    assert not bad, bad


@pytest.mark.parametrize("name", list(METRICS))
def test_every_spec_is_complete(name):
    spec = METRICS[name]
    assert spec.name == name and spec.per in ("image", "set") and spec.description and spec.help
    assert (spec.function is not None) <= (spec.per == "image")  # pixel metrics are per image
    assert dataclasses.is_dataclass(spec) and 0 <= spec.decimals <= 8
