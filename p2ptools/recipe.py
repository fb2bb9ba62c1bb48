"""``p2ptools run RECIPE``: one YAML file chains data → train → predict → evaluate.

A recipe (``recipes/*.yaml``) holds every parameter of a dataset's pipeline::

    name: inria
    workdir: runs/inria              # where every stage writes (relative to the current folder)
    data:                            # exactly one of: tile, make_inpaint, dataset
      tile: {src: data/AerialImageDataset/train, size: 256}
    train: {model: pix2pix, augment: d4, set: {model: {ngf: 64}}}
    fcn: {epochs: 20}                # optional: a segmenter for the fcn metric
    predict: {split: test}
    evaluate: {metrics: [l1, psnr, ssim, fid, kid]}

Stages write to ``WORKDIR/data``, ``WORKDIR/run``, ``WORKDIR/seg``, ``WORKDIR/predictions/<split>``
and ``WORKDIR/report``. Each stage is skipped when its output is complete and newer than its
input, and resumes when it was interrupted, so rerunning a recipe continues where it stopped.
``{sample}`` in a path stands for the labelled sample scene shipped with p2ptools.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2ptools.config import (
    InpaintConfig,
    ModelConfig,
    TileConfig,
    TrainConfig,
    from_mapping,
    load_preset,
    read_yaml_mapping,
)
from p2ptools.errors import ConfigError
from p2ptools.output import atomic_write_text

log = logging.getLogger(__name__)

SECTIONS = ("name", "description", "workdir", "data", "train", "fcn", "predict", "evaluate")
PREDICT_KEYS = {"split", "which", "batch_size", "device", "amp"}
FCN_KEYS = {"palette", "label_side", "arch", "size", "epochs", "batch_size", "lr", "workers", "device", "seed"}


def recipes_dir() -> Path:
    """The bundled ``recipes/`` folder (beside the package in a clone or editable install)."""
    return Path(__file__).resolve().parents[1] / "recipes"


def sample_root() -> Path:
    """The labelled sample scene shipped in the package (Inria layout: images/ + gt/)."""
    return Path(__file__).resolve().parent / "data" / "sample"


def _substitute(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("{sample}", str(sample_root()))
    if isinstance(value, dict):
        return {k: _substitute(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v) for v in value]
    return value


@dataclass
class Recipe:
    """A validated recipe (see the module docstring)."""

    name: str
    workdir: Path
    data_kind: str
    data: dict[str, Any]
    model: ModelConfig
    train: dict[str, Any]
    predict: dict[str, Any]
    evaluate: dict[str, Any]
    fcn: dict[str, Any] | None = None
    description: str = ""
    source: str = ""

    @property
    def data_dir(self) -> Path:
        return Path(self.data["dataset"]) if self.data_kind == "dataset" else self.workdir / "data"


def _set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = doc
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {k} is not a section")
    node[keys[-1]] = value


def load_recipe(spec: str | Path, workdir: Path | None = None, sets: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe: a file, or the name of a bundled one (``sample``, ``inria`` …).

    Args:
        spec: path or bundled name.
        workdir: overrides the recipe's ``workdir``.
        sets: dotted overrides, e.g. ``{"train.epochs": 1, "data.tile.size": 512}``.

    Raises:
        ConfigError: for unknown sections or fields, or invalid values, naming the recipe.
    """
    path = Path(spec)
    if not path.is_file():
        bundled = recipes_dir() / f"{spec}.yaml"
        if not bundled.is_file():
            names = ", ".join(sorted(p.stem for p in recipes_dir().glob("*.yaml")))
            raise ConfigError(f"recipe {spec!r} is neither a file nor a bundled recipe ({names})")
        path = bundled
    doc = read_yaml_mapping(path)
    for dotted, value in (sets or {}).items():
        _set_path(doc, dotted, value)
    doc = _substitute(doc)
    src = str(path)
    unknown = sorted(set(doc) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{src}: unknown section(s) {', '.join(unknown)}; valid: {', '.join(SECTIONS)}")
    name = str(doc.get("name", path.stem))
    wd = Path(workdir) if workdir is not None else Path(doc.get("workdir", f"runs/{name}"))
    data = doc.get("data") or {}
    kinds = [k for k in ("tile", "make_inpaint", "dataset") if k in data]
    if len(kinds) != 1 or set(data) - {"tile", "make_inpaint", "dataset"}:
        raise ConfigError(f"{src}: data needs exactly one of tile, make_inpaint, dataset")
    kind = kinds[0]
    if kind == "tile":
        from_mapping(TileConfig, {**data["tile"], "out": wd / "data"}, f"{src}: data.tile")
        stage_data = dict(data["tile"])
    elif kind == "make_inpaint":
        from_mapping(InpaintConfig, {**data["make_inpaint"], "out": wd / "data"}, f"{src}: data.make_inpaint")
        stage_data = dict(data["make_inpaint"])
    else:
        stage_data = {"dataset": data["dataset"]}
    train = dict(doc.get("train") or {})
    preset = train.pop("model", "pix2pix")
    overrides = train.pop("set", {}) or {}
    model_map, train_map = load_preset(preset)
    model_map.update(overrides.get("model", {}) or {})
    train_map.update(overrides.get("train", {}) or {})
    train_map.update(train)
    mcfg = from_mapping(ModelConfig, model_map, f"{src}: train (model {preset})")
    from_mapping(TrainConfig, {**train_map, "dataset": ".", "out": "."}, f"{src}: train")
    predict = dict(doc.get("predict") or {})
    bad = sorted(set(predict) - PREDICT_KEYS)
    if bad:
        raise ConfigError(f"{src}: predict: unknown field(s) {', '.join(bad)}; "
                          f"valid: {', '.join(sorted(PREDICT_KEYS))}")
    predict.setdefault("split", "test")
    evaluate = dict(doc.get("evaluate") or {})
    metrics = evaluate.get("metrics", ["l1", "l2", "psnr", "ssim"])
    evaluate["metrics"] = metrics if isinstance(metrics, list) else [m.strip() for m in str(metrics).split(",")]
    from p2ptools.evaluate import EvalConfig

    ev_probe = {k: v for k, v in evaluate.items() if k != "metrics"}
    eval_fields = {f.name for f in dataclasses.fields(EvalConfig)} - {"real", "fake", "out", "metrics", "segmenter"}
    bad = sorted(set(ev_probe) - eval_fields)
    if bad:
        raise ConfigError(f"{src}: evaluate: unknown field(s) {', '.join(bad)}")
    fcn = doc.get("fcn")
    if fcn is not None:
        fcn = dict(fcn or {})
        bad = sorted(set(fcn) - FCN_KEYS)
        if bad:
            raise ConfigError(f"{src}: fcn: unknown field(s) {', '.join(bad)}; valid: {', '.join(sorted(FCN_KEYS))}")
    if "fcn" in evaluate["metrics"] and fcn is None:
        raise ConfigError(f"{src}: the fcn metric needs an fcn: section (the segmenter to train)")
    EvalConfig(real=Path("."), fake=Path("."), out=Path("."), metrics=tuple(evaluate["metrics"]),
               segmenter=Path(".") if fcn is not None else None, **ev_probe)
    return Recipe(name=name, workdir=wd, data_kind=kind, data=stage_data, model=mcfg, train=train_map,
                  predict=predict, evaluate=evaluate, fcn=fcn, description=str(doc.get("description", "")),
                  source=src)


@dataclass
class RunResult:
    """What ``run_recipe`` did: per stage ``ran``, ``resumed`` or ``up to date``, and where things are."""

    recipe: Recipe
    stages: dict[str, str] = field(default_factory=dict)
    report: Path | None = None


def _newer(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.stat().st_mtime >= b.stat().st_mtime


def run_recipe(recipe: Recipe, progress: bool = True, until: str | None = None) -> RunResult:
    """Run (or continue) the stages of a recipe.

    Args:
        recipe: the validated recipe.
        progress: progress bars.
        until: stop after this stage (``data``, ``train``, ``fcn``, ``predict``, ``evaluate``).

    Raises:
        P2PError: from any stage; finished stages stay finished for the next run.
    """
    from p2ptools.errors import SceneFailures

    wd = recipe.workdir
    wd.mkdir(parents=True, exist_ok=True)
    result = RunResult(recipe)
    order = ["data", "train", "fcn", "predict", "evaluate"]
    stop = order.index(until) if until else len(order) - 1

    # data
    data_dir = recipe.data_dir
    if recipe.data_kind == "tile":
        from p2ptools.tiler import tile_dataset

        rep = tile_dataset(from_mapping(TileConfig, {**recipe.data, "out": data_dir}, "data.tile"), progress)
        if rep.failures:
            raise SceneFailures(rep.failures, rep.summary())
        result.stages["data"] = "ran" if rep.written else "up to date"
    elif recipe.data_kind == "make_inpaint":
        from p2ptools.inpaint import make_inpaint_dataset

        rep2 = make_inpaint_dataset(from_mapping(InpaintConfig, {**recipe.data, "out": data_dir}, "data"), progress)
        if rep2.skipped:
            raise SceneFailures(rep2.skipped, rep2.summary())
        result.stages["data"] = "ran" if rep2.written else "up to date"
    else:
        if not (data_dir / "train").is_dir():
            raise ConfigError(f"{recipe.source}: data.dataset {data_dir} has no train/ folder")
        result.stages["data"] = "given"
    if stop == 0:
        return result

    # train
    from p2ptools.train import fit, load_checkpoint

    run_dir = wd / "run"
    tcfg = from_mapping(TrainConfig, {**recipe.train, "dataset": data_dir, "out": run_dir}, "train")
    latest = run_dir / "latest.pt"
    if latest.exists() and load_checkpoint(latest)["state"].get("finished"):
        result.stages["train"] = "up to date"
    else:
        resume = latest.exists()
        fit(recipe.model, tcfg, resume=resume, progress=progress)
        result.stages["train"] = "resumed" if resume else "ran"
    if stop == 1:
        return result

    # fcn segmenter (optional)
    seg_dir = wd / "seg"
    if recipe.fcn is not None:
        from p2ptools.segment import train_segmenter

        if (seg_dir / "segmenter.pt").exists():
            result.stages["fcn"] = "up to date"
        else:
            train_segmenter(data_dir, seg_dir, progress=progress, **recipe.fcn)
            result.stages["fcn"] = "ran"
    if stop == 2:
        return result

    # predict
    from p2ptools.predict import predict_folder

    split = recipe.predict.get("split", "test")
    if not (data_dir / split).is_dir():
        raise ConfigError(f"{recipe.source}: predict.split {split!r}: {data_dir / split} does not exist")
    pred_dir = wd / "predictions" / split
    which = recipe.predict.get("which", "latest")
    ckpt = run_dir / f"{which}.pt"
    marker = pred_dir / "predict.json"
    if _newer(marker, ckpt):
        result.stages["predict"] = "up to date"
    else:
        predict_folder(run_dir, data_dir / split, pred_dir, which=which, input_kind="ab",
                       batch_size=recipe.predict.get("batch_size", 8), device=recipe.predict.get("device", "auto"),
                       amp=recipe.predict.get("amp", "none"), progress=progress)
        result.stages["predict"] = "ran"
    if stop == 3:
        return result

    # evaluate
    from p2ptools.evaluate import EvalConfig, evaluate

    report = wd / "report"
    options = {k: v for k, v in recipe.evaluate.items() if k != "metrics"}
    options.setdefault("real_side", "B" if tcfg.direction == "AtoB" else "A")
    options.setdefault("label", recipe.name)
    if _newer(report / "summary.csv", marker):
        result.stages["evaluate"] = "up to date"
    else:
        cfg = EvalConfig(real=data_dir / split, fake=pred_dir, out=report, metrics=tuple(recipe.evaluate["metrics"]),
                         real_kind="ab", resize="real",
                         segmenter=seg_dir if recipe.fcn is not None else None, **options)
        evaluate(cfg, progress=progress)
        result.stages["evaluate"] = "ran"
    result.report = report
    atomic_write_text(wd / "recipe.json",
                      json.dumps({"recipe": recipe.source, "stages": result.stages}, indent=2) + "\n")
    return result
