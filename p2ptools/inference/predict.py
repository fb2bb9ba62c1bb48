"""``p2ptools predict``: run a trained generator over a folder of images.

Inference mode. The paper keeps dropout and BatchNorm batch statistics at test time. p2ptools
defaults to eval mode instead — no dropout, BatchNorm running statistics — because (1) the output
is then a deterministic function of the input, so evaluation numbers are reproducible, and (2) with
batch statistics every image (or tile of a large scene) is normalised by its own statistics, which
shifts colours between neighbouring tiles and shows as seams in mosaics. ``dropout=True`` and
``batch_stats=True`` reproduce the paper's test-time behaviour.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from p2ptools.contract import check_label_image, from_checkpoint
from p2ptools.errors import InputError, P2PError
from p2ptools.inference.engine import EngineRequest, make_engine
from p2ptools.inference.options import PredictOptions
from p2ptools.inference.pipeline import Consumer
from p2ptools.model.checkpoints import load_generator
from p2ptools.model.tensors import resize_square, set_inference_mode, to_image, to_tensor
from p2ptools.prep.bands import is_tif_split
from p2ptools.prep.dataset import read_ab
from p2ptools.prep.images import image_size, list_images, load_rgb8
from p2ptools.runtime import door
from p2ptools.runtime.device import select_device
from p2ptools.runtime.output import (
    DATASET_FILE,
    atomic_write_text,
    check_distinct_outputs,
    check_not_inside,
    claim_folder,
    write_geotiff,
    write_image,
)
from p2ptools.runtime.progress import bar as progress_bar
from p2ptools.runtime.progress import report

log = logging.getLogger(__name__)

#: threads decoding and resizing a folder's next images while the network runs (OpenCV releases the GIL)
DECODE_THREADS = min(4, os.cpu_count() or 1)
#: batches decoded ahead of the network, and batches of outputs queued for the writer thread
CHUNKS_AHEAD = 2


@dataclass
class PredictReport:
    """What a prediction run did.

    Args:
        out: output folder.
        checkpoint: the checkpoint used.
        input_kind: ``ab`` or ``a``.
        written: images written.
        skipped: (file, reason) of inputs that could not be used.
    """

    out: Path
    checkpoint: str
    input_kind: str
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def detect_input_kind(folder: Path, files: list[Path]) -> str:
    """``ab`` for an aligned dataset split (a dataset.json beside or above it, or the first 50 images
    all 2:1, read from their headers), else ``a``."""
    if (folder / DATASET_FILE).is_file() or (folder.parent / DATASET_FILE).is_file():
        return "ab"
    sizes = []
    for p in files[:50]:
        try:
            sizes.append(image_size(p))
        except P2PError:
            continue
    return "ab" if sizes and all(w == 2 * h for w, h in sizes) else "a"


@dataclass
class LoadedModel:
    """A generator loaded for prediction: the module (in its inference mode), its config, the
    checkpoint's metadata and the device."""

    G: nn.Module
    mcfg: Any
    meta: dict[str, Any]
    device: torch.device


def predict_folder(run_or_ckpt: Path, input_dir: Path, out_dir: Path,
                   options: PredictOptions | None = None) -> PredictReport:
    """Translate every image of ``input_dir`` and write ``out_dir/<stem>.png``.

    Args:
        run_or_ckpt: a run folder or a checkpoint file.
        input_dir: a folder of A images, an aligned A|B split (``train/``, ``val/``, ``test/``), or a
            split of GeoTIFF tile pairs (``tile --format tif``: :func:`predict_tif_split`).
        out_dir: output folder.
        options: the common fields of :class:`PredictOptions` and the folder ones (dropout,
            batch_stats, side_by_side); None: the defaults.

    Raises:
        InputError: if the folder has no images or the checkpoint cannot be read.
    """
    options = options or PredictOptions()
    dev = select_device(options.device)
    G, mcfg, meta = load_generator(run_or_ckpt, options.which, dev)
    set_inference_mode(G, options.dropout, options.batch_stats)
    if options.batch_stats and options.batch_size != 1:  # the paper's test mode normalises each image by itself
        log.info("--batch-stats on: one image per forward pass, so no output depends on its batch-mates")
        options = dataclasses.replace(options, batch_size=1)
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    check_not_inside(out_dir, [input_dir])
    model = LoadedModel(G, mcfg, meta, dev)
    if is_tif_split(input_dir):
        return predict_tif_split(model, input_dir, out_dir, options, run_or_ckpt)
    return _predict_images(model, input_dir, out_dir, options, run_or_ckpt)


def _predict_images(model: LoadedModel, input_dir: Path, out_dir: Path, options: PredictOptions,
                    run_or_ckpt: Path) -> PredictReport:
    """:func:`predict_folder` on a folder of images (A, or A|B pairs)."""
    mcfg, meta = model.mcfg, model.meta
    files = input_images(input_dir, out_dir)
    kind = detect_input_kind(input_dir, files) if options.input_kind == "auto" else options.input_kind
    check_distinct_outputs(out_dir, ((p.name, f"{p.stem}.png") for p in files))
    claim_folder(out_dir, {f"{d}{p.stem}.png" for p in files for d in ("", "side_by_side/")} | {"predict.json"},
                 inputs=[input_dir])
    run = make_engine(model.G, meta, EngineRequest(mcfg.in_channels, mcfg.image_size, model.device, options.amp,
                                                   options.training_layers), options.engine)
    job = _FolderJob(mcfg, meta, kind, run, options.side_by_side, out_dir)
    report("predict: %d %s image(s) of %s with %s (%s, %d px) → %s", len(files), kind, input_dir, meta["path"],
           job.direction, mcfg.image_size, out_dir)
    rep = PredictReport(out_dir, meta["path"], kind)
    with progress_bar(len(files), "predict", "img", options.progress) as bar:
        job.run_all(files, options.batch_size, rep, bar)
    if job.resized:
        report("predict: %d image(s) were not %d px (the model's size): translated at %d px and resized back to "
               "their own size", job.resized, mcfg.image_size, mcfg.image_size)
    write_prediction_record(out_dir, run_or_ckpt, meta, input=str(input_dir), input_kind=kind,
                            dropout=options.dropout, batch_stats=options.batch_stats, image_size=mcfg.image_size,
                            written=rep.written, resized_back=job.resized)
    return rep


def input_images(folder: Path, out_dir: Path | None = None) -> list[Path]:
    """The images directly in ``folder`` (what predict translates).

    Raises:
        InputError: no images; for a dataset root, naming its split folders and the command to use.
    """
    files = [p for p in list_images(folder, exclude=out_dir) if p.parent == folder]
    if not files:
        raise InputError(no_images_message(folder))
    return files


def no_images_message(folder: Path) -> str:
    """``folder: no images`` — and, for a dataset root, which split folders it has."""
    from p2ptools.prep.images import IMAGE_EXTENSIONS

    root = Path(folder)
    splits = [s for s in ("train", "val", "test") if (root / s).is_dir()
              and any(p.suffix.lower() in IMAGE_EXTENSIONS or p.name in ("A", "B") for p in (root / s).iterdir())]
    if splits:
        pick = "test" if "test" in splits else splits[-1]
        return (f"{folder}: no images here, but it is a dataset with split folders {', '.join(s + '/' for s in splits)}"
                f"; give one of them, e.g. {Path(folder) / pick}")
    return f"{folder}: no images"


@dataclass
class _FolderJob:
    """Translating batches of one folder: read (checked against the data contract) → run → write."""

    mcfg: Any
    meta: dict[str, Any]
    kind: str
    engine: Any
    side_by_side: bool
    out_dir: Path
    resized: int = 0

    def __post_init__(self) -> None:
        self.direction = self.meta["train_config"].get("direction", "AtoB")
        self.contract = from_checkpoint(self.meta.get("dataset"))
        self.reads_labels = self.contract.roles(self.direction)[0] == "label" and self.contract.palette is not None
        self.official = bool(self.meta.get("official"))

    def load(self, p: Path) -> tuple[np.ndarray, np.ndarray | None]:
        """The input (and target) image of ``p`` at its own size (label maps checked against the palette)."""
        a, b = read_ab(p, self.direction) if self.kind == "ab" else (load_rgb8(p), None)
        if self.reads_labels:  # the data contract: a label → photo model reads label maps
            check_label_image(a, self.contract.palette, str(p), self.meta["path"])  # type: ignore[arg-type]
        return a, b

    def prepared(self, p: Path) -> tuple[Path, np.ndarray, np.ndarray | None, torch.Tensor] | P2PError:
        """``(p, input, target, network input)`` of ``p``, or why it cannot be used (on a decoding thread)."""
        try:
            a, b = self.load(p)
        except P2PError as exc:
            return exc
        return p, a, b, to_tensor(resize_square(a, self.mcfg.image_size))

    def run_all(self, files: list[Path], batch_size: int, rep: PredictReport, bar: Any) -> None:
        """Translate ``files`` in batches of ``batch_size`` (in order) with the network on this thread,
        while :data:`DECODE_THREADS` threads decode and resize the next :data:`CHUNKS_AHEAD` batches and a
        writer thread encodes and writes the outputs (the same files, names and order as
        :meth:`run_batch`, one batch at a time); unreadable inputs go to ``rep.skipped``."""
        chunks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
        stop = threading.Event()
        with ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="p2ptools-decode") as pool, \
                Consumer(lambda item: self.write(*item, rep), CHUNKS_AHEAD, stop, "p2ptools-predict-writer") as out:
            pending: deque[tuple[list[Path], list[Future[Any]]]] = deque()
            for i in range(len(chunks)):
                for chunk in chunks[i + len(pending) : i + CHUNKS_AHEAD + 1]:
                    pending.append((chunk, [pool.submit(self.prepared, p) for p in chunk]))
                chunk, futures = pending.popleft()
                loaded = []
                for p, future in zip(chunk, futures, strict=True):
                    result = future.result()
                    if isinstance(result, P2PError):
                        rep.skipped.append((str(p), str(result)))
                    else:
                        loaded.append(result)
                if loaded:
                    out.put(([(q, a, b) for q, a, b, _ in loaded], self.engine(torch.stack([x for *_, x in loaded]))))
                bar.update(len(chunk))

    def run_batch(self, chunk: list[Path], rep: PredictReport) -> None:
        """Translate ``chunk``; unreadable inputs go to ``rep.skipped``, outputs keep each input's size."""
        size = self.mcfg.image_size
        loaded = []
        for p in chunk:
            try:
                loaded.append((p, *self.load(p)))
            except P2PError as exc:
                rep.skipped.append((str(p), str(exc)))
        if not loaded:
            return
        x = torch.stack([to_tensor(resize_square(a, size)) for _, a, _ in loaded])  # (N, C, size, size)
        self.write(loaded, self.engine(x), rep)  # (N, C, size, size) in [-1, 1]

    def write(self, loaded: list[tuple[Path, np.ndarray, np.ndarray | None]], y: torch.Tensor,
              rep: PredictReport) -> None:
        """Write the outputs ``y`` of ``loaded`` at each input's own size (and side by side where asked)."""
        for (p, a, b), out in zip(loaded, y, strict=True):
            img = to_image(out, truncate=self.official)  # official generators: as their test.py writes
            if img.shape[:2] != a.shape[:2]:  # back to the input's own size (bicubic, as it was read)
                img = cv2.resize(img, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_CUBIC)
                self.resized += 1
            write_image(self.out_dir / f"{p.stem}.png", img)
            if self.side_by_side:
                panels = [a, img] + ([b] if b is not None else [])
                write_image(self.out_dir / "side_by_side" / f"{p.stem}.png", np.concatenate(panels, axis=1))
            rep.written += 1


def write_prediction_record(out_dir: Path, run_or_ckpt: Path, meta: dict[str, Any], **fields: Any) -> None:
    """``OUT/predict.json``: the run, checkpoint, direction, training dataset and data contract of the
    predictions, so ``evaluate`` knows the target half and the baseline (and names the run)."""
    p = Path(run_or_ckpt)
    run = p if p.is_dir() else (p.parent if (p.parent / "latest.pt").exists() or p.name.endswith(".pt") else None)
    dataset = meta.get("dataset") or {}
    atomic_write_text(out_dir / "predict.json", json.dumps({
        "run": str(run) if run is not None else None, "checkpoint": meta["path"],
        "direction": meta["train_config"].get("direction", "AtoB"), "dataset": meta["train_config"].get("dataset"),
        "contract": dataset.get("contract"), **fields,
    }, indent=2, default=str) + "\n")


def predict_tif_split(model: LoadedModel, input_dir: Path, out_dir: Path, options: PredictOptions,
                      run_or_ckpt: Path | None = None) -> PredictReport:
    """Translate a split of GeoTIFF tile pairs (``tile --format tif``): the model's input half of each
    pair → ``OUT/<tile>.tif`` with the tile's CRS and transform, in the target's dtype and bands
    (labels as class values with the palette as colour table).

    Raises:
        InputError: if the run was not trained on GeoTIFF tiles, or their bands differ.
    """
    from p2ptools.prep.bands import half_specs, tif_pairs

    mcfg, meta = model.mcfg, model.meta
    dataset = meta.get("dataset") or {}
    if not (dataset.get("contract") or {}).get("tif"):
        raise InputError(f"{input_dir}: holds GeoTIFF tile pairs, but the model {meta['path']} was trained on image "
                         "pairs; train on the GeoTIFF tiles (tile --format tif) to translate them")
    specs = half_specs(dataset["contract"])
    halves = ("A", "B") if meta["train_config"].get("direction", "AtoB") == "AtoB" else ("B", "A")
    pairs = tif_pairs(input_dir)
    claim_folder(out_dir, {f"{a.stem}.tif" for a, _ in pairs} | {"predict.json"}, inputs=[input_dir])
    door.ensure_folder(out_dir)
    rep = PredictReport(out_dir, meta["path"], "tif")
    run = make_engine(model.G, meta, EngineRequest(mcfg.in_channels, mcfg.image_size, model.device, options.amp,
                                                   options.training_layers), options.engine)
    with progress_bar(len(pairs), "predict", "tile", options.progress) as bar:
        for start in range(0, len(pairs), options.batch_size):
            chunk = pairs[start : start + options.batch_size]
            rep.written += _tif_batch(run, model, chunk, (specs[halves[0]], specs[halves[1]]), halves[0], out_dir)
            bar.update(len(chunk))
    write_prediction_record(out_dir, run_or_ckpt or Path(meta["path"]), meta, input=str(input_dir), input_kind="tif",
                            image_size=mcfg.image_size, written=rep.written)
    return rep


def _tif_batch(run: Any, model: LoadedModel, chunk: list[tuple[Path, Path]], specs: tuple[Any, Any], src: str,
               out_dir: Path) -> int:
    """Translate one batch of GeoTIFF tile pairs (the ``src`` half of each, read with ``specs[0]``) and write
    the outputs (decoded with ``specs[1]``); returns how many were written.

    Raises:
        InputError: for a tile whose band count is not the model's.
    """
    from p2ptools.prep.bands import read_tif

    read_spec, write_spec = specs
    inputs, geos = [], []
    for a, b in chunk:
        path = a if src == "A" else b
        data, geo = read_tif(path)
        if data.shape[0] != (1 if read_spec.role == "label" else read_spec.channels):
            raise InputError(f"{path}: {data.shape[0]} band(s); the model {model.meta['path']} reads "
                             f"{read_spec.channels}")
        inputs.append(resize_square(read_spec.encode(data, str(path)), model.mcfg.image_size))
        geos.append(geo)
    x = torch.stack([torch.from_numpy(np.ascontiguousarray(np.atleast_3d(i))).permute(2, 0, 1)
                     for i in inputs]).to(model.device)
    y = run(x).float().cpu().numpy()  # (N, C, size, size) in [-1, 1]
    label = write_spec.role == "label"
    colormap = {c["value"]: (*c["color"], 255) for c in write_spec.palette["classes"]} if label else None
    for (a, _), out, geo in zip(chunk, y, geos, strict=True):
        write_geotiff(out_dir / f"{a.stem}.tif", write_spec.decode(out), {"compress": "deflate", **geo}, colormap)
    return len(chunk)
