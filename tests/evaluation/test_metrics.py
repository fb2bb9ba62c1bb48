"""Metrics: known answers for the pure functions; FID equal to pytorch-fid's on the same weights file."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from p2ptools.cli.main import cli
from p2ptools.evaluation.metrics import pixel
from p2ptools.evaluation.metrics.fcn import confusion_matrix, per_class, scores
from p2ptools.evaluation.metrics.fid import (
    FID_WEIGHTS,
    activation_statistics,
    frechet_distance,
    kernel_inception_distance,
    load_fid_network,
)
from p2ptools.evaluation.metrics.vgg import VGG_WEIGHTS, load_vgg_network, positionwise_cosine, vgg_cosine
from p2ptools.evaluation.weights import WeightsNotFound, find_weights


def test_pixel_metrics_known_values():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = a.copy()
    assert pixel.l1(a, b) == 0 and pixel.psnr(a, b) == math.inf and pixel.ssim(a, b) == pytest.approx(1.0)
    assert pixel.ssim(a[:5, :5], b[:5, :5]) == pytest.approx(1.0) and math.isnan(pixel.ssim(a[:2], b[:2]))
    b[:8] = 110  # half the pixels off by 10
    assert pixel.l1(a, b) == 5.0 and pixel.l2(a, b) == 50.0
    assert pixel.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 50))
    mask = np.zeros((16, 16), bool)
    mask[8:] = True  # the untouched half
    assert pixel.l1(a, b, mask) == 0.0 and pixel.psnr(a, b, mask) == math.inf
    assert pixel.l1(a, b, ~mask) == 10.0


def test_ssim_falls_with_noise():
    rng = np.random.default_rng(0)
    img = (np.add.outer(np.arange(64), np.arange(64)) * 2 % 255).astype(np.uint8)[..., None].repeat(3, 2)
    values = [pixel.ssim(img, np.clip(img + rng.normal(0, s, img.shape), 0, 255).astype(np.uint8))
              for s in (0, 5, 20, 60)]
    assert values[0] == pytest.approx(1.0) and values == sorted(values, reverse=True)


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8))
    mu, sigma = activation_statistics(x)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    shift = np.arange(8.0)
    # equal covariances: FID = ‖μ1 − μ2‖²
    assert frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(float(shift @ shift), rel=1e-6)
    # 1-D: (μ1−μ2)² + σ1² + σ2² − 2σ1σ2
    assert frechet_distance(np.array([0.0]), np.array([[4.0]]), np.array([1.0]), np.array([[9.0]])) == \
        pytest.approx(1 + 4 + 9 - 12)


def test_singular_covariances_use_the_stable_form():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10, 64))  # 10 samples in 64 dimensions: rank-deficient covariance
    mu, sigma = activation_statistics(x)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    from p2ptools.evaluation.metrics.fid import trace_sqrt_product

    a = np.diag([4.0, 9.0, 0.0])
    assert trace_sqrt_product(a, a) == pytest.approx(13.0)  # √16 + √81 + 0 = Tr(a)


def test_kid_is_unbiased_and_grows_with_shift():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    same, _ = kernel_inception_distance(a, b, subsets=20, subset_size=200)
    far, _ = kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.01 and far > 0.1


def test_confusion_scores_by_hand():
    labels = np.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    conf = confusion_matrix(labels, pred, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [2, 0, 2]]
    s = scores(conf)
    assert s["per_pixel_acc"] == pytest.approx(5 / 8)
    assert s["mean_class_acc"] == pytest.approx((1 / 2 + 2 / 2 + 2 / 4) / 3)
    # IoU: class 0: 1/(2+3-1)=1/4, class 1: 2/(2+3-2)=2/3, class 2: 2/(4+2-2)=1/2
    assert s["mean_class_iou"] == pytest.approx((1 / 4 + 2 / 3 + 1 / 2) / 3)
    rows = per_class(conf, ["a", "b", "c"])
    assert rows[1]["iou"] == pytest.approx(2 / 3)


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("P2PTOOLS_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsNotFound, match=f"{FID_WEIGHTS}.*looked in .*torch/hub/checkpoints.*download"):
        load_fid_network()
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / VGG_WEIGHTS).write_bytes(b"not a state dict")
    with pytest.raises(WeightsNotFound, match="not the expected vgg19.*SHA-256 .*it was not loaded"):
        load_vgg_network(tmp_path / "w")  # checked before torch reads it


def test_weights_search_order(tmp_path, monkeypatch, fid_weights_dir):
    monkeypatch.setenv("P2PTOOLS_WEIGHTS", str(fid_weights_dir))
    assert find_weights(FID_WEIGHTS) == fid_weights_dir / FID_WEIGHTS
    other = tmp_path / "explicit"
    other.mkdir()
    (other / FID_WEIGHTS).write_bytes((fid_weights_dir / FID_WEIGHTS).read_bytes())
    assert find_weights(FID_WEIGHTS, other) == other / FID_WEIGHTS  # --weights-dir first


def _png_set(folder, images):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"{i:03d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def _maps_sets(tmp_path, n):
    import cv2

    from tests.conftest import shared_path

    files = sorted(shared_path("maps", "val").glob("*.jpg"))[:n]
    real, fake = [], []
    for p in files:
        rgb = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        real.append(cv2.resize(rgb[:, 600:], (64, 64), interpolation=cv2.INTER_AREA))  # the maps
        fake.append(cv2.resize(rgb[:, :600], (64, 64), interpolation=cv2.INTER_AREA))  # the photos
    _png_set(tmp_path / "real", real)
    _png_set(tmp_path / "fake", fake)


def _pytorch_fid_home(tmp_path, monkeypatch, fid_weights_dir):
    hub = tmp_path / "torch"
    (hub / "hub" / "checkpoints").mkdir(parents=True)
    (hub / "hub" / "checkpoints" / FID_WEIGHTS).write_bytes((fid_weights_dir / FID_WEIGHTS).read_bytes())
    monkeypatch.setenv("TORCH_HOME", str(hub))  # pytorch-fid finds the file in the hub cache: no download


def test_fid_features_equal_pytorch_fid(tmp_path, monkeypatch, fid_weights_dir):
    """The 2048-d pool features of both implementations, same weights file, same real images."""
    pytest.importorskip("pytorch_fid")
    from pytorch_fid.fid_score import get_activations
    from pytorch_fid.inception import InceptionV3

    _maps_sets(tmp_path, 10)
    _pytorch_fid_home(tmp_path, monkeypatch, fid_weights_dir)
    files = sorted(str(p) for p in (tmp_path / "real").iterdir())
    theirs = get_activations(files, InceptionV3([3]), batch_size=5, dims=2048, device="cpu", num_workers=0)

    from p2ptools.evaluation.evaluate import _to_batch
    from p2ptools.prep.images import load_rgb8

    net = load_fid_network(fid_weights_dir)
    with torch.inference_mode():
        ours = net(_to_batch([load_rgb8(p) for p in files], torch.device("cpu"))).double().numpy()
    assert ours.shape == theirs.shape == (10, 2048)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())


def test_fid_matches_pytorch_fid(tmp_path, monkeypatch, fid_weights_dir):
    """Both implementations, the same weights file, the same real images: |ΔFID| < 1e-3.

    FID needs more images than feature dimensions for a well-posed covariance square root, so this
    end-to-end check uses pytorch-fid's 64-d block (80 image pairs); the 2048-d features are
    compared directly in the test above.
    """
    pytorch_fid = pytest.importorskip("pytorch_fid.fid_score")
    _maps_sets(tmp_path, 80)
    _pytorch_fid_home(tmp_path, monkeypatch, fid_weights_dir)
    theirs = pytorch_fid.calculate_fid_given_paths([str(tmp_path / "real"), str(tmp_path / "fake")], 20, "cpu",
                                                   64, num_workers=0)

    from p2ptools.evaluation.evaluate import EvalConfig, evaluate

    ours = evaluate(EvalConfig(real=tmp_path / "real", fake=tmp_path / "fake", out=tmp_path / "rep",
                               metrics=("fid",), weights_dir=fid_weights_dir, workers=0, batch_size=20, fid_dims=64),
                    progress=False)
    value = float(ours.summary.set_index("metric").loc["fid", "mean"])
    assert theirs > 1.0  # maps and photos differ
    assert abs(value - theirs) < 1e-3


def test_vgg_cosine_falls_as_images_diverge(fid_weights_dir):
    import cv2

    from tests.conftest import shared_path

    net = load_vgg_network(fid_weights_dir)
    rgb = cv2.cvtColor(cv2.imread(str(shared_path("facades", "train", "1.jpg"))), cv2.COLOR_BGR2RGB)[:, :256]
    img = torch.from_numpy(cv2.resize(rgb, (64, 64))).permute(2, 0, 1)[None].float() / 255
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(img.shape, generator=g)
    values = [vgg_cosine(net, img, (1 - t) * img + t * noise)["vgg_cos"].item() for t in (0.0, 0.1, 0.3, 0.6, 1.0)]
    assert values[0] == pytest.approx(1.0, abs=1e-5)
    assert all(a > b for a, b in zip(values, values[1:], strict=False))  # strictly falling
    assert values[-1] < 0.9  # it discriminates (seed 001 saw 0.99 everywhere)


def test_positionwise_cosine_ignores_empty_positions():
    a = torch.zeros(1, 2, 2, 2)
    b = torch.zeros(1, 2, 2, 2)
    a[0, 0, 0, 0], b[0, 0, 0, 0] = 1, 1  # one position agrees, the rest are zero on both sides
    assert positionwise_cosine(a, b).item() == pytest.approx(1.0)
    b[0, :, 0, 0] = torch.tensor([0.0, 1.0])  # orthogonal
    assert positionwise_cosine(a, b).item() == pytest.approx(0.0)


@pytest.mark.parametrize("size", [64, 9])
def test_masked_ssim_with_an_all_true_mask_equals_unmasked(size):
    from p2ptools.evaluation.metrics.pixel import ssim

    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, b, np.ones((size, size), bool)) == pytest.approx(ssim(a, b), abs=1e-12)


def test_kid_on_too_few_images_and_identical_subsets():
    import math

    from p2ptools.evaluation.metrics.fid import kernel_inception_distance

    rng = np.random.default_rng(0)
    one, many = rng.normal(size=(1, 16)), rng.normal(size=(5, 16))
    assert all(math.isnan(v) for v in kernel_inception_distance(one, many))
    mean, std = kernel_inception_distance(many, many + 0.1, subsets=10, subset_size=1000)
    assert math.isfinite(mean) and math.isnan(std)  # every subset is the whole set: no spread to report
    mean, std = kernel_inception_distance(rng.normal(size=(30, 16)), rng.normal(size=(30, 16)), 10, 10)
    assert std > 0


def test_fid_cache_knows_the_size_the_reals_were_resized_to(tmp_path, fid_weights_dir):
    import cv2

    from p2ptools.evaluation.evaluate import EvalConfig, evaluate

    real, small = tmp_path / "real", tmp_path / "small"
    real.mkdir()
    small.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        img = cv2.GaussianBlur(rng.integers(0, 255, (64, 64, 3), np.uint8), (0, 0), 2)
        cv2.imwrite(str(real / f"{i}.png"), img)
        cv2.imwrite(str(small / f"{i}.png"), cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA))
    common = {"metrics": ("fid", "kid"), "weights_dir": fid_weights_dir, "workers": 0, "fid_dims": 64,
              "cache_dir": tmp_path / "cache", "resize": "real"}
    evaluate(EvalConfig(real=real, fake=small, out=tmp_path / "r1", **common), progress=False)
    res = evaluate(EvalConfig(real=real, fake=real, out=tmp_path / "r2", **common), progress=False)
    fid = res.summary.set_index("metric").loc["fid"]
    assert abs(fid["mean"]) < 1e-6  # identical sets, not the features of 16-px reals from the cache
    assert "only 6 image(s) for 64-d features" in fid["note"]


def test_evaluate_scores_the_good_pairs_and_lists_the_bad(tmp_path):
    import cv2

    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    for i in range(4):
        img = np.full((16, 16, 3), 50 * i, np.uint8)
        cv2.imwrite(str(real / f"{i}.png"), img)
        cv2.imwrite(str(fake / f"{i}.png"), img)
    (fake / "2.png").write_bytes((fake / "2.png").read_bytes()[:40])
    res = CliRunner().invoke(cli, ["evaluate", "--real", str(real), "--fake", str(fake), "--out", str(tmp_path / "r"),
                                   "--metrics", "l1,ssim", "--workers", "0"])
    assert res.exit_code == 1 and "3 pair(s) scored and written" in res.output and "1 pair(s) left out" in res.output
    rows = pd.read_csv(tmp_path / "r" / "per_image.csv")
    assert sorted(rows["name"].astype(str)) == ["0", "1", "3"] and (tmp_path / "r" / "report.html").is_file()


def test_fid_chunks_follow_the_device(monkeypatch):
    """8 images per forward on a CPU (cache-sized), the whole batch (up to 256) on a GPU."""
    from p2ptools.evaluation.metrics import fid

    assert fid.chunk_size(torch.device("cpu")) == 8
    assert fid.chunk_size(torch.device("cuda")) == fid.chunk_size(torch.device("cuda:1")) == 256
    net = fid.FIDFeatures(fid.fid_inception_v3(), dims=64)
    sizes: list[int] = []
    monkeypatch.setattr(net, "_features", lambda x: (sizes.append(len(x)), torch.zeros(len(x), 64))[1])
    x = torch.zeros(20, 3, 8, 8, dtype=torch.uint8)
    assert net(x).shape == (20, 64) and sizes == [8, 8, 4]
    sizes.clear()
    monkeypatch.setattr(fid, "chunk_size", lambda device: 256 if device.type == "cpu" else 0)  # as on a GPU
    net(torch.zeros(300, 3, 8, 8))
    assert sizes == [256, 44]


def test_images_cross_to_the_device_as_uint8_and_become_float_there(monkeypatch):
    """uint8 is sent (a quarter of float32's bytes); the features are those of float [0, 1] input."""
    from p2ptools.evaluation.evaluate import _to_batch
    from p2ptools.evaluation.metrics import fid

    moves: list[tuple[torch.dtype, tuple, dict]] = []
    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        moves.append((self.dtype, args, kwargs))
        return real_to(self, *args, **kwargs)

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    expected = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    monkeypatch.setattr(torch.Tensor, "to", to)
    batch = _to_batch(imgs, torch.device("cpu"))
    assert moves and all(dtype == torch.uint8 and torch.float32 not in (*a, *k.values()) for dtype, a, k in moves)
    assert batch.dtype == torch.float32 and torch.equal(batch, expected)
    monkeypatch.setattr(torch.Tensor, "to", real_to)
    torch.manual_seed(0)
    net = fid.FIDFeatures(fid.fid_inception_v3(), dims=64).optimize()
    as_uint8 = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    ours = fid.get_activations([as_uint8], net, torch.device("cpu"))
    np.testing.assert_array_equal(ours, fid.get_activations([expected], net, torch.device("cpu")))


def test_evaluate_runs_without_tf32_and_says_what_ran(tmp_path, monkeypatch):
    """evaluate.json's precision: ``fp32`` on a CPU; on a GPU with TF32 (mocked) ``fp32 (TF32 off)``,
    the flags off while the metrics run and restored after."""
    from p2ptools.evaluation import evaluate as ev

    _maps_sets(tmp_path, 3)
    cfg = ev.EvalConfig(real=tmp_path / "real", fake=tmp_path / "fake", out=tmp_path / "cpu", metrics=("l1",),
                        workers=0)
    ev.evaluate(cfg, progress=False)
    assert json.loads((tmp_path / "cpu" / "evaluate.json").read_text())["provenance"]["precision"] == "fp32"
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", True)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (9, 0))
    monkeypatch.setattr(ev, "select_device", lambda spec: torch.device("cuda:0"))
    flags = []
    real_score = ev.score_pairs
    monkeypatch.setattr(ev, "score_pairs", lambda *a, **k: (
        flags.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)), real_score(*a, **k))[1])
    ev.evaluate(dataclasses.replace(cfg, out=tmp_path / "gpu"), progress=False)
    prov = json.loads((tmp_path / "gpu" / "evaluate.json").read_text())["provenance"]
    assert prov["precision"] == "fp32 (TF32 off)" and prov["device"] == "cuda:0"
    assert flags == [(False, False)]
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
