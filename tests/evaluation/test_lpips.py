"""LPIPS: known answers, monotone in noise, and the lpips package's value on the same weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from p2ptools.evaluation.metrics.lpips import BACKBONE_WEIGHTS, HEAD_WEIGHTS, load_lpips_network
from tests.conftest import register_test_weights


@pytest.fixture(scope="module")
def lpips_dir(tmp_path_factory):
    """The lpips package's own v0.1 AlexNet heads and a random AlexNet backbone (no ImageNet weights here)."""
    lpips = pytest.importorskip("lpips")
    folder = tmp_path_factory.mktemp("lpips-weights")
    shutil.copy(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth", folder / HEAD_WEIGHTS)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), folder / BACKBONE_WEIGHTS)
    return register_test_weights(folder)


def _images(n=4, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(base, size=size, mode="bilinear", align_corners=False)


def test_identical_images_give_zero_and_noise_grows_the_distance(lpips_dir):
    net = load_lpips_network(lpips_dir)
    x = _images()
    assert torch.equal(net(x, x), torch.zeros(4))
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g)
    d = [net(x, (x + s * noise).clamp(0, 1)).mean().item() for s in (0.02, 0.05, 0.1, 0.2, 0.4)]
    assert all(a < b for a, b in zip(d, d[1:], strict=False)), d


def test_agrees_with_the_lpips_package(lpips_dir):
    import lpips

    ref = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    ref.net.load_state_dict({k: v for k, v in _backbone_as_lpips(lpips_dir).items()}, strict=True)
    ref.eval()
    ours = load_lpips_network(lpips_dir)
    a, b = _images(seed=2), _images(seed=3)
    with torch.no_grad():
        expected = ref(a * 2 - 1, b * 2 - 1).flatten()  # lpips takes [-1, 1]
    got = ours(a, b)
    assert np.allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6), (got, expected)


def _backbone_as_lpips(folder):
    """torchvision AlexNet features.<i> keys → lpips' slice<k>.<i> keys."""
    from p2ptools.evaluation.metrics.lpips import SLICES

    state = torch.load(folder / BACKBONE_WEIGHTS, weights_only=True)
    out = {}
    for k, (a, b) in enumerate(SLICES, start=1):
        for i in range(a, b):
            for p in ("weight", "bias"):
                if f"features.{i}.{p}" in state:
                    out[f"slice{k}.{i}.{p}"] = state[f"features.{i}.{p}"]
    return out


def test_evaluate_reports_lpips(lpips_dir, tmp_path):
    import cv2
    import pandas as pd
    from click.testing import CliRunner

    from p2ptools.cli.main import cli

    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        img = (rng.random((8, 8, 3)) * 255).astype(np.uint8)
        img = cv2.resize(img, (64, 64), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(real / f"{i}.png"), img)
        cv2.imwrite(str(fake / f"{i}.png"), cv2.GaussianBlur(img, (0, 0), 1 + i))
    res = CliRunner().invoke(cli, ["evaluate", "--real", str(real), "--fake", str(fake), "--metrics", "l1,lpips",
                                   "--out", str(tmp_path / "rep"), "--weights-dir", str(lpips_dir), "--workers", "0"])
    assert res.exit_code == 0, res.output
    per = pd.read_csv(tmp_path / "rep" / "per_image.csv")
    assert (per.lpips > 0).all() and per.lpips.is_monotonic_increasing  # more blur, farther
    summary = pd.read_csv(tmp_path / "rep" / "summary.csv").set_index("metric")
    assert summary.loc["lpips", "mean"] == pytest.approx(per.lpips.mean()) and "Zhang" in summary.loc["lpips", "note"]
