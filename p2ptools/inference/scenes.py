"""Whole-scene prediction over many scenes: a folder or list of rasters → a folder of GeoTIFFs.

Every scene is one work unit, translated by :func:`p2ptools.inference.mosaic.predict_scene` into
``OUT/<scene stem>.tif``; units run in this process, in ``workers`` local processes, or on a Dask
cluster (``dask``: a scheduler address or ``local:N``, as for ``tile``), each process loading the
generator once. Workers must see the checkpoint, the scenes and OUT (a shared file system or
object storage). Local workers on a machine with several GPUs spread over them: with ``--device
auto`` or a bare ``cuda``, worker i runs on ``cuda:(i % GPUs)``; an explicit ``cuda:K`` stays on K.

Reruns resume: an output whose ``P2PTOOLS_PREDICTION`` tag matches this run (the checkpoint file's
path, size and modification time, the scene, and every option that changes the pixels) is kept and
counted as already there; anything else p2ptools wrote there is predicted again. A scene that fails
(unreadable, or not fitting the model's data contract) is reported at the end with its reason and
the others go on. ``OUT/predict.json`` lists every scene, its output and time, and the failures,
written once at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from p2ptools.errors import DiskFullError, InputError, P2PError
from p2ptools.inference.options import PredictOptions
from p2ptools.model.checkpoints import resolve_checkpoint
from p2ptools.prep.raster import RASTER_EXTENSIONS
from p2ptools.prep.sources import RemotePath, is_list_file, is_remote, read_list
from p2ptools.runtime.output import atomic_write_text, claim_folder
from p2ptools.runtime.parallel import imap_unordered
from p2ptools.runtime.progress import Ticker, duration, report

log = logging.getLogger(__name__)

PREDICTION_TAG = "P2PTOOLS_PREDICTION"


@dataclass(frozen=True)
class SceneTask:
    """One scene to translate: the checkpoint file, the scene, the output, the options, the run's tag."""

    checkpoint: str
    scene: str
    out: str
    options: PredictOptions
    tag: str
    threads: int = 0  # torch threads in a local worker (0: leave as is)
    spread_gpus: bool = False  # a local worker: a bare cuda (or auto) becomes this worker's share of the GPUs


@dataclass
class SceneResult:
    """What happened to one scene."""

    scene: str
    out: str
    status: str  # written | existing | failed
    seconds: float = 0.0
    windows: int = 0
    error: str = ""


@dataclass
class ScenesReport:
    """What a many-scene prediction did."""

    out: Path
    checkpoint: str
    results: list[SceneResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [(r.scene, r.error) for r in self.results if r.status == "failed"]


def list_scenes(source: Path) -> list[Path | RemotePath]:
    """The rasters of a folder (``.tif``, ``.tiff``, ``.vrt``, … directly in it) or of a list file.

    Raises:
        InputError: if there are none, or two share a name (their outputs would collide).
    """
    source = Path(source)
    if is_list_file(source):
        scenes: list[Path | RemotePath] = list(read_list(source))
    elif source.is_dir():
        scenes = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in RASTER_EXTENSIONS)
    else:
        raise InputError(f"{source}: not a folder of rasters or a list file (.txt) of them")
    if not scenes:
        raise InputError(f"{source}: holds no rasters ({', '.join(sorted(RASTER_EXTENSIONS))})")
    seen: dict[str, Path | RemotePath] = {}
    for s in scenes:
        if s.stem in seen:
            raise InputError(f"{source}: two scenes named {s.stem!r} ({seen[s.stem]}, {s}); outputs are named by stem")
        seen[s.stem] = s
    return scenes


def run_tag(checkpoint: Path, scene: Path | RemotePath, options: PredictOptions) -> str:
    """What makes an output of this run: the checkpoint file's version, the scene and the options that
    change the result (:meth:`PredictOptions.scene_result`: not the device nor the batch size)."""
    st = Path(checkpoint).stat()
    what = {"checkpoint": str(Path(checkpoint).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "scene": str(scene if is_remote(scene) else Path(scene).resolve()), **options.scene_result()}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def existing_tag(out: Path) -> str | None:
    """The ``P2PTOOLS_PREDICTION`` tag of an output GeoTIFF, or None (missing, unreadable, untagged)."""
    from p2ptools.inference.scene_io import raster_tags

    return (raster_tags(out) or {}).get(PREDICTION_TAG)


def worker_device(spec: str, worker: int) -> str:
    """The ``--device`` of local worker ``worker`` (0-based): ``auto`` or a bare ``cuda`` with several
    visible GPUs becomes ``cuda:(worker % GPUs)``; anything else (``cuda:K``, ``cpu``, ``mps``, one GPU)
    is kept."""
    import torch

    if spec not in ("auto", "cuda") or not torch.cuda.is_available():
        return spec
    count = torch.cuda.device_count()
    return f"cuda:{worker % count}" if count > 1 else spec


def worker_slot() -> int:
    """This process's place among the workers of its pool, from 0 (0 in the main process too):
    multiprocessing numbers the processes a process starts 1, 2, … in start order."""
    identity = multiprocessing.current_process()._identity
    return identity[-1] - 1 if identity else 0


def predict_one(task: SceneTask) -> SceneResult:
    """Translate one scene (in any process); errors come back in the result, not raised."""
    from p2ptools.inference.mosaic import predict_scene

    if task.threads:
        import torch

        torch.set_num_threads(task.threads)
    quiet = dataclasses.replace(task.options, progress=False, window_lines=False)  # one line per scene instead
    if task.spread_gpus:
        quiet = dataclasses.replace(quiet, device=worker_device(quiet.device, worker_slot()))
    try:
        rep = predict_scene(Path(task.checkpoint), RemotePath(task.scene) if is_remote(task.scene) else
                            Path(task.scene), Path(task.out), quiet, tags={PREDICTION_TAG: task.tag})
    except DiskFullError:
        raise  # the output's disk, not this scene: the run stops, finished scenes stay
    except P2PError as exc:
        return SceneResult(task.scene, task.out, "failed", error=str(exc))
    return SceneResult(task.scene, task.out, "written", rep.seconds, rep.tiles)


def _failed(task: SceneTask, exc: BaseException) -> SceneResult:
    return SceneResult(task.scene, task.out, "failed", error=f"{type(exc).__name__}: {exc}")


def predict_scenes(run_or_ckpt: Path, source: Path, out_dir: Path, options: PredictOptions | None = None,
                   workers: int = 1, dask: str | None = None) -> ScenesReport:
    """Translate every raster of ``source`` (a folder or a list file) into ``out_dir/<stem>.tif``
    (see the module docstring).

    Args:
        run_or_ckpt: run folder or checkpoint.
        source: a folder of rasters or a list file of paths/URLs.
        out_dir: the output folder.
        options: options of every scene's prediction (``progress``: a bar, or a line per scene when
            stderr is not a terminal).
        workers: local worker processes (each gets an equal share of the CPU's threads, and of the GPUs
            under ``--device auto`` or a bare ``cuda``).
        dask: a Dask scheduler address or ``local:N`` (workers then come from the cluster).

    Raises:
        InputError: no rasters, or names that collide.
        OutputError: ``out_dir`` holds files p2ptools did not write, or lies inside the input.
        SceneFailures: if some scenes failed (after the others are done), with the reasons.
    """
    options = options or PredictOptions()
    checkpoint = resolve_checkpoint(run_or_ckpt, options.which)
    scenes = list_scenes(source)
    out_dir = Path(out_dir)
    claim_folder(out_dir, {f"{s.stem}.tif" for s in scenes} | {"predict.json"},
                 inputs=[Path(source)] if Path(source).is_dir() else [])
    rep = ScenesReport(out_dir, str(checkpoint))
    tasks = []
    for s in scenes:
        out = out_dir / f"{s.stem}.tif"
        tag = run_tag(checkpoint, s, options)
        if existing_tag(out) == tag:
            rep.results.append(SceneResult(str(s), str(out), "existing"))
            continue
        tasks.append(SceneTask(str(checkpoint), str(s), str(out), options, tag))
    local_workers = 1 if dask else max(1, min(workers, len(tasks)))
    if local_workers > 1:  # each local process gets an equal share of the CPU's threads, and of the GPUs
        threads = max(1, (os.cpu_count() or 1) // local_workers)
        tasks = [dataclasses.replace(t, threads=threads, spread_gpus=True) for t in tasks]
    start = time.perf_counter()
    with Ticker(len(tasks), "predict", "scenes", show_bar=options.progress) as bar:
        for res in imap_unordered(predict_one, tasks, local_workers, dask, on_error=_failed):
            rep.results.append(res)
            bar.update(1)
            if res.status == "failed":
                log.warning("%s", res.error if res.scene in res.error else f"{res.scene}: {res.error}")
    rep.results.sort(key=lambda r: r.scene)
    atomic_write_text(out_dir / "predict.json", json.dumps({
        "checkpoint": str(checkpoint), "input": str(source), "input_kind": "scenes", "options": asdict(options),
        "written": rep.count("written"), "existing": rep.count("existing"), "failed": rep.count("failed"),
        "scenes": [asdict(r) for r in rep.results]}, indent=2, default=str) + "\n")
    report("predicted %d scene(s) in %s (%d already there, %d failed) → %s", rep.count("written"),
           duration(time.perf_counter() - start), rep.count("existing"), rep.count("failed"), out_dir)
    return rep
