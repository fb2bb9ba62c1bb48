"""Checkpoints of a training run: what each file holds, and how many stay on disk.

A run folder holds:

- ``latest.pt`` — the full state (both networks, both optimizers and schedulers, AMP scalers, the
  epoch and the step within it, all random-number-generator states, the early-stopping state, the
  model and training configuration): what ``--resume`` continues from. Written after the first
  epoch, then every ``save_every`` steps on the CPU (every ``save_minutes`` on CUDA, where steps are
  fast and the file is large) and at the end of each epoch ending ``save_minutes`` after the last
  one, at the end of the run, on Ctrl-C and on SIGTERM.
- ``best.pt`` — the full state at the best validation L1.
- ``epoch_K.pt`` — after epoch K (1-based) every ``save_epoch_freq`` epochs: what ``predict``
  needs (generator weights, configurations, the dataset's palette and data contract), a third of a
  full checkpoint for the paper's networks; only the newest ``keep_last`` are kept.

Every file is written atomically (a temporary file and a rename) and rebuilds its generator alone.
Training writes them on a background thread from a copy of its state (:class:`CheckpointWriter`),
one at a time.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from p2ptools.config import AB_DIRECTIONS, TrainConfig, from_mapping
from p2ptools.errors import ConfigError, InputError, OutputError, P2PError
from p2ptools.model.config import ModelConfig
from p2ptools.model.nets import build_generator
from p2ptools.runtime import door
from p2ptools.runtime.device import describe_precision
from p2ptools.runtime.output import contained, foreign_files, read_dataset_json, remove_inside
from p2ptools.runtime.safeload import load_torch_file

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "p2ptools-checkpoint"
CHECKPOINT_VERSION = 2
SNAPSHOT_PATTERN = re.compile(r"^epoch_(\d+)\.pt$")
#: The paths (relative to the run folder) a training run writes; cleanups remove only these.
RUN_FILE_PATTERN = re.compile(
    r"^(?:(?:latest|best|epoch_\d+)\.pt|(?:losses|val)\.csv|loss_curves\.png|index\.html"
    r"|samples/epoch_\d+\.jpg|tensorboard/events\.out\.tfevents\.[^/]+)$")
#: the door's temporary files of those (``.latest.pt.<8 hex>.tmp``): a write cut short by SIGKILL or a
#: full disk leaves one; the run's next start removes it (:func:`clear_unfinished_writes`)
RUN_TEMP_PATTERN = re.compile(
    r"^(?:samples/)?\.(?:(?:latest|best|epoch_\d+)\.pt|(?:losses|val)\.csv|loss_curves\.png|index\.html"
    r"|epoch_\d+\.jpg)\.[0-9a-f]{8}\.tmp$")


def unwrap(net: nn.Module) -> nn.Module:
    """The module inside its DistributedDataParallel and ``torch.compile`` wrappers, in any order
    and number (or the module itself): what checkpoints save and load (a compiled module's own
    state dict names every tensor ``_orig_mod.…``)."""
    while True:
        inner = getattr(net, "_orig_mod", None)
        inner = getattr(net, "module", None) if inner is None else inner
        if not isinstance(inner, nn.Module):
            return net
        net = inner


def rng_states() -> dict[str, Any]:
    """All random-number-generator states that training draws from."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    # numpy's state as plain numbers, so that checkpoints load with torch.load(weights_only=True)
    states: dict[str, Any] = {"torch": torch.get_rng_state(),
                              "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
                              "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_states`."""
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]  # a list (now) or numpy's tuple (older checkpoints)
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclass
class RunState:
    """Where a run is: epochs finished, batches done in the current one, steps in all, early stopping.

    ``best_epoch`` is 1-based (the epoch after which ``best.pt`` was written), -1 before any.
    """

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_val_l1: float = math.inf
    best_epoch: int = -1
    epochs_since_best: int = 0
    early_stopped: bool = False
    finished: bool = False


def dataset_meta(root: Path) -> dict[str, Any] | None:
    """What the dataset's ``dataset.json`` says of its images (palette, which half is what, the data
    contract: see :mod:`p2ptools.contract`), if any."""
    data = read_dataset_json(Path(root))
    return None if data is None else {k: data[k] for k in ("kind", "A", "B", "palette", "contract") if k in data}


def checkpoint_payload(models: Any, state: RunState, mcfg: ModelConfig, tcfg: TrainConfig, full: bool,
                       dataset: dict[str, Any] | None) -> dict[str, Any]:
    """The dictionary saved to a checkpoint file; ``full=False`` keeps only what prediction needs.

    ``precision`` says what the training ran in (:func:`p2ptools.runtime.device.describe_precision`:
    ``bf16 autocast``, ``fp32 (TF32 matmul/conv)``, …), from the generator's device and the resolved
    ``models.amp``."""
    G = unwrap(models.G)
    device = next((p.device for p in G.parameters()), torch.device("cpu"))
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "full": full,
        "dataset": dataset,
        "model_config": dataclasses.asdict(mcfg),
        "train_config": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(tcfg).items()},
        "state": dataclasses.asdict(state),
        "precision": describe_precision(device, getattr(models, "amp", "none")),
        "G": G.state_dict(),
    }
    if full:
        payload.update({
            "D": unwrap(models.D).state_dict(),
            **{name: getattr(models, name).state_dict()
               for name in ("opt_G", "opt_D", "sched_G", "sched_D", "scaler_G", "scaler_D")},
            "rng": rng_states(),
        })
    return payload


def save_checkpoint(path: Path, models: Any, state: RunState, mcfg: ModelConfig, tcfg: TrainConfig,
                    full: bool = True, dataset: dict[str, Any] | None = None) -> int:
    """Atomically write a checkpoint now (streamed to a temporary file and renamed); returns its size in bytes.

    Args:
        path: the file.
        models: the run's :class:`~p2ptools.training.train.Models`.
        full: the whole training state (``latest.pt``, ``best.pt``) or the generator only (snapshots).
        dataset: the dataset description to carry (read from ``tcfg.dataset`` when None).
    """
    payload = checkpoint_payload(models, state, mcfg, tcfg, full,
                                 dataset if dataset is not None else dataset_meta(tcfg.dataset))
    return door.write_stream(path, lambda fh: torch.save(payload, fh))


def host_copy(obj: Any, buffers: dict[tuple[Any, ...], torch.Tensor] | None = None,
              key: tuple[Any, ...] = ()) -> Any:
    """``obj`` (nested dicts, lists and tuples of tensors and plain values) with every tensor copied
    to the CPU, so that training can go on changing the originals while the copy is written.

    With ``buffers``, the copies go into buffers kept there between calls (keyed by their place in
    ``obj``; new memory costs a page fault per 4 KiB, about half the time of a fresh copy of a
    686 MB state): pinned for CUDA tensors, copied without waiting (``non_blocking``), so the
    caller waits for them (a CUDA event) before reading, and reuses ``buffers`` only once the
    previous copy was written. Without, each tensor is cloned.
    """
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        if buffers is None:
            return t.to("cpu", copy=True)
        cuda = t.device.type == "cuda"
        buf = buffers.get(key)
        if buf is None or buf.shape != t.shape or buf.dtype != t.dtype or buf.stride() != t.stride():
            buf = buffers[key] = torch.empty_like(t, device="cpu", pin_memory=cuda)
        return buf.copy_(t, non_blocking=cuda)
    if isinstance(obj, dict):
        return {k: host_copy(v, buffers, (*key, k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [host_copy(v, buffers, (*key, i)) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    return obj


class CheckpointWriter:
    """Writes checkpoints on one background thread, from a copy, so that training does not wait for the disk.

    :meth:`save` copies the state to the CPU (the only part the training thread waits for, besides a
    previous write still under way: at most one is in flight) and hands the file to the thread, which
    streams it to a temporary file and renames it into place (atomic, as every p2ptools file). An
    error of the thread is raised in the training thread at the next :meth:`save` or :meth:`wait`.
    """

    def __init__(self) -> None:
        self._thread: Any = None
        self._error: BaseException | None = None
        self._buffers: dict[tuple[Any, ...], torch.Tensor] = {}  # the copy's, reused (one write at a time)
        self.written: list[tuple[Path, int]] = []  # (file, bytes) of each finished write

    def save(self, path: Path, models: Any, state: RunState, mcfg: ModelConfig, tcfg: TrainConfig,
             full: bool = True, dataset: dict[str, Any] | None = None, then: Any = None) -> None:
        """Start writing ``path`` (:func:`save_checkpoint`'s arguments); ``then()`` runs on the thread after it.

        Raises:
            P2PError: the error of the previous write (a full disk, a link planted at its file …).
        """
        import threading

        self.wait()
        payload = checkpoint_payload(models, state, mcfg, tcfg, full,
                                     dataset if dataset is not None else dataset_meta(tcfg.dataset))
        copy = host_copy(payload, self._buffers)
        event = None
        gpu = next((t.device for t in _gpu_tensors(payload)), None)
        if gpu is not None:  # the copies above are queued on that GPU's stream, not the current device's
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(gpu))
        self._thread = threading.Thread(target=self._write, args=(Path(path), copy, event, then),
                                        name=f"p2ptools checkpoint {Path(path).name}")
        self._thread.start()

    def _write(self, path: Path, payload: dict[str, Any], event: Any, then: Any) -> None:
        try:
            if event is not None:
                event.synchronize()
            size = door.write_stream(path, lambda fh: torch.save(payload, fh))
            self.written.append((path, size))
            if then is not None:
                then()
        except BaseException as exc:  # raised again in the training thread
            self._error = exc

    def wait(self) -> None:
        """Wait for the write under way, if any.

        Raises:
            P2PError: its error, in one line naming the file (an unexpected one as an OutputError).
        """
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is None:
            return
        if isinstance(error, P2PError):
            raise error
        said = " ".join(str(error).split())[:240]
        raise OutputError(f"writing a checkpoint failed ({type(error).__name__}: {said}); the previous file of "
                          "that name is kept") from error


def _gpu_tensors(payload: Any) -> Any:
    """The CUDA tensors of a checkpoint payload (nested dicts and lists), in order."""
    if isinstance(payload, torch.Tensor):
        if payload.is_cuda:
            yield payload
    elif isinstance(payload, dict):
        for v in payload.values():
            yield from _gpu_tensors(v)
    elif isinstance(payload, (list, tuple)):
        for v in payload:
            yield from _gpu_tensors(v)


def upgrade_train_config(tc: dict[str, Any]) -> dict[str, Any]:
    """A version-1 checkpoint's training configuration in today's fields.

    Version 1 counted ``epochs`` at the constant rate plus ``epochs_decay``; now ``epochs`` is the
    total and ``decay_epochs`` the decaying tail.
    """
    tc = dict(tc)
    if "num_workers" in tc:
        tc["workers"] = tc.pop("num_workers")
    if "epochs_decay" in tc:
        decay = int(tc.pop("epochs_decay"))
        tc["epochs"] = int(tc["epochs"]) + decay
        tc["decay_epochs"] = decay
    return tc


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    ``mmap``: map the file, so that only the tensors used are read (prediction needs the generator
    alone, a third of a full checkpoint).

    The file is read as data only (tensors and plain values; :mod:`p2ptools.runtime.safeload`):
    a checkpoint whose pickle names any other Python object is refused and nothing in it runs. Its
    model configuration passes :meth:`ModelConfig.validate <p2ptools.model.config.ModelConfig.validate>`
    here (unknown keys, vocabularies, bounds, sizes), before any caller builds a network from it, and
    is returned as validated; so is its training direction.

    Raises:
        InputError: if the file is missing, unreadable, unsafe or not a p2ptools checkpoint, or its
            configuration is invalid (naming the file and the setting).
    """
    path = Path(path)
    ckpt = load_torch_file(path, map_location, what="checkpoint", mmap=mmap)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not a p2ptools checkpoint")
    if not isinstance(ckpt.get("train_config"), dict):
        raise InputError(f"{path}: not a p2ptools checkpoint (no train_config mapping)")
    ckpt["model_config"] = dataclasses.asdict(checkpoint_model_config(ckpt, path))
    ckpt["train_config"] = upgrade_train_config(ckpt["train_config"])
    direction = ckpt["train_config"].get("direction", "AtoB")
    if direction not in AB_DIRECTIONS:
        raise InputError(f"{path}: train_config: direction must be one of {', '.join(AB_DIRECTIONS)}, "
                         f"got {direction!r}")
    ckpt.setdefault("full", "opt_G" in ckpt)
    return ckpt


def checkpoint_model_config(ckpt: dict[str, Any], path: Path) -> ModelConfig:
    """The validated model configuration a checkpoint stores (:func:`p2ptools.config.from_mapping`).

    Raises:
        InputError: naming ``path`` and the unknown key (with the valid ones) or the invalid setting
            (for a network too big: what it would need).
    """
    source = f"{path}: model_config"
    try:
        return from_mapping(ModelConfig, ckpt.get("model_config"), source)  # type: ignore[arg-type]
    except ConfigError as exc:  # from_mapping's own errors name the source; validate's do not
        message = str(exc) if str(exc).startswith(source) else f"{source}: {exc}"
        raise InputError(message) from None


def snapshots(run_dir: Path) -> list[tuple[int, Path]]:
    """The run's ``epoch_K.pt`` files as ``(K, path)``, oldest first."""
    found = []
    for p in Path(run_dir).glob("epoch_*.pt"):
        m = SNAPSHOT_PATTERN.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def prune_snapshots(run_dir: Path, keep_last: int) -> list[Path]:
    """Remove all but the newest ``keep_last`` ``epoch_K.pt`` files (0 keeps all); returns the removed."""
    if keep_last <= 0:
        return []
    removed = [p for _, p in snapshots(run_dir)[:-keep_last]]
    return [p for p in removed if remove_inside(Path(run_dir), p.name, "run folder")]


def resolve_checkpoint(run_or_file: Path, which: str = "latest") -> Path:
    """The checkpoint file of a run folder (``latest``, ``best`` or ``epoch_K``), or a file as given.

    Raises:
        InputError: if it does not exist, listing the checkpoints the run has.
    """
    p = Path(run_or_file)
    if p.is_file():
        return p
    if not p.is_dir():
        raise InputError(f"{p}: no such run folder or checkpoint file")
    target = p / f"{which}.pt"
    official = p / f"{which}_net_G.pth"  # a checkpoints/NAME folder of the official code
    if not target.is_file() and official.is_file():
        return official
    if not target.is_file():
        have = ", ".join(sorted(c.stem for c in p.glob("*.pt"))) or "none"
        raise InputError(f"{p}: has no {which}.pt (checkpoints there: {have})")
    return target


def load_generator(run_or_file: Path, which: str = "latest", device: torch.device | str = "cpu"
                   ) -> tuple[nn.Module, ModelConfig, dict[str, Any]]:
    """Rebuild a trained generator from a checkpoint alone (full or snapshot).

    Returns:
        The generator (on ``device``, in eval mode), its model config and the checkpoint's
        ``path``, ``train_config``, ``state`` and ``dataset`` (palette and halves, or None).
    """
    path = resolve_checkpoint(run_or_file, which)
    from p2ptools.model.official import is_official_checkpoint, load_official_generator

    if is_official_checkpoint(path):  # a generator of the official pix2pix/CycleGAN code
        return load_official_generator(path, device)
    ckpt = load_checkpoint(path, mmap=True)  # the discriminator and optimiser states stay on disk
    mcfg = ModelConfig(**ckpt["model_config"])  # validated by load_checkpoint
    G = build_generator(mcfg.generator, mcfg.generator_kwargs())
    load_weights(G, ckpt.get("G"), path, "generator")
    G.to(device).eval()
    meta = {"path": str(path), "train_config": ckpt["train_config"], "state": ckpt["state"],
            "dataset": ckpt.get("dataset")}
    if ckpt.get("official"):  # imported from the official code: its uint8 conversion, for equal outputs
        meta["official"] = ckpt["official"]
    return G, mcfg, meta


def load_weights(net: nn.Module, state: Any, path: Path, what: str) -> None:
    """Load the state dict ``state`` of a checkpoint into ``net``, or refuse in one line naming the file.

    Raises:
        InputError: when ``state`` is not a state dict of tensors (missing, damaged, crafted) or its
            tensors do not fit the network the checkpoint's ``model_config`` describes.
    """
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise InputError(f"{path}: holds no {what} weights p2ptools can read (missing or not a state dict of "
                         "tensors); the file is damaged or was not written by p2ptools")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        said = " ".join(str(exc).split())
        raise InputError(f"{path}: its {what} weights do not fit the network its model_config describes "
                         f"({said[:240]}{'…' if len(said) > 240 else ''})") from None


def run_files(run_dir: Path) -> list[Path]:
    """The files of ``run_dir`` that a training run writes (:data:`RUN_FILE_PATTERN`), and nothing else
    (a link is never one: p2ptools makes none)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    def ours(rel: str) -> bool:
        return bool(RUN_FILE_PATTERN.match(rel) or RUN_TEMP_PATTERN.match(rel))

    return [p for p in sorted(run_dir.rglob("*"))
            if p.is_file() and not p.is_symlink() and ours(p.relative_to(run_dir).as_posix())
            and contained(run_dir, p.relative_to(run_dir)) is not None]


def clear_unfinished_writes(run_dir: Path) -> list[Path]:
    """Remove the temporary files of writes that a killed run left in ``run_dir`` (:data:`RUN_TEMP_PATTERN`;
    call it holding the run's lock, so that no other process is writing them)."""
    run_dir = Path(run_dir)
    left = [p for p in run_files(run_dir) if RUN_TEMP_PATTERN.match(p.relative_to(run_dir).as_posix())]
    removed = [p for p in left if remove_inside(run_dir, p.relative_to(run_dir), "run folder")]
    if removed:
        log.info("%s: removed %d unfinished write(s) of an earlier run (%s)", run_dir, len(removed),
                 ", ".join(p.name for p in removed[:3]))
    return removed


def foreign_run_files(run_dir: Path) -> list[str]:
    """Files in ``run_dir`` that a training run does not write (relative paths, sorted)."""
    return foreign_files(Path(run_dir), {p.relative_to(run_dir).as_posix() for p in run_files(run_dir)})


def clear_run(run_dir: Path) -> list[Path]:
    """Remove what a training run wrote in ``run_dir`` (checkpoints, logs, samples) and the folders this
    empties; nothing else."""
    removed = [p for p in run_files(run_dir) if remove_inside(Path(run_dir), p.relative_to(run_dir), "run folder")]
    for folder in ("samples", "tensorboard"):
        door.remove_empty_folder(Path(run_dir) / folder)
    return removed
