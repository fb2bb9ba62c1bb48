"""The training dataset and its loader: uint8 across processes, [-1, 1] on the device bit for bit as
before, and one persistent-worker loader per run giving the batches a loader per epoch gave."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from p2ptools.config import TrainConfig
from p2ptools.model.tensors import to_tensor, uint8_to_unit, unit_by_lookup
from p2ptools.prep.dataset import read_ab
from p2ptools.training.data import AlignedDataset, EpochSampler, paired_transform, to_device_batch
from p2ptools.training.train import _loader

CPU = torch.device("cpu")


def _png_pairs(root: Path, n: int) -> Path:
    """``n`` random 64-px A|B PNG pairs (64×128) in ``root/train``."""
    rng = np.random.default_rng(7)
    (root / "train").mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(root / "train" / f"{i:03d}.png"), rng.integers(0, 256, (64, 128, 3), dtype=np.uint8))
    return root


def _old_sample(ds: AlignedDataset, epoch: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The float path of p2ptools before uint8 samples: read, transform, ``to_tensor`` on the CPU."""
    rng = np.random.default_rng([ds.seed, epoch, i]) if ds.augment != "none" else None
    a, b = read_ab(ds.files[i], ds.direction)
    a, b = paired_transform(a, b, ds.load_size, ds.crop_size, ds.augment, rng)
    return to_tensor(a), to_tensor(b)


def test_every_byte_maps_to_the_float_of_to_tensor():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    want = to_tensor(img)
    x = torch.from_numpy(img).permute(2, 0, 1)
    for got in (uint8_to_unit(x), unit_by_lookup(x)):  # the CPU's formula; the GPU's look-up
        assert got.dtype == torch.float32 and torch.equal(got.view(torch.int32), want.view(torch.int32))
    # why a look-up off the CPU: CUDA divides by a scalar as a multiplication by its reciprocal
    assert not torch.equal(x.float() * torch.tensor(1 / 127.5) - 1, want)


@pytest.mark.parametrize("augment", ["flip", "d4", "none"])
def test_uint8_samples_are_bit_identical_to_the_old_float_path(tmp_path, augment):
    root = _png_pairs(tmp_path / "ab", 4)
    ds = AlignedDataset(root, "train", load_size=72, crop_size=64, augment=augment, seed=3)
    for epoch in (0, 5):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            assert item["A"].dtype == torch.uint8 and item["A"].shape == (3, 64, 64)
            assert ds[(epoch, i)]["A"].equal(item["A"])  # the epoch carried by the index
            A, B = to_device_batch({"A": item["A"][None], "B": item["B"][None]}, CPU, channels_last=True)
            old_a, old_b = _old_sample(ds, epoch, i)
            assert A.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(A[0].view(torch.int32), old_a.view(torch.int32))
            assert torch.equal(B[0].view(torch.int32), old_b.view(torch.int32))


def test_float_batches_pass_through_unchanged():
    x = torch.rand(2, 4, 8, 8) * 2 - 1  # GeoTIFF tiles: float32 already in the network's range
    A, B = to_device_batch({"A": x, "B": -x}, CPU)
    assert A is x and torch.equal(B, -x)


def test_sampler_set_epoch_and_tagged_indices():
    s = EpochSampler(10, seed=1, tagged=True)
    s.set_epoch(2, skip=4)
    assert list(s) == [(2, i) for i in EpochSampler(10, seed=1, epoch=2, skip=4)] and len(s) == 6
    s.set_epoch(3)
    assert [i for _, i in s] == list(EpochSampler(10, seed=1, epoch=3)) and {e for e, _ in s} == {3}


def _batches(loader: DataLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [to_device_batch(b, CPU) for b in loader]


def test_one_persistent_loader_gives_the_batches_of_a_loader_per_epoch(tmp_path):
    root = _png_pairs(tmp_path / "ab", 10)
    ds = AlignedDataset(root, "train", load_size=72, crop_size=64, augment="flip", seed=3)
    tcfg = TrainConfig(dataset=root, out=tmp_path / "run", batch_size=3, workers=2, seed=3)
    sampler = EpochSampler(len(ds), tcfg.seed, tagged=True)
    loader = _loader(ds, tcfg, CPU, sampler)
    assert loader.persistent_workers and loader.num_workers == 2
    pids = set()
    for epoch, skip in ((0, 3), (1, 0), (2, 0)):  # the first as a resumed run's: its first batch done
        ds.set_epoch(epoch)  # what the old loop did; persistent workers never see it
        old = DataLoader(ds, batch_size=3, sampler=EpochSampler(len(ds), tcfg.seed, epoch, skip), num_workers=2,
                         generator=torch.Generator().manual_seed(tcfg.seed + epoch))
        sampler.set_epoch(epoch, skip)
        new = _batches(loader)
        pids.add(tuple(sorted(w.pid for w in loader._iterator._workers)))
        assert len(new) == len(old) and len(new) == (len(ds) - skip + 2) // 3
        for (a, b), (oa, ob) in zip(new, _batches(old), strict=True):
            assert torch.equal(a, oa) and torch.equal(b, ob)
    assert len(pids) == 1  # the same worker processes served all three epochs
    del loader


def test_untagged_persistent_workers_would_repeat_the_first_epoch(tmp_path):
    """Why the sampler carries the epoch: a worker's copy of the dataset keeps the epoch it started with."""
    root = _png_pairs(tmp_path / "ab", 4)
    ds = AlignedDataset(root, "train", load_size=72, crop_size=64, augment="flip", seed=3)
    sampler = EpochSampler(len(ds), 3, shuffle=False)
    loader = DataLoader(ds, batch_size=4, sampler=sampler, num_workers=1, persistent_workers=True)
    first = to_device_batch(next(iter(loader)), CPU)[0]
    ds.set_epoch(1)
    again = to_device_batch(next(iter(loader)), CPU)[0]
    assert torch.equal(first, again)  # the worker drew epoch 0's crops again
    sampler.tagged, sampler.epoch = True, 1
    assert not torch.equal(first, to_device_batch(next(iter(loader)), CPU)[0])


def test_the_lookup_table_is_copied_to_a_device_once(monkeypatch):
    """A copy of the table per call is a blocking host → GPU copy: the host would wait for the device at
    every step. The table is copied once per device and reused."""
    from p2ptools.model import tensors

    monkeypatch.setattr(tensors, "_UNIT_ON", {})
    copies = []
    real_to = torch.Tensor.to

    def counting_to(self, *args, **kwargs):
        if self is tensors._UNIT_OF_BYTE:
            copies.append(args)
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", counting_to)
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    first, second = tensors.unit_by_lookup(x), tensors.unit_by_lookup(x)
    assert torch.equal(first, second) and len(copies) == 1
