"""Shared fixtures: tiny GeoTIFFs built on the fly, and the real sample data in ../shared/data."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

if os.environ.get("PYTEST_XDIST_WORKER"):
    # each xdist worker is one process per core: torch's own threads would oversubscribe the cores
    # (OpenMP spin-waits make that many times slower)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# tests never touch the internet: weights are never downloaded unless a test serves them itself
# (tests/evaluation/test_weights.py, from a server on 127.0.0.1)
os.environ["P2PTOOLS_OFFLINE"] = "1"
os.environ.pop("P2PTOOLS_WEIGHTS_URL", None)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("P2PTOOLS_TEST_SHARED", ROOT.parent / "shared" / "data"))

#: UTM 32631, 0.5 m pixels, origin at (500000, 4000000): the grid every generated scene uses.
CRS = "EPSG:32631"
TRANSFORM = from_origin(500000.0, 4000000.0, 0.5, 0.5)


def shared_path(*parts: str) -> Path:
    """A file of ../shared/data, or skip the test when it is absent (a user's clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample data not available: {path} (../shared/data is only beside CI checkouts)")
    return path


#: SpaceNet Atlanta in ../shared/data: the pan photo, its building mask, the polygons behind it
ATLANTA = (("spacenet", "sample_geotiff.tif"), ("spacenet", "sample_fp_mask_from_geojson.tif"))


def linked_scene(root: Path, name: str, photo: tuple[str, ...], label: tuple[str, ...], label_dir: str = "gt") -> Path:
    """``root/images/<name>`` and ``root/<label_dir>/<name>`` (each with its file's extension) as links
    to files of ../shared/data; skips the test when they are absent. Returns ``root``."""
    for folder, parts in (("images", photo), (label_dir, label)):
        target = shared_path(*parts)
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"{name}{target.suffix}").symlink_to(target)
    return root


def write_tif(
    path: Path,
    data: np.ndarray,
    crs: str | None = CRS,
    transform: Any = TRANSFORM,
    nodata: float | None = None,
    alpha: bool = False,
    **extra: Any,
) -> Path:
    """Write ``(bands, H, W)`` or ``(H, W)`` data as a GeoTIFF; ``crs=None`` writes no georeference."""
    arr = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    profile: dict[str, Any] = {
        "driver": "GTiff", "height": arr.shape[1], "width": arr.shape[2], "count": arr.shape[0],
        "dtype": arr.dtype.name, **extra,
    }
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    if alpha:
        profile["photometric"] = "RGB"
        profile["alpha"] = "YES"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
    return path


def photo(h: int, w: int, seed: int = 0, bands: int = 3, dtype: str = "uint8") -> np.ndarray:
    """A smooth random photo-like ``(bands, H, W)`` array."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = (np.sin(x / 17.0) + np.cos(y / 23.0)) * 60 + 128
    out = np.stack([base + rng.normal(0, 10, (h, w)) + 10 * b for b in range(bands)])
    if dtype == "uint16":
        return np.clip(out * 8 + 300, 0, 65535).astype(np.uint16)
    return np.clip(out, 0, 255).astype(np.uint8)


def blocks_mask(h: int, w: int, values: list[int], block: int = 64, seed: int = 0) -> np.ndarray:
    """A ``(H, W)`` uint8 mask of square blocks with random class values."""
    rng = np.random.default_rng(seed)
    grid = rng.choice(values, size=(h // block + 1, w // block + 1))
    return np.kron(grid, np.ones((block, block), dtype=np.int64))[:h, :w].astype(np.uint8)


def ab_dataset(root: Path, n_train: int = 8, n_val: int = 3, size: int = 64, seed: int = 0) -> Path:
    """A generated aligned dataset like facades: ``train/`` and ``val/`` of A|B JPEGs, A a colour
    label map, B a photo that follows it (so a generator can learn the mapping)."""
    import cv2

    for split, n, offset in (("train", n_train, 0), ("val", n_val, 1000)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            s = seed + offset + i
            mask = blocks_mask(size, size, [0, 1, 2], block=size // 4, seed=s)
            a = np.array([[200, 40, 40], [40, 160, 40], [30, 30, 200]], np.uint8)[mask]
            texture = np.moveaxis(photo(size, size, seed=s), 0, -1).astype(np.float32)
            b = np.clip(0.6 * cv2.GaussianBlur(a.astype(np.float32), (0, 0), 2) + 0.4 * texture, 0, 255)
            cv2.imwrite(str(root / split / f"{i + 1}.jpg"), cv2.cvtColor(np.hstack([a, b.astype(np.uint8)]),
                                                                          cv2.COLOR_RGB2BGR))
    return root


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    """8 generated A|B pairs in train/, 3 in val/ (64×128 JPEGs)."""
    return ab_dataset(tmp_path / "pairs")


@pytest.fixture
def inria_root(tmp_path: Path) -> Path:
    """An Inria-like dataset: images/ + gt/, two odd-sized RGB scenes with 0/255 masks."""
    root = tmp_path / "inria"
    for i, (h, w) in enumerate([(300, 520), (260, 260)]):
        write_tif(root / "images" / f"city{i}.tif", photo(h, w, seed=i))
        write_tif(root / "gt" / f"city{i}.tif", blocks_mask(h, w, [0, 0, 255], seed=i))
    return root


@pytest.fixture
def landcover_root(tmp_path: Path) -> Path:
    """A LandCover.ai-like dataset: images/ + masks/ with classes 0–4, 1100×1100 scenes."""
    root = tmp_path / "landcover"
    for i in range(2):
        write_tif(root / "images" / f"M-33-{i}.tif", photo(1100, 1100, seed=i))
        write_tif(root / "masks" / f"M-33-{i}.tif", blocks_mask(1100, 1100, [0, 1, 2, 3, 4], block=128, seed=i))
    return root


def register_test_weights(folder: Path) -> Path:
    """Make the registry expect the digests of the weight files a test wrote under the real names
    (random networks stand in for the pretrained ones, which cannot be downloaded here): every file
    is still verified before torch reads it, against these digests."""
    import dataclasses

    from p2ptools.evaluation import weights as W

    for path in Path(folder).iterdir():
        spec = W.KNOWN_WEIGHTS.get(path.name)
        if spec is not None:
            W.KNOWN_WEIGHTS[path.name] = dataclasses.replace(spec, sha256=W.sha256_of(path))
    return Path(folder)


def _calibrated(net: torch.nn.Module, size: int) -> dict[str, torch.Tensor]:
    """Random weights with BatchNorm statistics from a few random batches (realistic activations)."""
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.rand(4, 3, size, size) * 2 - 1)
    return net.state_dict()


@pytest.fixture(scope="session")
def fid_weights_dir(tmp_path_factory):
    """Weight files in the standard formats (FID Inception, VGG19 state dicts), random and calibrated:
    no pretrained weights can be downloaded here, and the loading path is what is tested."""
    import torchvision

    from p2ptools.evaluation.metrics.fid import FID_WEIGHTS, fid_inception_v3
    from p2ptools.evaluation.metrics.vgg import VGG_WEIGHTS

    torch.manual_seed(0)
    ref = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    net = fid_inception_v3(ref.state_dict())
    d = tmp_path_factory.mktemp("weights")
    torch.save(_calibrated(net, 299), d / FID_WEIGHTS)
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg19(weights=None).state_dict(), d / VGG_WEIGHTS)
    return register_test_weights(d)


#: a tiny network for tests: 32-px crops, 5 downs, 8 filters
SMALL_TRAIN = ["--model", "tiny", "--set", "model.image_size=32", "--set", "model.load_size=36",
               "--set", "model.num_downs=5", "--set", "model.ngf=8", "--set", "model.ndf=8", "--workers", "0"]


def small_pairs(root: Path, n_train: int = 6, n_val: int = 2, size: int = 32, seed: int = 0) -> Path:
    """Generated 32-px A|B PNG pairs in ``root/train`` and ``root/val`` (B is the negative of A)."""
    from p2ptools.runtime.output import write_image

    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            write_image(root / split / f"{i}.png", np.concatenate([a, 255 - a], axis=1))
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder of the tiny network trained for one epoch on :func:`small_pairs` (shared, read only)."""
    from click.testing import CliRunner

    from p2ptools.cli.main import cli

    root = tmp_path_factory.mktemp("tiny-run")
    data = small_pairs(root / "ds")
    res = CliRunner().invoke(cli, ["train", str(data), "--out", str(root / "run"), "--epochs", "1", *SMALL_TRAIN])
    assert res.exit_code == 0, res.output
    return root / "run"


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served; yields (base URL, served dir, request log)."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served, requests
    httpd.shutdown()
    httpd.server_close()
