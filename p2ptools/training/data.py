"""Torch datasets over aligned A|B folders, with the same random transform on A and B.

Augmentation is reproducible whatever the number of DataLoader workers: the random draws of
sample ``i`` in epoch ``e`` come from a generator seeded with ``(seed, e, i)``, and the order of
an epoch is a permutation seeded with ``(seed, e)``. A resumed run therefore sees exactly the
batches the interrupted run would have seen.

What crosses from the workers is small: image pairs travel as uint8 and become [-1, 1] floats on
the training device (:func:`to_device_batch`); GeoTIFF tile pairs travel as the float32 their bands
map to. The epoch travels with each index (:meth:`EpochSampler.set_epoch`), so persistent workers,
built once per run, draw each epoch's transforms without being told of the epoch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from p2ptools.errors import InputError, P2PError
from p2ptools.model.tensors import resize_square, to_uint8_tensor, uint8_to_unit
from p2ptools.prep.dataset import list_split, read_ab

cv2.setNumThreads(1)  # DataLoader workers are the parallelism; avoid oversubscription


def paired_transform(
    a: np.ndarray, b: np.ndarray, load_size: int, crop_size: int, augment: str, rng: np.random.Generator | None
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one random transform to both images.

    ``flip``: resize to ``load_size`` (bicubic), random ``crop_size`` crop, horizontal flip with
    probability 1/2. ``d4``: also a vertical flip (1/2) and a rotation by a random multiple of 90°
    (all eight symmetries of the square, for aerial tiles). ``none`` or ``rng=None``: resize to
    ``crop_size`` only (validation, prediction).
    """
    if augment == "none" or rng is None:
        return resize_square(a, crop_size), resize_square(b, crop_size)
    a, b = resize_square(a, load_size), resize_square(b, load_size)
    y = int(rng.integers(0, load_size - crop_size + 1))
    x = int(rng.integers(0, load_size - crop_size + 1))
    a, b = a[y : y + crop_size, x : x + crop_size], b[y : y + crop_size, x : x + crop_size]
    if rng.random() < 0.5:
        a, b = a[:, ::-1], b[:, ::-1]
    if augment == "d4":
        if rng.random() < 0.5:
            a, b = a[::-1], b[::-1]
        k = int(rng.integers(0, 4))
        a, b = np.rot90(a, k), np.rot90(b, k)
    return a, b


class AlignedDataset(Dataset):
    """A|B images of one split folder, as ``{"A": (3,H,W), "B": (3,H,W), "name": str}``: uint8 for
    image pairs (:func:`to_device_batch` makes them [-1, 1] floats), float32 in the network's range
    for GeoTIFF tile pairs.

    An index is ``i`` (the epoch set by :meth:`set_epoch`) or ``(epoch, i)`` (what
    :class:`EpochSampler` yields, so that workers need no epoch of their own).

    A split of GeoTIFF tile pairs (``tile --format tif``: ``A/`` and ``B/``) is read with all its
    bands (:mod:`p2ptools.prep.bands`): ``A`` and ``B`` then have as many channels as the halves
    give (``channels``), mapped with the dataset's ranges from its ``dataset.json``.

    Args:
        root: dataset folder.
        split: ``train``, ``val``, ``test`` or None for ``root`` itself.
        direction: ``AtoB`` or ``BtoA``.
        load_size: resize before the random crop.
        crop_size: size of the returned images.
        augment: ``flip`` or ``d4``: random transforms (see :func:`paired_transform`), for training;
            ``none``: resize only (validation).
        seed: seed of the per-sample random draws.
        limit: use only the first ``limit`` files (sorted).
    """

    def __init__(self, root: Path, split: str | None, direction: str = "AtoB", load_size: int = 286,
                 crop_size: int = 256, augment: str = "flip", seed: int = 0, limit: int | None = None) -> None:
        from p2ptools.prep.bands import half_specs, is_tif_split, tif_pairs

        folder = Path(root) / split if split else Path(root)
        self.pairs: list[tuple[Path, Path]] | None = None
        self.specs: dict[str, Any] = {}
        if is_tif_split(folder):
            self.pairs = tif_pairs(folder)[:limit]
            self.files = [a for a, _ in self.pairs]
            self.specs = half_specs(_contract_of(Path(root)))
        else:
            self.files = list_split(root, split)[:limit]
        self.direction, self.load_size, self.crop_size = direction, load_size, crop_size
        self.augment, self.seed = augment, seed
        self.epoch = 0

    def drop_unreadable(self, threads: int = 4) -> list[tuple[str, str]]:
        """Decode every file once (before training starts) and leave out those that cannot be read.

        A truncated PNG found hours into a run would stop it; found here it costs one line. Decoding
        runs on ``threads`` threads (the decoders release the GIL): ~1 s per 1000 256×512 tiles on
        two cores.

        Returns:
            ``(file, reason)`` of every file left out.

        Raises:
            InputError: when no file of the split can be read.
        """
        from concurrent.futures import ThreadPoolExecutor

        def problem(i: int) -> str:
            try:
                if self.pairs is not None:
                    from p2ptools.prep.bands import read_tif

                    read_tif(self.pairs[i][0])
                    read_tif(self.pairs[i][1])
                else:
                    read_ab(self.files[i], self.direction)
            except (P2PError, OSError, ValueError) as exc:
                return str(exc) or type(exc).__name__
            return ""

        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            problems = list(pool.map(problem, range(len(self.files))))
        bad = [(str(f), why) for f, why in zip(self.files, problems, strict=True) if why]
        if not bad:
            return []
        keep = [i for i, why in enumerate(problems) if not why]
        if not keep:
            raise InputError(f"{self.files[0].parent}: none of its {len(bad)} image(s) can be read (first: "
                             f"{bad[0][1]})")
        self.files = [self.files[i] for i in keep]
        if self.pairs is not None:
            self.pairs = [self.pairs[i] for i in keep]
        return bad

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random transforms ``__getitem__`` draws."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.files)

    @property
    def channels(self) -> tuple[int, int]:
        """Network channels of (input, target): 3 and 3 for image pairs."""
        if not self.specs:
            return 3, 3
        a, b = self.specs["A"].channels, self.specs["B"].channels
        return (a, b) if self.direction == "AtoB" else (b, a)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor | str]:
        epoch, i = index if isinstance(index, tuple) else (self.epoch, index)
        rng = np.random.default_rng([self.seed, epoch, i]) if self.augment != "none" else None
        if self.pairs is not None:
            from p2ptools.prep.bands import read_tif

            a_path, b_path = self.pairs[i]
            fa = self.specs["A"].encode(read_tif(a_path)[0], str(a_path))
            fb = self.specs["B"].encode(read_tif(b_path)[0], str(b_path))
            if self.direction == "BtoA":
                fa, fb = fb, fa
            fa, fb = paired_transform(fa, fb, self.load_size, self.crop_size, self.augment, rng)
            return {"A": _float_tensor(fa), "B": _float_tensor(fb), "name": a_path.stem}
        a, b = read_ab(self.files[i], self.direction)
        a, b = paired_transform(a, b, self.load_size, self.crop_size, self.augment, rng)
        return {"A": to_uint8_tensor(a), "B": to_uint8_tensor(b), "name": self.files[i].stem}


def to_device_batch(batch: dict[str, Any], device: torch.device, channels_last: bool = False
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of :class:`AlignedDataset` samples on ``device`` as the network takes it.

    The copy is non-blocking (it overlaps the device's work when the loader pins memory); uint8
    images become [-1, 1] float32 there, bit-identical to :func:`p2ptools.model.tensors.to_tensor`
    on the CPU; float32 (GeoTIFF tiles) is already in range.

    Args:
        batch: ``{"A": (N, C, H, W), "B": (N, C, H, W), …}`` uint8 or float32.
        device: the training device.
        channels_last: return the channels-last memory format.

    Returns:
        ``(A, B)`` float32 on ``device``.
    """
    out = []
    for key in ("A", "B"):
        x = batch[key].to(device, non_blocking=True)
        x = uint8_to_unit(x) if x.dtype == torch.uint8 else x
        out.append(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    return out[0], out[1]


def _float_tensor(img: np.ndarray) -> torch.Tensor:
    """``(H, W[, C])`` float32 already in the network's range → ``(C, H, W)``."""
    arr = img[..., None] if img.ndim == 2 else img  # OpenCV drops a single channel when resizing
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)


def _contract_of(root: Path) -> dict[str, Any]:
    from p2ptools.runtime.output import read_dataset_json

    data = read_dataset_json(root) or {}
    if not data.get("contract"):
        raise InputError(f"{root}: GeoTIFF tile pairs need the dataset.json that p2ptools tile --format tif writes")
    return data["contract"]


class EpochSampler(Sampler[Any]):
    """A seeded permutation per epoch, optionally skipping the first ``skip`` indices (resume)
    and sharded across ``world_size`` ranks (distributed training).

    One sampler serves a whole run: :meth:`set_epoch` chooses the epoch (and the skip) before each
    one, as ``DistributedSampler.set_epoch`` does. With ``tagged`` it yields ``(epoch, i)``, so the
    dataset draws the epoch's transforms in persistent workers too (their copy of the dataset never
    sees the main process's :meth:`AlignedDataset.set_epoch`).
    """

    def __init__(self, n: int, seed: int, epoch: int = 0, skip: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, tagged: bool = False) -> None:
        self.n, self.seed, self.epoch, self.skip = n, seed, epoch, skip
        self.rank, self.world_size, self.shuffle, self.tagged = rank, world_size, shuffle, tagged

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Yield the order of ``epoch`` from now on, leaving out its first ``skip`` indices."""
        self.epoch, self.skip = epoch, skip

    def order(self) -> list[int]:
        """This rank's indices of the epoch, before skipping."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        if self.world_size > 1 and self.n % self.world_size:  # equal shards, or DDP ranks would wait forever
            idx += idx[: self.world_size - self.n % self.world_size]
        return idx[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[Any]:
        idx = self.order()[self.skip :]
        return iter([(self.epoch, i) for i in idx] if self.tagged else idx)

    def __len__(self) -> int:
        return max(0, len(self.order()) - self.skip)
