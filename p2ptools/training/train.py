"""Training pix2pix: losses, one training step, the fit loop.

``fit`` runs ``epochs`` epochs in all: the learning rate stays constant, then decays linearly to 0
over the last ``decay_epochs`` (by default the preset's share of the run: half for the paper).
Which checkpoints are written, and how many stay, is said in :mod:`p2ptools.model.checkpoints`. Each
epoch logs one line (steps, time, mean losses, validation L1, best so far, ETA) whatever the
terminal; the progress bar shows only on a terminal.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from p2ptools.config import TrainConfig
from p2ptools.errors import ConfigError, InputError, P2PError
from p2ptools.model.checkpoints import (
    CheckpointWriter,
    RunState,
    clear_unfinished_writes,
    dataset_meta,
    foreign_run_files,
    load_checkpoint,
    load_generator,
    load_weights,
    prune_snapshots,
    resolve_checkpoint,
    set_rng_states,
    unwrap,
)
from p2ptools.model.config import ModelConfig, check_model_and_training
from p2ptools.model.tensors import to_image
from p2ptools.prep.dataset import has_images
from p2ptools.runtime import door
from p2ptools.runtime.device import autocast, describe_precision, select_device
from p2ptools.runtime.lock import hold
from p2ptools.runtime.output import atomic_write_bytes, check_not_inside, refuse_foreign, write_image
from p2ptools.runtime.progress import Ticker, duration, report
from p2ptools.runtime.progress import bar as progress_bar
from p2ptools.runtime.space import human_bytes
from p2ptools.training.accel import (
    loader_options,
    resolve_workers,
    use_channels_last,
)
from p2ptools.training.data import AlignedDataset, EpochSampler, to_device_batch
from p2ptools.training.distributed import from_rank0, gather, init_device, process_ranks
from p2ptools.training.run_page import write_run_page
from p2ptools.training.step import (
    LOSS_NAMES,
    LossMeter,
    Models,
    TrainingDiverged,
    build_models,
    gan_loss,
    lr_factor,
    step_losses,
    train_step,
)

__all__ = ["LOSS_NAMES", "Models", "RunState", "TrainingDiverged", "build_models", "fit", "lr_factor",
           "load_checkpoint", "load_generator", "resolve_checkpoint", "select_device", "step_losses", "train_step",
           "validate"]

log = logging.getLogger(__name__)

LOSS_COLUMNS = ["epoch", "step", "lr", "loss_D", "loss_G_GAN", "loss_G_L1", "sec_per_step"]
VAL_COLUMNS = ["epoch", "step", "val_l1_255", "val_G_GAN", "val_D"]


class TrainingInterrupted(P2PError):
    """Training was interrupted (Ctrl-C); the state was saved for ``--resume``."""


# --- the fit loop ---------------------------------------------------------------------------------

@dataclass
class FitResult:
    """What :func:`fit` did.

    Args:
        run_dir: the run folder.
        state: the final run state.
        history: one dict per validation (epoch, val_l1_255, …).
        stopped_by: ``epochs``, ``max_steps`` or ``patience``.
    """

    run_dir: Path
    state: RunState
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_by: str = "epochs"


class _Logs:
    """losses.csv / val.csv appenders, optional TensorBoard."""

    def __init__(self, run_dir: Path, resume_step: int | None, enabled: bool) -> None:
        self.enabled = enabled
        self.losses, self.val = run_dir / "losses.csv", run_dir / "val.csv"
        self.tb: Any = None
        if not enabled:
            return
        for path, cols in ((self.losses, LOSS_COLUMNS), (self.val, VAL_COLUMNS)):
            rows = []
            if resume_step is not None and path.is_file() and not path.is_symlink():  # drop rows after the checkpoint
                with path.open(newline="") as fh:
                    rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
            door.write_text(path, buf.getvalue())  # atomic, never through a link
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def add(self, path: Path, cols: list[str], row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=cols, lineterminator="\n").writerow({k: row.get(k, "") for k in cols})
        door.append_text(path, buf.getvalue())
        if self.tb is not None:
            for k, v in row.items():
                if k not in ("epoch", "step") and isinstance(v, float) and math.isfinite(v):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _loader(ds: AlignedDataset, tcfg: TrainConfig, device: torch.device, sampler: EpochSampler | None = None
            ) -> DataLoader:
    """A split's loader for the whole run, pinned memory on CUDA (see
    :func:`p2ptools.training.accel.loader_options`). With a sampler (training), persistent workers
    and the sampler's epoch set before each epoch; without (validation, one pass per epoch), at most
    2 workers started for each pass rather than a second full set kept for the run. The generator
    only seeds the workers' global generators, which the dataset does not draw from, so the global
    torch generator (dropout) is untouched by the loader."""
    workers = resolve_workers(tcfg.workers, device)
    options = loader_options(workers if sampler is not None else min(workers, 2), tcfg.batch_size, device,
                             persistent=sampler is not None)
    log.info("loader: %d worker(s) (--workers %s)%s", options["num_workers"], tcfg.workers,
             ", pinned memory" if options["pin_memory"] else "")
    return DataLoader(ds, batch_size=tcfg.batch_size, sampler=sampler,
                      generator=torch.Generator().manual_seed(tcfg.seed), **options)


@torch.no_grad()
def validate(m: Models, loader: DataLoader, tcfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Validation losses with the generator in eval mode (running BatchNorm statistics, no dropout).

    Returns:
        ``val_l1_255`` (mean absolute error on the 0–255 scale), ``val_G_GAN`` and ``val_D``.
    """
    G, D = unwrap(m.G), unwrap(m.D)
    G.eval()
    D.eval()
    l1 = gg = dd = 0.0
    n = 0
    for batch in loader:
        A, B = to_device_batch(batch, device)
        with autocast(device, m.amp):
            fake = G(A)
            pf, pr = D(torch.cat([A, fake], 1)), D(torch.cat([A, B], 1))
        k = A.shape[0]
        l1 += F.l1_loss(fake.float().clamp(-1, 1), B, reduction="mean").item() * 127.5 * k
        gg += gan_loss(pf, True, tcfg.gan_loss).item() * k
        dd += 0.5 * (gan_loss(pf, False, tcfg.gan_loss) + gan_loss(pr, True, tcfg.gan_loss)).item() * k
        n += k
    G.train()
    D.train()
    return {"val_l1_255": l1 / max(n, 1), "val_G_GAN": gg / max(n, 1), "val_D": dd / max(n, 1)}


@torch.no_grad()
def save_samples(G: nn.Module, ds: AlignedDataset, path: Path, device: torch.device, count: int = 4
                 ) -> np.ndarray | None:
    """A JPEG grid (quality 90: a few tens of kB), one row per sample: input | target | output
    (generator in eval mode); returns it."""
    G = unwrap(G)
    was_training = G.training
    G.eval()
    rows = []
    for i in range(min(count, len(ds))):
        item = ds[i]
        A, B = to_device_batch({"A": item["A"][None], "B": item["B"][None]}, device)
        rows.append(np.concatenate([to_image(A[0]), to_image(B[0]), to_image(G(A)[0])], axis=1))
    G.train(was_training)
    if not rows:
        return None
    grid = np.concatenate(rows, axis=0)
    write_image(path, grid, "jpg", 90)
    return grid


def plot_losses(run_dir: Path) -> Path | None:
    """Plot ``losses.csv`` (and ``val.csv``) to ``loss_curves.png``; None when there is nothing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    losses = pd.read_csv(run_dir / "losses.csv") if (run_dir / "losses.csv").is_file() else None
    if losses is None or losses.empty:
        return None
    val = pd.read_csv(run_dir / "val.csv") if (run_dir / "val.csv").is_file() else None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, col in zip(axes[:2], ("loss_D", "loss_G_GAN"), strict=True):
        ax.plot(losses["step"], losses[col], lw=0.8)
        ax.set_title(col)
        ax.set_xlabel("step")
    axes[2].plot(losses["step"], losses["loss_G_L1"] * 127.5, lw=0.8, label="train L1 (0–255)")
    if val is not None and not val.empty:
        axes[2].plot(val["step"], val["val_l1_255"], "o-", label="val L1 (0–255)")
    axes[2].set_title("L1")
    axes[2].legend()
    fig.tight_layout()
    out = run_dir / "loss_curves.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out


def check_tile_size(mcfg: ModelConfig, files: list[Path], dataset: Path) -> None:
    """Warn when the model's size and the dataset's images differ (they are resized, silently otherwise).

    The dataset's ``dataset.json`` tile size is used when there is one; else the first image's header.
    """
    from p2ptools.runtime.output import read_dataset_json

    meta = read_dataset_json(dataset) or {}
    size = (meta.get("params") or {}).get("size")
    if size is None and files:
        from p2ptools.prep.images import image_size

        try:
            size = image_size(files[0])[1]  # the header's height, nothing decoded
        except P2PError:
            size = None
    if size is None or size == mcfg.image_size:
        return
    how = "upsampled" if mcfg.load_size > size else "downsampled"
    log.warning("model %s trains on %d-px crops (load_size %d) but the images of %s are %d px: they are %s; "
                "for the model at the data's size use --set model.image_size=%d --set model.load_size=%d "
                "(num_downs ≤ %d)", mcfg.name, mcfg.image_size, mcfg.load_size, dataset, size, how, size,
                size + size // 8 if size % 32 == 0 else size, max(1, (size & -size).bit_length() - 1))


class _Trainer:
    """One run's loop: epochs of steps, then validation, checkpoints, samples and a log line."""

    def __init__(self, mcfg: ModelConfig, tcfg: TrainConfig, resume: bool, progress: bool) -> None:
        self.rank, self.world, local_rank = process_ranks()
        self.main = self.rank == 0
        self.device = init_device(tcfg, self.world, local_rank)
        check_model_and_training(mcfg, tcfg)
        self.mcfg, self.tcfg, self.run_dir = mcfg, tcfg, tcfg.out
        check_not_inside(self.run_dir, [tcfg.dataset])
        refuse_foreign(self.run_dir, foreign_run_files(self.run_dir))
        if self.main:  # one writer per run folder (a second train or --resume of it is refused)
            hold(self.run_dir)
            clear_unfinished_writes(self.run_dir)  # a killed run's half-written checkpoint
        if not resume and (self.run_dir / "latest.pt").exists():
            raise ConfigError(f"{self.run_dir}: already holds a run (latest.pt); "
                              f"use --resume {self.run_dir} or another --out")
        refuse_foreign(self.run_dir, foreign_run_files(self.run_dir))
        door.ensure_folder(self.run_dir)
        torch.manual_seed(tcfg.seed)
        np.random.seed(tcfg.seed % 2**32)
        random.seed(tcfg.seed)
        self.train_ds, self.val_ds = _datasets(mcfg, tcfg)
        c_in, c_out = self.train_ds.channels
        if (c_in, c_out) != (mcfg.in_channels, mcfg.out_channels):  # N-band GeoTIFF tiles set the channels
            log.info("channels from the data: %d in, %d out", c_in, c_out)
            mcfg = self.mcfg = dataclasses.replace(mcfg, in_channels=c_in, out_channels=c_out)
        if self.main and not resume and self.train_ds.pairs is None:
            check_tile_size(mcfg, self.train_ds.files, tcfg.dataset)
        self.m = build_models(mcfg, tcfg, self.device)
        self.state = RunState()
        if resume:
            self.state = _restore(self.m, self.run_dir / "latest.pt", mcfg, tcfg)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [local_rank] if self.device.type == "cuda" else None
            self.m.G, self.m.D = DDP(self.m.G, device_ids=ids), DDP(self.m.D, device_ids=ids)
        self.dataset_meta = dataset_meta(tcfg.dataset)
        self.logs = _Logs(self.run_dir, self.state.global_step if resume else None, enabled=self.main)
        self.steps_per_epoch = math.ceil(len(self.train_ds) / (tcfg.batch_size * self.world))
        self.history: list[dict[str, float]] = []
        self.stopped_by = "epochs"
        self.saved_step = self.state.global_step
        self.saved_at = time.monotonic()
        self.saved_epochs = 0  # latest.pt files this process wrote at an epoch's end
        self.space_checked = False
        self.by_time = self.device.type == "cuda"  # latest.pt within an epoch every save_minutes, not save_every
        self.meter = LossMeter(self.device)
        self.writer = CheckpointWriter()
        self.epoch_times: list[float] = []
        self.loaders: dict[str, DataLoader] = {}  # built at their first use, kept for the run (see loader())
        self.bar = progress_bar(tcfg.epochs * self.steps_per_epoch, "train", "step", progress and self.main,
                                self.state.global_step)

    def save(self, name: str, full: bool = True, then: Any = None) -> None:
        """Write ``RUN/<name>.pt`` on the writer's thread (rank 0 only; ``then()`` runs there after it); the
        first full checkpoint checks the free space first. Every process keeps the count of saves."""
        if self.main:
            if full and not self.space_checked:
                check_checkpoint_space(self.run_dir, self.m)
                self.space_checked = True
            self.writer.save(self.run_dir / f"{name}.pt", self.m, self.state, self.mcfg, self.tcfg, full,
                             self.dataset_meta, then)
        if name == "latest":
            self.saved_step = self.state.global_step
            self.saved_at = time.monotonic()
            self.saved_epochs += 1

    def save_interrupted(self) -> str:
        """Write ``latest.pt`` on Ctrl-C (and wait for it), unless the steps since the last check
        diverged (this process's losses, or non-finite weights from another's); returns what was done."""
        latest = self.run_dir / "latest.pt"
        if self.main:
            self.writer.wait()
            weights = [p for net in (self.m.G, self.m.D) for p in net.parameters()]
            if self.meter.diverged() or not bool(torch.stack([p.isfinite().all() for p in weights]).all()):
                return f"a loss had become NaN or infinite, so the last good {latest} was kept"
        self.save("latest")
        self.writer.wait()
        return f"saved {latest}"

    def finish_writing(self) -> None:
        """Wait for the checkpoint being written; its error is raised unless another one is under way."""
        import sys

        if sys.exc_info()[0] is None:
            self.writer.wait()
            return
        try:
            self.writer.wait()
        except P2PError as exc:  # the error being raised says more of what went wrong first
            log.error("%s", exc)

    def steps_due(self) -> bool:
        """Whether ``save_every`` steps have passed since ``latest.pt`` (on the CPU; on CUDA, where steps
        are fast and the file large, ``save_minutes`` counts instead): the same on every process."""
        return not self.by_time and self.state.global_step - self.saved_step >= self.tcfg.save_every

    def minutes_due(self) -> bool:
        """Whether ``save_minutes`` have passed since ``latest.pt`` (this process's clock: rank 0's decides)."""
        return time.monotonic() - self.saved_at >= self.tcfg.save_minutes * 60

    def latest_due(self) -> bool:
        """Whether ``latest.pt`` is written at this epoch's end: after the first epoch this process
        trains, then when ``save_minutes`` have passed since the last one (or ``save_every`` steps on
        the CPU). Rank 0's decision (only it writes)."""
        return self.saved_epochs == 0 or self.steps_due() or self.minutes_due()

    def check(self, save_asked: bool = False) -> tuple[dict[str, float], bool]:
        """Read the losses of the steps since the last check: one synchronisation with the device,
        and under torchrun one gather that every process joins at the same step.

        Args:
            save_asked: rank 0 asks for ``latest.pt`` now (time-based saving); shared with all processes.

        Returns:
            The last step's losses (NaN for a loss it did not compute) and whether rank 0 asked to save.

        Raises:
            TrainingDiverged: on every process alike, when a loss of any process was NaN or infinite,
                naming the loss, the process (under torchrun), the epoch and the first such step.
        """
        meter = self.meter
        mine = torch.cat([meter.packed(), torch.full((1,), float(save_asked), device=self.device)])
        rows = gather(mine, self.world)
        # the first step that went wrong; in it, the first loss computed (D's, then G's, which a NaN in
        # D's gradients, averaged over the processes, spoils everywhere)
        bad = [(row[6 + i], i, rank, row[9 + i]) for rank, row in enumerate(rows) for i in range(len(LOSS_NAMES))
               if row[6 + i] >= 0]
        if bad:
            step, i, rank, value = min(bad)
            where = f" on process {rank} of {self.world}" if self.world > 1 else ""
            raise TrainingDiverged(f"{LOSS_NAMES[i]} became {value}{where} at epoch {self.state.epoch + 1}, "
                                   f"step {int(step)}")
        row = rows[self.rank]
        for i, k in enumerate(LOSS_NAMES):
            if meter.counts[k]:
                self.sums[k] = self.sums.get(k, 0.0) + row[i]
                self.counts[k] = self.counts.get(k, 0) + meter.counts[k]
        last = {k: row[3 + i] if k in meter.last_names else math.nan for i, k in enumerate(LOSS_NAMES)}
        meter.reset()
        return last, bool(rows[0][-1])

    def loader(self, split: str) -> DataLoader:
        """The ``train`` or ``val`` loader, built at its first use and kept for the run, so its
        workers start once; the training sampler yields ``(epoch, index)`` for them."""
        if split not in self.loaders:
            ds = self.train_ds if split == "train" else self.val_ds
            assert ds is not None
            sampler = (EpochSampler(len(ds), self.tcfg.seed, rank=self.rank, world_size=self.world, tagged=True)
                       if split == "train" else None)
            self.loaders[split] = _loader(ds, self.tcfg, self.device, sampler)
        return self.loaders[split]

    def run(self) -> FitResult:
        """Train until the epochs are done, ``max_steps`` is reached or early stopping stops it."""
        tcfg, state = self.tcfg, self.state
        if state.epoch < tcfg.epochs and self.main:
            report("training %s on %s: %d epochs (constant lr %.2g for %d, linear decay to 0 over %d), "
                   "%d steps per epoch, batch %d, %s%s", self.mcfg.name, tcfg.dataset, tcfg.epochs, tcfg.lr,
                   tcfg.n_constant, tcfg.n_decay, self.steps_per_epoch, tcfg.batch_size, self.device,
                   f", {describe_precision(self.device, self.m.amp)}")
        while state.epoch < tcfg.epochs and not state.early_stopped:
            if not self.run_epoch():
                break
            self.end_epoch()
        self.check()  # the steps since the last check (max_steps) are good before latest.pt is written
        if state.early_stopped and self.main:
            self.writer.wait()  # best.pt is on disk
            best = load_checkpoint(self.run_dir / "best.pt")
            unwrap(self.m.G).load_state_dict(best["G"])
            unwrap(self.m.D).load_state_dict(best["D"])
            report("early stop after epoch %d: restored the best weights (epoch %d, val L1 %.2f)",
                   state.epoch, state.best_epoch, state.best_val_l1)
        state.finished = self.stopped_by != "max_steps"
        self.save("latest")
        return FitResult(self.run_dir, state, self.history, self.stopped_by)

    def run_epoch(self) -> bool:
        """The steps of the current epoch (from where it stopped); False when ``max_steps`` ended it.

        The losses stay on the device; they are read (and checked) every ``log_every`` steps, at the
        epoch's last step and before every ``latest.pt`` within the epoch (:meth:`check`).
        """
        tcfg, state = self.tcfg, self.state
        self.train_ds.set_epoch(state.epoch)
        loader = self.loader("train")
        sampler = loader.sampler
        sampler.set_epoch(state.epoch, state.step_in_epoch * tcfg.batch_size)
        channels_last = use_channels_last(tcfg.channels_last, self.device)
        self.t_epoch = time.perf_counter()
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.t_last, self.logged_step = time.perf_counter(), state.global_step
        # a line at least every minute within an epoch (a 400-step epoch on a CPU takes minutes)
        ticker = Ticker(len(sampler), f"epoch {state.epoch + 1}/{tcfg.epochs}", "steps", steps=0,
                        every=60.0 if self.main else 0.0,
                        extra=lambda: " ".join(f"{k.removeprefix('loss_')} {self.sums[k] / self.counts[k] * (127.5 if k == 'loss_G_L1' else 1):.3f}"  # noqa: E501
                                               for k in ("loss_G_GAN", "loss_D", "loss_G_L1") if k in self.sums))
        for batch in loader:
            if tcfg.max_steps is not None and state.global_step >= tcfg.max_steps:
                self.stopped_by = "max_steps"
                return False
            self.step(batch, channels_last)
            self.bar.update(1)
            ticker.update(1)
        if self.meter.counts["loss_D"]:  # an epoch shorter than steps_per_epoch: its steps are checked too
            self.check()
        return True

    def step(self, batch: dict[str, torch.Tensor], channels_last: bool) -> None:
        """One training step, then its log row and ``latest.pt`` when they are due."""
        tcfg, state = self.tcfg, self.state
        A, B = to_device_batch(batch, self.device, channels_last)
        update_G = (state.global_step + 1) % tcfg.n_critic == 0
        self.meter.add(step_losses(self.m, A, B, tcfg, self.device, update_G), state.global_step)
        state.step_in_epoch += 1
        state.global_step += 1
        log_due = state.global_step % tcfg.log_every == 0 or state.step_in_epoch == self.steps_per_epoch
        save_due = self.steps_due()
        if not (log_due or save_due):
            return
        losses, asked = self.check(save_asked=self.by_time and self.main and self.minutes_due())
        if log_due and self.main:  # a row per epoch at least
            now = time.perf_counter()
            self.logs.add(self.logs.losses, LOSS_COLUMNS, {
                "epoch": state.epoch + 1, "step": state.global_step, "lr": self.m.opt_G.param_groups[0]["lr"],
                **losses, "sec_per_step": (now - self.t_last) / max(1, state.global_step - self.logged_step)})
            self.t_last, self.logged_step = now, state.global_step
            self.bar.set_postfix(D=f"{losses['loss_D']:.3f}", L1=f"{losses['loss_G_L1']:.3f}")
        if save_due or asked:
            self.save("latest")

    def end_epoch(self) -> None:
        """Schedule, validation, checkpoints, samples and the epoch's log line."""
        tcfg, state, m = self.tcfg, self.state, self.m
        lr = m.opt_G.param_groups[0]["lr"]
        m.sched_G.step()
        m.sched_D.step()
        state.epoch += 1
        state.step_in_epoch = 0
        val = self.validate_epoch()
        if from_rank0(self.latest_due(), self.world):  # rank 0's clock: every process counts the save
            self.save("latest")
        if self.main:
            if tcfg.save_epoch_freq and state.epoch % tcfg.save_epoch_freq == 0:
                self.save(f"epoch_{state.epoch}", full=False,
                          then=lambda: prune_snapshots(self.run_dir, tcfg.keep_last))
            grid = save_samples(m.G, self.val_ds or self.train_ds,
                                self.run_dir / "samples" / f"epoch_{state.epoch:03d}.jpg", self.device)
            if self.logs.tb is not None and grid is not None:
                self.logs.tb.add_image("samples (input | target | output)", grid, state.epoch, dataformats="HWC")
        self.epoch_times.append(time.perf_counter() - self.t_epoch)
        if self.main:
            write_run_page(self.run_dir, self.mcfg, self.tcfg, state)
            report(self.epoch_line(lr, val))

    def validate_epoch(self) -> dict[str, float] | None:
        """Validate after an epoch, keep ``best.pt`` and the early-stopping count.

        Rank 0 validates (its networks are the ones its checkpoints hold, BatchNorm statistics
        included) and sends the scores to the other processes, so ``best.pt`` and early stopping are
        decided alike everywhere.
        """
        tcfg, state = self.tcfg, self.state
        if self.val_ds is None:
            return None
        v = validate(self.m, self.loader("val"), tcfg, self.device) if self.main else None
        v = from_rank0(v, self.world)
        row = {"epoch": state.epoch, "step": state.global_step, **v}
        self.history.append(row)
        self.logs.add(self.logs.val, VAL_COLUMNS, row)
        if v["val_l1_255"] < state.best_val_l1:
            state.best_val_l1, state.best_epoch, state.epochs_since_best = v["val_l1_255"], state.epoch, 0
            self.save("best")
        else:
            state.epochs_since_best += 1
        if tcfg.patience and state.epochs_since_best >= tcfg.patience:
            state.early_stopped = True
            self.stopped_by = "patience"
        return v

    def epoch_line(self, lr: float, val: dict[str, float] | None) -> str:
        """``epoch 3/200 · 400 steps · 61.8s · G_GAN 0.81 D 0.52 L1 23.4 · val L1 24.1 (best 23.9 @2) · ETA 3h12m``."""
        state, tcfg = self.state, self.tcfg
        means = {k: self.sums[k] / self.counts[k] for k in self.sums}
        parts = [f"epoch {state.epoch}/{tcfg.epochs}", f"{state.global_step} steps", f"{self.epoch_times[-1]:.1f}s",
                 f"lr {lr:.2g}",
                 " ".join(f"{k.removeprefix('loss_')} {means[k] * (127.5 if k == 'loss_G_L1' else 1):.3f}"
                          for k in ("loss_G_GAN", "loss_D", "loss_G_L1") if k in means)]
        if val is not None:
            parts.append(f"val L1 {val['val_l1_255']:.2f} (best {state.best_val_l1:.2f} at epoch {state.best_epoch})")
        left = tcfg.epochs - state.epoch
        parts.append(f"ETA {duration(left * epoch_seconds(self.epoch_times, tcfg.epochs))}" if left else "done")
        return " · ".join(parts)


def epoch_seconds(times: list[float], epochs: int) -> float:
    """The expected time of the coming epochs, for the ETA: the mean of the recent epochs (the last
    tenth of the run, at least 10), leaving out the first epoch once there are others (start-up)
    and epochs over 3× the median (another program's burst, a slow disk): periodic costs such as
    snapshots stay in the mean, one-off stalls do not swing the estimate."""
    if not times:
        return 0.0
    usable = times[1:] if len(times) > 1 else times
    recent = usable[-max(10, epochs // 10):]
    median = float(np.median(recent))
    kept = [t for t in recent if t <= 3 * median] or recent
    return sum(kept) / len(kept)


def _datasets(mcfg: ModelConfig, tcfg: TrainConfig) -> tuple[AlignedDataset, AlignedDataset | None]:
    """The training split and the validation split (None when ``val/`` holds no images)."""
    train_ds = AlignedDataset(tcfg.dataset, "train", tcfg.direction, mcfg.load_size, mcfg.image_size,
                              tcfg.augment, seed=tcfg.seed)
    _leave_out_unreadable(train_ds, "train")
    if has_images(tcfg.dataset / "val"):
        val_ds = AlignedDataset(tcfg.dataset, "val", tcfg.direction, mcfg.load_size, mcfg.image_size,
                                "none", limit=tcfg.val_images)
        _leave_out_unreadable(val_ds, "val")
        return train_ds, val_ds
    log.warning("%s has no val/ images: nothing is validated, best.pt is not written%s", tcfg.dataset,
                " and early stopping (--patience) is off" if tcfg.patience else "")
    return train_ds, None


def _leave_out_unreadable(ds: AlignedDataset, split: str) -> None:
    """Check that every image of a split decodes before the first step; leave out (and list) the
    ones that do not, so a damaged file never stops a run hours in."""
    bad = ds.drop_unreadable()
    if bad:
        shown = "; ".join(f"{Path(f).name}: {why}" for f, why in bad[:5]) + (" …" if len(bad) > 5 else "")
        log.warning("%s: %d of %d %s image(s) cannot be read and are left out of training: %s",
                    Path(bad[0][0]).parent, len(bad), len(bad) + len(ds), split, shown)


def _restore(m: Models, path: Path, mcfg: ModelConfig, tcfg: TrainConfig) -> RunState:
    """Load the full state of ``path`` into ``m``; the learning rate follows today's schedule."""
    ckpt = load_checkpoint(path)
    if dataclasses.asdict(ModelConfig(**ckpt["model_config"])) != dataclasses.asdict(mcfg):
        raise ConfigError(f"{path}: was trained with another model configuration")
    if not ckpt.get("full"):
        raise ConfigError(f"{path}: is a generator-only snapshot; --resume needs a full latest.pt")
    load_weights(unwrap(m.G), ckpt.get("G"), path, "generator")
    load_weights(unwrap(m.D), ckpt.get("D"), path, "discriminator")
    try:
        for name in ("opt_G", "opt_D", "sched_G", "sched_D"):
            getattr(m, name).load_state_dict(ckpt[name])
        _restore_scalers(m, ckpt, path)
        state = RunState(**ckpt["state"])
        set_rng_states(ckpt["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # a damaged or crafted file, not a bug
        raise InputError(f"{path}: its training state cannot be restored ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:200]}); resume from another checkpoint or start anew") from None
    state.finished = False
    for sched in (m.sched_G, m.sched_D):  # the schedule may have changed (more epochs, another decay)
        for group, base in zip(sched.optimizer.param_groups, sched.base_lrs, strict=True):
            group["lr"] = base * lr_factor(state.epoch, tcfg.epochs, tcfg.n_decay)
    where = (f"after epoch {state.epoch}" if state.step_in_epoch == 0 else
             f"in epoch {state.epoch + 1} after its step {state.step_in_epoch}")
    report("resuming %s %s, at step %d", path.parent, where, state.global_step)
    return state


def _restore_scalers(m: Models, ckpt: dict[str, Any], path: Path) -> None:
    """Load the fp16 loss scalers' state where both the checkpoint's and today's scalers are on.

    A scaler that was off (fp32, bf16, the CPU) saves ``{}``: resuming such a run with ``--amp fp16``
    starts the scalers anew (torch's initial scale), and resuming an fp16 run in another precision
    leaves the saved scale unused; each says so in one log line.

    Raises:
        KeyError: when the checkpoint has no scaler entry (a damaged file; the caller names it).
        TypeError: when an entry is not a mapping.
    """
    for name in ("scaler_G", "scaler_D"):
        saved, scaler = ckpt[name], getattr(m, name)
        if not isinstance(saved, dict):
            raise TypeError(f"{name} is {type(saved).__name__}, not a state dict")
        if saved and scaler.is_enabled():
            scaler.load_state_dict(saved)
        elif scaler.is_enabled() and name == "scaler_G":
            log.info("%s: was trained without fp16 loss scaling; the fp16 loss scalers start anew (scale %g)",
                     path, scaler.get_scale())
        elif saved and name == "scaler_G":
            log.info("%s: was trained with fp16 loss scaling; %s does not scale losses, the saved scale is unused",
                     path, m.amp if m.amp != "none" else "fp32")


def checkpoint_bytes(m: Models) -> int:
    """The size of a full checkpoint of ``m``: both networks' weights and buffers, the optimizers'
    state (Adam: two moments per parameter) and a little more for the rest."""
    def tensors(net: nn.Module) -> int:
        return sum(t.numel() * t.element_size() for t in unwrap(net).state_dict().values())

    params = sum(p.numel() * p.element_size() for net in (m.G, m.D) for p in net.parameters())
    return tensors(m.G) + tensors(m.D) + 2 * params + (1 << 20)


def check_checkpoint_space(run_dir: Path, m: Models) -> None:
    """Warn when the file system of ``run_dir`` cannot hold a full checkpoint being written beside
    the previous one (a temporary file, then a rename)."""
    import shutil

    need = checkpoint_bytes(m)
    free = shutil.disk_usage(run_dir).free
    if free < 2 * need:
        log.warning("%s: %s free; a full checkpoint (latest.pt, best.pt) takes %s and is written beside the "
                    "previous one (%s at once): free some space, or --out on another disk", run_dir,
                    human_bytes(free), human_bytes(need), human_bytes(2 * need))


def fit(mcfg: ModelConfig, tcfg: TrainConfig, resume: bool = False, progress: bool = True) -> FitResult:
    """Train a pix2pix model on ``tcfg.dataset`` into ``tcfg.out``.

    Args:
        mcfg: the networks.
        tcfg: the training options.
        resume: continue from ``tcfg.out/latest.pt`` (weights, optimizers, schedulers, data order
            and random states), so the continuation equals an uninterrupted run.
        progress: show a progress bar (on a terminal; the per-epoch log lines come regardless).

    Returns:
        The result (final state, validation history, why it stopped).

    Raises:
        TrainingDiverged: if a loss becomes NaN/inf, on every process at once under torchrun. The
            losses are checked every ``log_every`` steps, at each epoch's end and before each
            ``latest.pt``: a divergence stops training within ``log_every`` steps, and a checkpoint
            written is never one of diverged weights (the last good ``latest.pt`` is kept).
        TrainingInterrupted: on Ctrl-C or SIGTERM, after saving ``latest.pt``.
        P2PError: for a bad dataset or configuration.
    """
    trainer = _Trainer(mcfg, tcfg, resume, progress)
    run_dir, state = trainer.run_dir, trainer.state
    try:
        result = trainer.run()
    except KeyboardInterrupt:
        saved = trainer.save_interrupted()
        raise TrainingInterrupted(
            f"interrupted at epoch {state.epoch + 1}, step {state.global_step}; {saved}; "
            f"continue with: p2ptools train --resume {run_dir}") from None
    except TrainingDiverged as exc:
        trainer.writer.wait()  # the last good checkpoint, if one was being written
        kept = (f"the last good checkpoint is {run_dir / 'latest.pt'}" if (run_dir / "latest.pt").exists()
                else "no checkpoint had been written yet")
        raise TrainingDiverged(f"{exc}; training stopped, {kept} (try a lower --lr, or --amp none)") from None
    finally:
        trainer.bar.close()
        trainer.logs.close()
        trainer.loaders.clear()  # their persistent workers end with them
        trainer.finish_writing()
    if trainer.main:
        plot_losses(run_dir)
        write_run_page(run_dir, trainer.mcfg, tcfg, state)
    if trainer.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return result


#: Training settings a resumed run cannot change (the data order, the optimizer state or the
#: losses would no longer match the checkpoint).
FIXED_ON_RESUME: tuple[str, ...] = ("dataset", "direction", "batch_size", "optimizer", "gan_loss", "n_critic", "seed")


def resume_configs(run_dir: Path, model_overrides: dict[str, Any], train_overrides: dict[str, Any],
                   preset: str | None = None) -> tuple[ModelConfig, TrainConfig, list[str]]:
    """The configurations to continue ``run_dir`` with, after the overrides given on resuming.

    Args:
        run_dir: the run folder (its ``latest.pt`` is read).
        model_overrides: model fields given again (a network cannot change on resume).
        train_overrides: training fields given again (epochs, patience, device … may change).
        preset: the ``--model`` given again (its fields are in ``model_overrides``), for the message.

    Returns:
        The model and training configurations, and one line per changed setting (``epochs: 200 → 300``).

    Raises:
        ConfigError: for a change that cannot work on resume, in one line naming it.
    """
    from p2ptools.config import from_mapping
    from p2ptools.runtime.settings import changed_settings, format_change, plain

    ckpt = load_checkpoint(Path(run_dir) / "latest.pt")
    if not ckpt.get("full"):
        what = "an imported official generator" if ckpt.get("official") else "a generator-only checkpoint"
        raise ConfigError(f"{run_dir}: latest.pt is {what}, without the discriminator and optimizer states "
                          "that --resume continues; train a new run (its predictions work as they are)")
    mcfg = ModelConfig(**ckpt["model_config"])
    data_set = {"in_channels", "out_channels"}  # set from the data when training started, not by a preset
    given = {k: v for k, v in model_overrides.items() if not (preset and k in data_set)}
    new_model = from_mapping(ModelConfig, {**ckpt["model_config"], **given}, "--set model")
    bad = changed_settings(plain(dataclasses.asdict(mcfg)), plain(dataclasses.asdict(new_model)), "model.")
    if bad:
        what = f"--model {preset}" if preset else "--set model.…"
        nets = [c for c in bad if c[0] != "model.name"] or bad  # the name is said already
        shown = "; ".join(format_change(*c) for c in nets[:6]) + ("; …" if len(nets) > 6 else "")
        raise ConfigError(f"{run_dir}: is a run of model {mcfg.name} (ngf {mcfg.ngf}, {mcfg.generator}); {what} "
                          f"would change its networks ({shown}), which a resumed run cannot: resume without it, "
                          "or start a new run with another --out")
    old = ckpt["train_config"]
    tcfg = from_mapping(TrainConfig, {**old, **train_overrides, "out": run_dir}, "--resume")
    changes = []
    for key, before, after in changed_settings(plain(old), plain(dataclasses.asdict(tcfg))):
        if key == "out" or (key == "dataset" and Path(before).resolve() == Path(after).resolve()):
            continue
        (bad if key in FIXED_ON_RESUME else changes).append((key, before, after))
    if bad:
        raise ConfigError(f"{run_dir}: cannot resume with {'; '.join(format_change(*c) for c in bad)} (the "
                          "checkpoint's networks, optimizer state or data order depend on it); start a new run "
                          "with another --out")
    return mcfg, tcfg, [format_change(*c) for c in changes]
