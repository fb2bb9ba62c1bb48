"""``p2ptools run RECIPE``: one YAML file chains data → train → predict → evaluate.

A recipe (``recipes/*.yaml``) holds every parameter of a dataset's pipeline::

    name: inria
    workdir: runs/inria              # where every stage writes (relative to the current folder)
    data:                            # exactly one of: tile, make_inpaint, dataset (+ download: facades|maps)
      tile: {src: data/AerialImageDataset/train, size: 256}
    train: {model: pix2pix, augment: d4, set: {model: {ngf: 64}}}
    fcn: {epochs: 20}                # optional: a segmenter for the fcn metric
    predict: {split: test}
    evaluate: {metrics: [l1, psnr, ssim, fid, kid]}

Stages write to ``WORKDIR/data``, ``WORKDIR/run``, ``WORKDIR/seg``, ``WORKDIR/predictions/<split>``
and ``WORKDIR/report``. Each stage is skipped when its output is complete and newer than its
input, and resumes when it was interrupted, so rerunning a recipe continues where it stopped.
``{sample}`` in a path stands for the labelled sample scene shipped with p2ptools. A ``dataset``
with ``download: NAME`` (facades, maps) is fetched and checked on first use when its folder does
not exist yet (:mod:`p2ptools.prep.archives`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2ptools.config import (
    InpaintConfig,
    TileConfig,
    TrainConfig,
    bundled_dir,
    from_mapping,
    load_preset,
    option_names,
    read_yaml_mapping,
)
from p2ptools.errors import ConfigError, P2PError
from p2ptools.model.config import ModelConfig, check_model_and_training
from p2ptools.runtime.output import STATE_DIR, atomic_write_text, remove_inside
from p2ptools.runtime.progress import report
from p2ptools.runtime.settings import changed_settings, format_change, plain

log = logging.getLogger(__name__)

PREDICT_KEYS = {"split", "which", "batch_size", "device", "amp"}
FCN_KEYS = {"palette", "label_side", "arch", "size", "epochs", "batch_size", "lr", "workers", "device", "seed"}


def recipes_dir() -> Path:
    """The bundled recipes (the repository's ``recipes/``)."""
    return bundled_dir("recipes")


def bundled_recipes() -> list[str]:
    """The names of the bundled recipes (the ``*.yaml`` files of :func:`recipes_dir`), sorted."""
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def sample_root() -> Path:
    """The labelled sample scene shipped in the package (Inria layout: images/ + gt/)."""
    return Path(__file__).resolve().parent / "sample_data"


#: The word ``predict`` reads as the built-in demo's scene (unless a file or folder of that name exists).
SAMPLE_INPUT = "sample"


def sample_scene() -> Path:
    """The built-in demo's input scene: the shipped NAIP scene's panchromatic band (``tile --sample``'s A)."""
    return sample_root() / "naip" / "pan" / "naip.tif"


def resolve_sample_input(path: Path) -> Path:
    """``path``, or the demo's scene (:func:`sample_scene`) when ``path`` is the bare word ``sample`` and
    no file or folder of that name exists in the working folder (an explicit path always wins).

    Args:
        path: INPUT as typed.

    Returns:
        The path to read.
    """
    if str(path) != SAMPLE_INPUT or path.exists():
        return path
    scene = sample_scene()
    report("INPUT sample: the built-in demo's grey scene, %s", scene)
    return scene


def _substitute(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("{sample}", str(sample_root()))
    if isinstance(value, dict):
        return {k: _substitute(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v) for v in value]
    return value


def _newer(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.stat().st_mtime >= b.stat().st_mtime


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
    offline: bool | None = None  # downloads (data, weights): never (True), or as P2PTOOLS_OFFLINE says (None)

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
    path = _recipe_path(spec)
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
    kind, stage_data = _data_section(doc.get("data") or {}, wd, src)
    mcfg, train_map = _train_section(dict(doc.get("train") or {}), src)
    predict = _predict_section(dict(doc.get("predict") or {}), src)
    evaluate = _evaluate_section(dict(doc.get("evaluate") or {}), src)
    fcn = _fcn_section(doc.get("fcn"), src)
    _check_evaluate(evaluate, fcn, src)
    return Recipe(name=name, workdir=wd, data_kind=kind, data=stage_data, model=mcfg, train=train_map,
                  predict=predict, evaluate=evaluate, fcn=fcn, description=str(doc.get("description", "")),
                  source=src)


def _recipe_path(spec: str | Path) -> Path:
    """The recipe file ``spec`` names: itself when it is a file, else the bundled ``recipes/SPEC.yaml``.

    Raises:
        ConfigError: when it is neither, listing the bundled recipes.
    """
    path = Path(spec)
    if not path.is_file():
        bundled = recipes_dir() / f"{spec}.yaml"
        if not bundled.is_file():
            names = ", ".join(bundled_recipes())
            raise ConfigError(f"recipe {spec!r} is neither a file nor a bundled recipe ({names})")
        path = bundled
    return path


def _data_section(data: dict[str, Any], wd: Path, src: str) -> tuple[str, dict[str, Any]]:
    """The ``data:`` section: exactly one of ``tile``, ``make_inpaint``, ``dataset`` (+ ``download``).

    Args:
        data: the section.
        wd: the work folder (the dataset is made in ``wd/data``).
        src: the recipe file, for messages.

    Returns:
        The kind (``tile``, ``make_inpaint`` or ``dataset``) and the stage's settings.

    Raises:
        ConfigError: for a section that names no kind or several, an unknown archive, or invalid options.
    """
    kinds = [k for k in ("tile", "make_inpaint", "dataset") if k in data]
    if len(kinds) != 1 or set(data) - {"tile", "make_inpaint", "dataset", "download"}:
        raise ConfigError(f"{src}: data needs exactly one of tile, make_inpaint, dataset")
    if "download" in data:
        from p2ptools.prep.archives import known_archive

        if kinds != ["dataset"]:
            raise ConfigError(f"{src}: data.download goes with data.dataset (the folder the archive becomes)")
        try:
            known_archive(str(data["download"]))
        except P2PError as exc:
            raise ConfigError(f"{src}: data.download: {exc}") from None
    kind = kinds[0]
    if kind == "tile":
        from_mapping(TileConfig, {**data["tile"], "out": wd / "data"}, f"{src}: data.tile")
        return kind, dict(data["tile"])
    if kind == "make_inpaint":
        from_mapping(InpaintConfig, {**data["make_inpaint"], "out": wd / "data"}, f"{src}: data.make_inpaint")
        return kind, dict(data["make_inpaint"])
    return kind, {"dataset": data["dataset"], **({"download": str(data["download"])} if "download" in data else {})}


def _train_section(train: dict[str, Any], src: str) -> tuple[ModelConfig, dict[str, Any]]:
    """The ``train:`` section: a model preset (``model``), its overrides (``set``) and training options.

    Args:
        train: the section (a copy: ``model`` and ``set`` are taken out of it).
        src: the recipe file, for messages.

    Returns:
        The model's configuration and the training options (the preset's, then the section's).

    Raises:
        ConfigError: for an unknown preset or option, an invalid value, or a model and training that
            do not go together.
    """
    preset = train.pop("model", "pix2pix")
    overrides = train.pop("set", {}) or {}
    model_map, train_map = load_preset(preset)
    model_map.update(option_names(overrides.get("model")))  # dashes or underscores, as the presets spell them
    train_map.update(option_names(overrides.get("train")))
    train_map.update(option_names(train))
    mcfg = from_mapping(ModelConfig, model_map, f"{src}: train (model {preset})")
    probe = from_mapping(TrainConfig, {**train_map, "dataset": ".", "out": "."}, f"{src}: train")
    try:
        check_model_and_training(mcfg, probe)
    except ConfigError as exc:
        raise ConfigError(f"{src}: train: {exc}") from None
    return mcfg, train_map


def _predict_section(predict: dict[str, Any], src: str) -> dict[str, Any]:
    """The ``predict:`` section (fields :data:`PREDICT_KEYS`), with ``split`` defaulting to ``test``.

    Raises:
        ConfigError: for an unknown field.
    """
    bad = sorted(set(predict) - PREDICT_KEYS)
    if bad:
        raise ConfigError(f"{src}: predict: unknown field(s) {', '.join(bad)}; "
                          f"valid: {', '.join(sorted(PREDICT_KEYS))}")
    predict.setdefault("split", "test")
    return predict


def _evaluate_section(evaluate: dict[str, Any], src: str) -> dict[str, Any]:
    """The ``evaluate:`` section: ``metrics`` as a list (default: the registry's DEFAULT_METRICS) and EvalConfig's
    fields.

    Raises:
        ConfigError: for a field the evaluate stage does not take.
    """
    from p2ptools.evaluation.evaluate import EvalConfig
    from p2ptools.evaluation.metrics.registry import DEFAULT_METRICS

    metrics = evaluate.get("metrics", list(DEFAULT_METRICS))
    evaluate["metrics"] = metrics if isinstance(metrics, list) else [m.strip() for m in str(metrics).split(",")]

    eval_fields = {f.name for f in dataclasses.fields(EvalConfig)} - {"real", "fake", "out", "metrics", "segmenter"}
    bad = sorted(set(evaluate) - {"metrics"} - eval_fields)
    if bad:
        raise ConfigError(f"{src}: evaluate: unknown field(s) {', '.join(bad)}")
    return evaluate


def _fcn_section(fcn: Any, src: str) -> dict[str, Any] | None:
    """The optional ``fcn:`` section (fields :data:`FCN_KEYS`): None when the recipe has none.

    Raises:
        ConfigError: for an unknown field.
    """
    if fcn is None:
        return None
    fcn = dict(fcn or {})
    bad = sorted(set(fcn) - FCN_KEYS)
    if bad:
        raise ConfigError(f"{src}: fcn: unknown field(s) {', '.join(bad)}; valid: {', '.join(sorted(FCN_KEYS))}")
    return fcn


def _check_evaluate(evaluate: dict[str, Any], fcn: dict[str, Any] | None, src: str) -> None:
    """Check the ``evaluate:`` section's values, as the evaluate stage will build them.

    Raises:
        ConfigError: when the fcn metric has no ``fcn:`` section to train its segmenter, or for an
            invalid value.
    """
    from p2ptools.evaluation.evaluate import EvalConfig

    if "fcn" in evaluate["metrics"] and fcn is None:
        raise ConfigError(f"{src}: the fcn metric needs an fcn: section (the segmenter to train)")
    ev_probe = {k: v for k, v in evaluate.items() if k != "metrics"}
    EvalConfig(real=Path("."), fake=Path("."), out=Path("."), metrics=tuple(evaluate["metrics"]),
               segmenter=Path(".") if fcn is not None else None, **ev_probe)


@dataclass
class RunResult:
    """What ``run_recipe`` did: per stage ``ran``, ``resumed`` or ``up to date``, and where things are."""

    recipe: Recipe
    stages: dict[str, str] = field(default_factory=dict)
    report: Path | None = None
    incomplete: list[str] = field(default_factory=list)  # metrics not computed, pairs left out


class RecipeInterrupted(P2PError):
    """A recipe was interrupted (Ctrl-C, SIGTERM); finished work is kept and a rerun continues."""


STAGES_FILE = "stages.json"


def _digest(settings: Any) -> str:
    return hashlib.sha1(json.dumps(plain(settings), sort_keys=True).encode()).hexdigest()[:16]


class _Book:
    """``WORKDIR/.p2ptools/stages.json``: the settings each finished stage was run with."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / STATE_DIR / STAGES_FILE
        self.data: dict[str, Any] = {}
        if self.path.is_file():
            with contextlib.suppress(ValueError, OSError):
                self.data = json.loads(self.path.read_text(encoding="utf-8"))

    def changes(self, stage: str, settings: dict[str, Any]) -> list[tuple[str, Any, Any]] | None:
        """None when the stage never finished; else the settings changed since it did ([] if none)."""
        old = self.data.get(stage)
        return None if old is None else changed_settings(old["settings"], plain(settings))

    def done(self, stage: str, settings: dict[str, Any]) -> str:
        self.data[stage] = {"settings": plain(settings), "digest": _digest(settings)}
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        return self.data[stage]["digest"]

    def forget(self, stage: str) -> None:
        if self.data.pop(stage, None) is not None:
            atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")


def _say(stage: str, changes: list[tuple[str, Any, Any]], action: str) -> None:
    said = [f"the {c[0]} stage's output" if c[0] in _STAGES else format_change(*c) for c in changes]
    shown = "; ".join(said[:4]) + (f"; … ({len(said)} in all)" if len(said) > 4 else "")
    report("%s: settings changed since the last run (%s): %s", stage, shown, action)


def run_recipe(recipe: Recipe, progress: bool = True, until: str | None = None, command: str = "") -> RunResult:
    """Run (or continue) the stages of a recipe.

    Each stage's settings (and the digest of the stage before it) are kept in
    ``WORKDIR/.p2ptools/stages.json``. A stage whose settings are unchanged and whose output is
    complete is skipped; a changed stage runs again, and says why (training resumes instead when
    only settings a run can change on resume differ, such as more epochs).

    Args:
        recipe: the validated recipe.
        progress: progress bars.
        until: stop after this stage (``data``, ``train``, ``fcn``, ``predict``, ``evaluate``).
        command: the command line that ran the recipe, for the message on interruption.

    Raises:
        RecipeInterrupted: on Ctrl-C or SIGTERM, saying to rerun the recipe.
        P2PError: from any stage; finished stages stay finished for the next run.
    """
    from p2ptools.runtime.lock import hold
    from p2ptools.training.train import TrainingInterrupted

    hold(recipe.workdir)  # one recipe run per work folder
    result = RunResult(recipe)
    order = list(STAGES)
    last = order.index(until) if until else len(order) - 1
    stages = [s for s in order[: last + 1] if s != "fcn" or recipe.fcn is not None]
    report("recipe %s: stages %s, working in %s (rerun the same command to continue)", recipe.name,
           ", ".join(stages), recipe.workdir.resolve())
    book = _Book(recipe.workdir)
    stage = "data"
    again = command or f"p2ptools run {recipe.source}"
    try:
        upstream = ""
        for stage in order[: last + 1]:
            upstream = _STAGES[stage](recipe, book, result, upstream, progress)
    except (KeyboardInterrupt, TrainingInterrupted):
        raise RecipeInterrupted(f"interrupted in the {stage} stage; finished work is kept: rerun `{again}` "
                                "to continue where it stopped") from None
    if "evaluate" in result.stages:
        result.report = recipe.workdir / "report"
    atomic_write_text(recipe.workdir / "recipe.json",
                      json.dumps({"recipe": recipe.source, "stages": result.stages}, indent=2) + "\n")
    return result


def _data_stage(recipe: Recipe, book: _Book, result: RunResult, upstream: str, progress: bool) -> str:
    from p2ptools.errors import SceneFailures

    data_dir = recipe.data_dir
    if recipe.data_kind == "dataset":
        if not (data_dir / "train").is_dir() and _can_fetch(recipe, data_dir):
            from p2ptools.prep.archives import fetch_dataset, known_archive

            fetch_dataset(known_archive(recipe.data["download"]), data_dir, offline=recipe.offline, progress=progress)
        if not (data_dir / "train").is_dir():
            busy = " and is not empty, so the archive is not unpacked there" if "download" in recipe.data else ""
            raise ConfigError(f"{recipe.source}: data.dataset {data_dir} has no train/ folder{busy}; "
                              + where_to_get(recipe.name, "data.dataset"))
        result.stages["data"] = "given"
        return book.done("data", {"dataset": str(Path(data_dir).resolve())})
    src = recipe.data.get("src")
    if src is not None and "://" not in str(src) and not Path(str(src)).exists():
        raise ConfigError(f"{recipe.source}: data.{recipe.data_kind}.src {src} does not exist; "
                          + where_to_get(recipe.name, f"data.{recipe.data_kind}.src"))
    cls = TileConfig if recipe.data_kind == "tile" else InpaintConfig
    cfg = from_mapping(cls, {**recipe.data, "out": data_dir}, f"data.{recipe.data_kind}")
    settings = cfg.output_params()
    changes = book.changes("data", settings)
    if changes:
        _say("data", changes, f"making the dataset in {data_dir} anew")
        cfg.overwrite = True
    if recipe.data_kind == "tile":
        from p2ptools.prep.tiler import tile_dataset

        rep = tile_dataset(cfg, progress)  # type: ignore[arg-type]
        failed, written = rep.failures, rep.written
    else:
        from p2ptools.prep.inpaint import make_inpaint_dataset

        rep2 = make_inpaint_dataset(cfg, progress)  # type: ignore[arg-type]
        failed, written = rep2.skipped, rep2.written
    if failed:
        book.forget("data")
        raise SceneFailures(failed, (rep if recipe.data_kind == "tile" else rep2).summary())
    result.stages["data"] = "ran" if written or changes else "up to date"
    return book.done("data", settings)


def _can_fetch(recipe: Recipe, data_dir: Path) -> bool:
    """Whether the recipe names an archive and ``data_dir`` is free for it (absent, or an empty folder)."""
    return "download" in recipe.data and (not data_dir.exists() or (data_dir.is_dir() and not any(data_dir.iterdir())))


def _train_stage(recipe: Recipe, book: _Book, result: RunResult, upstream: str, progress: bool) -> str:
    from p2ptools.model.checkpoints import clear_run, load_checkpoint
    from p2ptools.training.train import FIXED_ON_RESUME, fit

    run_dir = recipe.workdir / "run"
    tcfg = from_mapping(TrainConfig, {**recipe.train, "dataset": recipe.data_dir, "out": run_dir}, "train")
    settings = {"data": upstream, "model": dataclasses.asdict(recipe.model),
                "train": {k: v for k, v in dataclasses.asdict(tcfg).items() if k not in ("dataset", "out")}}
    latest = run_dir / "latest.pt"
    changes = book.changes("train", settings)
    state = load_checkpoint(latest)["state"] if latest.exists() else None
    if changes:
        fixed = [c for c in changes if not c[0].startswith("train.") or c[0].removeprefix("train.") in FIXED_ON_RESUME]
        if fixed and state is not None:
            _say("train", fixed, f"training anew in {run_dir}")
            clear_run(run_dir)
            state = None
        elif state is not None:
            _say("train", changes, f"resuming the run in {run_dir} with them")
    book.done("train", settings)  # the settings the run folder follows from now on
    done = state is not None and state["finished"] and (state["epoch"] >= tcfg.epochs or state["early_stopped"])
    if done and not changes:
        result.stages["train"] = "up to date"
    else:
        resume = state is not None
        fit(recipe.model, tcfg, resume=resume, progress=progress)
        result.stages["train"] = "resumed" if resume else "ran"
    return book.data["train"]["digest"]


#: where the bundled recipes' data comes from (what a user must fetch, and how to point the recipe at it)
DATA_SOURCES: dict[str, str] = {
    "facades": "the pix2pix CMP facades archive (https://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz, "
               "about 30 MB); unpack it and give the facades/ folder",
    "maps": "the pix2pix maps archive (https://efrosgans.eecs.berkeley.edu/pix2pix/datasets/maps.tar.gz, about "
            "250 MB); unpack it and give the maps/ folder",
    "inria": "the Inria Aerial Image Labeling dataset (https://project.inria.fr/aerialimagelabeling/, free after "
             "registration, about 20 GB); unpack it and give AerialImageDataset/train",
    "landcover": "LandCover.ai (https://landcover.ai.linuxpolska.com/, free download, about 1.5 GB); unpack it and "
                 "give the folder holding images/ and masks/",
}


def where_to_get(name: str, key: str) -> str:
    """``get … and point the recipe at it: p2ptools run NAME --set KEY=PATH`` for a bundled recipe."""
    how = DATA_SOURCES.get(name)
    start = f"get {how}, then" if how else "point the recipe at your data:"
    return f"{start} p2ptools run {name} --set {key}=PATH"


def _fcn_stage(recipe: Recipe, book: _Book, result: RunResult, upstream: str, progress: bool) -> str:
    if recipe.fcn is None:
        return upstream
    from p2ptools.evaluation.segment import SegmenterOptions, train_segmenter

    seg_dir = recipe.workdir / "seg"
    settings = {"data": book.data.get("data", {}).get("digest"), "fcn": recipe.fcn}
    changes = book.changes("fcn", settings)
    if (seg_dir / "segmenter.pt").exists() and changes == []:
        result.stages["fcn"] = "up to date"
    else:
        if changes:
            _say("fcn", changes, "training the segmenter anew")
            remove_inside(seg_dir, "segmenter.pt", "recipe")
        train_segmenter(SegmenterOptions(dataset=recipe.data_dir, out=seg_dir, **recipe.fcn), progress=progress)
        result.stages["fcn"] = "ran"
    book.done("fcn", settings)
    return upstream


def _predict_stage(recipe: Recipe, book: _Book, result: RunResult, upstream: str, progress: bool) -> str:
    from p2ptools.inference.options import PredictOptions
    from p2ptools.inference.predict import predict_folder

    data_dir, run_dir = recipe.data_dir, recipe.workdir / "run"
    split = recipe.predict.get("split", "test")
    if not (data_dir / split).is_dir():
        raise ConfigError(f"{recipe.source}: predict.split {split!r}: {data_dir / split} does not exist")
    pred_dir = recipe.workdir / "predictions" / split
    which = recipe.predict.get("which", "latest")
    settings = {"train": upstream, "predict": recipe.predict}
    changes = book.changes("predict", settings)
    if changes == [] and _newer(pred_dir / "predict.json", run_dir / f"{which}.pt"):
        result.stages["predict"] = "up to date"
    else:
        if changes:
            _say("predict", changes, "predicting again")
        predict_folder(run_dir, data_dir / split, pred_dir, PredictOptions(
            which, "ab", recipe.predict.get("batch_size", 8), recipe.predict.get("device", "auto"),
            recipe.predict.get("amp", "auto"), progress=progress))
        result.stages["predict"] = "ran"
    return book.done("predict", settings)


def _evaluate_stage(recipe: Recipe, book: _Book, result: RunResult, upstream: str, progress: bool) -> str:
    from p2ptools.evaluation.evaluate import EvalConfig, evaluate

    split = recipe.predict.get("split", "test")
    pred_dir, report_dir = recipe.workdir / "predictions" / split, recipe.workdir / "report"
    direction = recipe.train.get("direction", "AtoB")
    options = {k: v for k, v in recipe.evaluate.items() if k != "metrics"}
    options.setdefault("real_side", "B" if direction == "AtoB" else "A")
    options.setdefault("label", recipe.name)
    if recipe.offline is not None:  # run --offline: no weights download either
        options["offline"] = recipe.offline
    settings = {"predict": upstream, "evaluate": recipe.evaluate}
    changes = book.changes("evaluate", settings)
    if changes == [] and _newer(report_dir / "summary.csv", pred_dir / "predict.json"):
        result.stages["evaluate"] = "up to date"
    else:
        if changes:
            _say("evaluate", changes, "evaluating again")
        cfg = EvalConfig(real=recipe.data_dir / split, fake=pred_dir, out=report_dir,
                         metrics=tuple(recipe.evaluate["metrics"]), real_kind="ab", resize="real",
                         segmenter=recipe.workdir / "seg" if recipe.fcn is not None else None, **options)
        ev = evaluate(cfg, progress=progress)
        result.incomplete = [f"metric {m} not computed: {why}" for m, why in ev.unavailable.items()]
        result.incomplete += [f"{name}: {error}" for name, error in ev.errors]
        if result.incomplete:  # what was scored is written; a rerun evaluates again (after the fix)
            book.forget("evaluate")
            result.stages["evaluate"] = "ran, incomplete"
            return ""
        result.stages["evaluate"] = "ran"
    return book.done("evaluate", settings)


#: the stages of a recipe, in the order they run: the one list ``run --until``, the recipe sections and
#: the stage records read
_STAGES = {"data": _data_stage, "train": _train_stage, "fcn": _fcn_stage, "predict": _predict_stage,
           "evaluate": _evaluate_stage}
STAGES: tuple[str, ...] = tuple(_STAGES)
#: the top-level keys a recipe file may have
SECTIONS: tuple[str, ...] = ("name", "description", "workdir", *STAGES)
